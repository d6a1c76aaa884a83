"""First-order Reptile (Nichol et al. 2018) over the trainable parameters only: LoRA factors and head.

One meta-step: remember the trainable weights ``theta``, adapt a copy of them to each task of the
meta-batch with a few optimiser steps on its support set, then move ``theta`` toward the mean of
the adapted weights::

    theta <- theta + meta_lr * mean_over_tasks(theta_task - theta)

Only tensors with ``requires_grad`` are cloned (a few hundred kB for LoRA); the frozen backbone is
shared, never copied.

Distributed (torchrun / ``accelerate launch``): do NOT wrap the model in DDP (a DDP-wrapped model
is unwrapped here). Every process draws the same meta-batch (``EpisodeSampler.meta_batch``) and
adapts its own share of the tasks, ``episodes[rank::world_size]``; the flat sum of its task deltas
and its task count are summed across processes in one ``all_reduce``, so every process applies the
same mean delta, exactly the single-process update over the whole meta-batch. Inner loops never
synchronise gradients. Start all processes from the same weights (same seed, or
:func:`broadcast_trainable`).

Example:
    >>> cfg = ReptileConfig(meta_steps=100, n_way=2, k_shot=8)
    >>> make_optimizer = inner_optimizer_factory(cfg)
    >>> for step in range(cfg.meta_steps):
    ...     episodes = sampler.meta_batch(step, cfg.meta_batch_tasks)[rank::world_size]
    ...     task_batches = [split_batch(encode_episode(e, tasks, tokenizer, 256)[0], cfg.inner_batch_size)
    ...                     for e in episodes]
    ...     meta_lr = meta_lr_schedule(step, cfg.meta_steps, cfg.meta_lr, cfg.final_meta_lr)
    ...     stats = reptile_meta_step(model, task_batches, make_optimizer, cfg.inner_steps, meta_lr)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import nn

from .distributed import device_of, sum_across_processes, trainable_parameters, unwrap
from .episodes import EpisodeShape

__all__ = [
    "ReptileConfig",
    "INNER_OPTIMIZERS",
    "inner_optimizer_factory",
    "snapshot_trainable",
    "restore_trainable",
    "task_delta",
    "reptile_step",
    "inner_loop",
    "meta_lr_schedule",
    "reptile_meta_step",
    "adapt_and_evaluate",
]

logger = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def _adam(params, lr: float) -> torch.optim.Optimizer:
    # Reptile's inner Adam: beta1 = 0, since momentum would carry over noise from a fresh state.
    return torch.optim.Adam(params, lr=lr, betas=(0.0, 0.999))


INNER_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": _adam,
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
}


@dataclass
class ReptileConfig(EpisodeShape):
    """Reptile meta-training over LoRA adapters (flags ``meta.*``): the episode shape plus the two loops' settings."""

    meta_lr: float = 1.0
    """Outer step size at the first meta-step (1.0 moves all the way to the mean adapted weights)."""
    final_meta_lr: float = 0.0
    """Outer step size reached at the last meta-step (linear annealing, as in the Reptile paper)."""
    inner_steps: int = 5
    """Optimiser steps on one task's support set per meta-step (and when adapting to a new task)."""
    inner_lr: float = 1e-3
    inner_optimizer: str = "adam"
    """adam (beta1 = 0, as in the paper) or sgd; a fresh optimiser per task."""
    inner_batch_size: Optional[int] = None
    """Support examples per inner step; empty uses the whole support set (n_way * k_shot)."""

    def __post_init__(self):
        super().__post_init__()
        if self.inner_steps < 1:
            raise ValueError(f"meta.inner_steps must be >= 1, got {self.inner_steps}")
        if self.inner_lr <= 0:
            raise ValueError(f"meta.inner_lr must be > 0, got {self.inner_lr}")
        if not 0 < self.meta_lr <= 1:
            raise ValueError(f"meta.meta_lr must be in (0, 1], got {self.meta_lr}")
        if not 0 <= self.final_meta_lr <= self.meta_lr:
            raise ValueError(
                f"meta.final_meta_lr must be in [0, meta.meta_lr={self.meta_lr}], got {self.final_meta_lr}"
            )
        if self.inner_optimizer not in INNER_OPTIMIZERS:
            raise ValueError(
                f"meta.inner_optimizer must be one of {sorted(INNER_OPTIMIZERS)}, got {self.inner_optimizer!r}"
            )
        if self.inner_batch_size is not None and self.inner_batch_size < 1:
            raise ValueError(f"meta.inner_batch_size must be >= 1 or empty, got {self.inner_batch_size}")


def inner_optimizer_factory(cfg: ReptileConfig) -> OptimizerFactory:
    """``params -> optimizer`` for the inner loop, from ``cfg.inner_optimizer`` and ``cfg.inner_lr``.

    Example:
        >>> inner_optimizer_factory(ReptileConfig(inner_optimizer="sgd", inner_lr=0.1))(model.parameters())
        SGD (...)
    """
    build = INNER_OPTIMIZERS[cfg.inner_optimizer]
    return lambda params: build(params, cfg.inner_lr)


# ---------------------------------------------------------------- trainable weights


def snapshot_trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached clones of the parameters that train (LoRA + head); frozen weights are not copied.

    Example:
        >>> before = snapshot_trainable(model)
        >>> sum(t.numel() for t in before.values()) == trainable_parameter_count(model)
        True
    """
    return {name: p.detach().clone() for name, p in trainable_parameters(model).items()}


def restore_trainable(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    """Copy a snapshot back into the model's trainable parameters, in place.

    Example:
        >>> before = snapshot_trainable(model); inner_loop(model, ...); restore_trainable(model, before)
    """
    params = trainable_parameters(model)
    if params.keys() != snapshot.keys():
        missing, extra = sorted(params.keys() - snapshot.keys()), sorted(snapshot.keys() - params.keys())
        raise ValueError(f"snapshot does not match the model's trainable parameters: missing {missing[:3]}, "
                         f"unexpected {extra[:3]}")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(snapshot[name])


def task_delta(model: nn.Module, snapshot_before: dict[str, torch.Tensor]) -> torch.Tensor:
    """``theta_now - theta_before`` flattened (float32) in snapshot order.

    Example:
        >>> before = snapshot_trainable(model); inner_loop(model, ...); task_delta(model, before).shape
        torch.Size([12345])
    """
    params = trainable_parameters(model)
    return torch.cat([(params[name].detach().float() - before.float()).flatten()
                      for name, before in snapshot_before.items()])


def reptile_step(model: nn.Module, snapshot_before: dict[str, torch.Tensor], meta_lr: float,
                 delta: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Outer update ``theta <- theta_before + meta_lr * delta``; returns the delta applied.

    ``delta`` defaults to the model's own ``theta_after_inner - theta_before``, averaged over
    processes when distributed (one task per process). Pass the mean delta of several tasks to
    update from a meta-batch (see :func:`reptile_meta_step`).

    Example:
        >>> before = snapshot_trainable(model)
        >>> inner_loop(model, make_optimizer, support_batches, inner_steps=5)
        >>> reptile_step(model, before, meta_lr=0.5)
    """
    if delta is None:
        local = torch.cat([task_delta(model, snapshot_before), torch.ones(1, device=device_of(model))])
        summed = sum_across_processes(local)
        delta = summed[:-1] / summed[-1]
    params, offset = trainable_parameters(model), 0
    with torch.no_grad():
        for name, before in snapshot_before.items():
            param, n = params[name], before.numel()
            step = delta[offset:offset + n].view_as(before).to(before.device)
            param.copy_((before.float() + meta_lr * step).to(param.dtype))
            offset += n
    return delta


# ---------------------------------------------------------------- inner loop and meta-step


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {key: value.to(device) for key, value in batch.items()}


def inner_loop(model: nn.Module, optimizer_factory: OptimizerFactory, batches: Sequence[Batch],
               inner_steps: int) -> list[float]:
    """``inner_steps`` plain optimiser steps on one task's support batches (cycled); returns the losses.

    The model must return ``{"loss": ...}`` given a batch (as :class:`~gr_ft.modeling.SequenceModel`
    does). A fresh optimiser is built per call, over the trainable parameters.

    Example:
        >>> inner_loop(model, inner_optimizer_factory(cfg), split_batch(support, 8), inner_steps=5)
        [0.69, 0.61, 0.55, 0.52, 0.47]
    """
    if not batches:
        raise ValueError("inner_loop needs at least one support batch")
    model = unwrap(model)
    params = list(trainable_parameters(model).values())
    optimizer = optimizer_factory(params)
    device = params[0].device
    model.train()
    losses = []
    for step in range(inner_steps):
        loss = model(**_to_device(batches[step % len(batches)], device))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    optimizer.zero_grad(set_to_none=True)
    return losses


def meta_lr_schedule(step: int, total: int, meta_lr: float, final_meta_lr: float = 0.0) -> float:
    """Outer step size annealed linearly from ``meta_lr`` (step 0) to ``final_meta_lr`` (step ``total``).

    Example:
        >>> meta_lr_schedule(50, 100, meta_lr=1.0, final_meta_lr=0.0)
        0.5
    """
    if total < 1 or not 0 <= step <= total:
        raise ValueError(f"meta-step {step} is outside 0..{total}")
    fraction_done = step / total
    return meta_lr + fraction_done * (final_meta_lr - meta_lr)


def reptile_meta_step(model: nn.Module, task_batches: Sequence[Sequence[Batch]], optimizer_factory: OptimizerFactory,
                      inner_steps: int, meta_lr: float) -> dict[str, float]:
    """One Reptile update from this process's tasks (their support batches), averaged over processes.

    A process may hold zero tasks (meta-batch smaller than the world) but must still call this.
    Returns ``{"inner_loss": last inner loss averaged over tasks, "delta_norm": ..., "tasks": ...}``.

    Example:
        >>> stats = reptile_meta_step(model, [support_batches_a, support_batches_b], make_optimizer, 5, 0.5)
    """
    before = snapshot_trainable(model)
    delta_sum = torch.zeros(sum(t.numel() for t in before.values()), device=device_of(model))
    loss_sum = 0.0
    for batches in task_batches:
        restore_trainable(model, before)
        loss_sum += inner_loop(model, optimizer_factory, batches, inner_steps)[-1]
        delta_sum += task_delta(model, before)
    totals = torch.tensor([len(task_batches), loss_sum], device=delta_sum.device)
    summed = sum_across_processes(torch.cat([delta_sum, totals]))  # one collective per meta-step
    n_tasks = summed[-2].item()
    if n_tasks == 0:
        raise ValueError("no process adapted any task in this meta-step; meta.meta_batch_tasks must be >= 1")
    delta = summed[:-2] / n_tasks
    reptile_step(model, before, meta_lr, delta)
    logger.debug("reptile meta-step: %d tasks, meta_lr %.3g", n_tasks, meta_lr)
    return {"inner_loss": summed[-1].item() / n_tasks, "delta_norm": delta.norm().item(), "tasks": int(n_tasks)}


@torch.no_grad()
def _query_metrics(model: nn.Module, query_batch: Batch) -> dict[str, float]:
    model.eval()
    batch = _to_device(query_batch, device_of(model))
    out = model(**batch)
    accuracy = (out["logits"].argmax(-1) == batch["labels"]).float().mean()
    return {"query_loss": out["loss"].item(), "query_accuracy": accuracy.item()}


def adapt_and_evaluate(model: nn.Module, support_batches: Sequence[Batch], query_batch: Batch,
                       optimizer_factory: OptimizerFactory, inner_steps: int) -> dict[str, float]:
    """Adapt to one episode's support set, score its query set, then restore the weights.

    For meta-validation and meta-test episodes; the model is left exactly as it was.

    Example:
        >>> support, query = encode_episode(test_sampler.sample(0), test_tasks, tokenizer, 256)
        >>> adapt_and_evaluate(model, [support], query, make_optimizer, inner_steps=10)["query_accuracy"]
        0.81
    """
    model = unwrap(model)
    before = snapshot_trainable(model)
    was_training = model.training
    try:
        inner = inner_loop(model, optimizer_factory, support_batches, inner_steps)
        metrics = _query_metrics(model, query_batch)
    finally:
        restore_trainable(model, before)
        model.train(was_training)
    return {"inner_loss": inner[-1], **metrics}
