"""The pieces of an accelerate training loop that every recipe shares.

Recipes read as a story of these helpers: ``build_accelerator`` -> ``build_optimizer`` ->
``train_epoch`` / ``evaluate`` -> ``save_checkpoint`` / ``load_checkpoint`` -> ``keep_best``.

Example:
    >>> accelerator = build_accelerator(TrainConfig(precision="fp32"))
    >>> optimizer, scheduler = build_optimizer(model, TrainConfig(), steps_per_epoch=100)
    >>> model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    >>> train_epoch(model, loader, optimizer, scheduler, accelerator, TrainConfig(), state)
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import get_scheduler

from .config import TrainConfig
from .evaluation import PRIMARY_METRIC, MetricAccumulator, metric_direction
from .modeling import TASK_LOSSES

__all__ = [
    "TrainingState",
    "resolve_precision",
    "build_accelerator",
    "build_optimizer",
    "train_epoch",
    "evaluate",
    "save_checkpoint",
    "load_checkpoint",
    "save_trainable_weights",
    "load_trainable_weights",
]

logger = logging.getLogger(__name__)
STATE_FILE = "trainer_state.json"


@dataclass
class TrainingState:
    """Where a run stands; saved beside accelerate's checkpoint as JSON."""

    epoch: int = 0
    """Epochs completed."""
    batches_in_epoch: int = 0
    """Batches of the current epoch already trained (for mid-epoch resume)."""
    global_step: int = 0
    """Optimiser steps taken."""
    real_tokens: int = 0
    """Non-padding tokens trained on by this process (for throughput)."""
    best_metric: Optional[float] = None
    best_epoch: Optional[int] = None
    evals_without_improvement: int = 0
    history: list[dict] = field(default_factory=list)


def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def has_accelerator_device() -> bool:
    """True when a GPU-like device (CUDA, ROCm, XPU, MPS...) is present."""
    accel = getattr(torch, "accelerator", None)
    if accel is not None and hasattr(accel, "is_available"):
        return accel.is_available()
    return torch.cuda.is_available()


def resolve_precision(precision: str) -> str:
    """Map ``auto`` to bf16 where the hardware has it, else fp32; refuse fp16 on CPU with a fallback.

    Example:
        >>> resolve_precision("fp32")
        'fp32'
    """
    cuda = torch.cuda.is_available()
    if precision == "auto":
        if cuda:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_bf16() else "fp32"
    if precision == "fp16" and not cuda:
        logger.warning("fp16 autocast needs a GPU; falling back to fp32 on CPU")
        return "fp32"
    return precision


def build_accelerator(cfg: TrainConfig, project_dir: Optional[str] = None) -> Accelerator:
    """An Accelerator with mixed precision resolved and global batches split across processes.

    ``split_batches=True`` makes ``train.batch_size`` the global batch, so 1 and N processes
    see the same batches in the same order.
    """
    precision = resolve_precision(cfg.precision)
    return Accelerator(
        # Without a GPU, accelerate only joins a torchrun process group (gloo) when told it runs on CPU.
        cpu=not has_accelerator_device(),
        mixed_precision="no" if precision == "fp32" else precision,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        log_with=cfg.tracker,
        project_dir=project_dir,
    )


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, steps_per_epoch: int):
    """AdamW over trainable parameters (no decay on biases and norms) and a linear schedule with warm-up."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    total = total_optimizer_steps(cfg, steps_per_epoch)
    scheduler = get_scheduler(
        "linear", optimizer, num_warmup_steps=int(cfg.warmup_fraction * total), num_training_steps=total
    )
    return optimizer, scheduler


def total_optimizer_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum_steps)
    return cfg.max_steps if cfg.max_steps else per_epoch * cfg.epochs


def train_epoch(model, loader, optimizer, scheduler, accelerator: Accelerator, cfg: TrainConfig,
                state: TrainingState, on_step=None) -> float:
    """Train one epoch (resuming mid-epoch if ``state.batches_in_epoch`` > 0); returns the mean loss
    over processes.

    ``on_step(state)`` is called after every optimiser step (used for step checkpoints).
    """
    model.train()
    loader.set_epoch(state.epoch)
    skipped = state.batches_in_epoch
    batches = accelerator.skip_first_batches(loader, skipped) if skipped else loader
    progress = tqdm(batches, total=len(loader), initial=skipped, desc=f"epoch {state.epoch + 1}",
                    disable=not accelerator.is_local_main_process, leave=False)
    total_loss, seen, tokens_at_start = 0.0, 0, state.real_tokens
    for batch in progress:
        with accelerator.accumulate(model):
            loss = model(**batch)["loss"]
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        state.batches_in_epoch += 1
        state.real_tokens += int(batch["attention_mask"].sum())
        total_loss, seen = total_loss + loss.item(), seen + 1
        if accelerator.sync_gradients:
            state.global_step += 1
            if state.global_step % cfg.log_every_steps == 0:
                progress.set_postfix(loss=f"{total_loss / seen:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}",
                                     tok_s=f"{(state.real_tokens - tokens_at_start) / max(progress.format_dict['elapsed'], 1e-9):.0f}")
                accelerator.log({"train/loss": total_loss / seen}, step=state.global_step)
            if on_step is not None:
                on_step(state)
            if cfg.max_steps and state.global_step >= cfg.max_steps:
                break
    state.epoch += 1
    state.batches_in_epoch = 0
    # each process saw its share of every batch: average the per-process means
    mean_loss = torch.tensor(total_loss / max(seen, 1), device=accelerator.device)
    return float(accelerator.reduce(mean_loss, reduction="mean"))


@torch.no_grad()
def evaluate(model, loader, accelerator: Accelerator, problem_type: str, num_labels: int,
             desc: str = "eval") -> dict[str, float]:
    """Metrics and unweighted mean loss over a whole split, gathered across processes.

    Only compact per-example scores are kept (see :class:`MetricAccumulator`); the loss is
    recomputed from the gathered outputs so that it does not depend on how batches were split.
    """
    model.eval()
    metrics = MetricAccumulator(problem_type, num_labels)
    loss_sum, loss_count = 0.0, 0
    for batch in tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process, leave=False):
        with accelerator.autocast():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])["logits"]
        labels = batch["labels"]
        if problem_type == "token_classification":  # lengths differ between processes
            logits = accelerator.pad_across_processes(logits, dim=1)
            labels = accelerator.pad_across_processes(labels, dim=1, pad_index=-100)
        logits, labels = accelerator.gather_for_metrics((logits.float(), labels))
        logits, labels = logits.cpu(), labels.cpu()
        count = int((labels != -100).sum()) if problem_type == "token_classification" else len(labels)
        loss_sum += float(TASK_LOSSES[problem_type](logits, labels, None)) * count
        loss_count += count
        metrics.add_batch(logits, labels)
    result = metrics.compute()
    result["loss"] = loss_sum / max(loss_count, 1)
    return result


def is_improvement(metrics: dict[str, float], problem_type: str, best: Optional[float]) -> bool:
    """Whether dev ``metrics`` beat ``best`` on the task's primary metric (nan never improves)."""
    value = metrics[PRIMARY_METRIC[problem_type]]
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value > best if metric_direction(PRIMARY_METRIC[problem_type]) == "max" else value < best


# ----------------------------------------------------------------- checkpoints


def _atomic_replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def save_checkpoint(accelerator: Accelerator, state, folder: Path, state_file: str = STATE_FILE) -> None:
    """accelerate ``save_state`` (model, optimizer, scheduler, RNG) plus a state dataclass as JSON, atomically."""
    tmp = folder.with_name(folder.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()  # every rank's RNG file is in tmp before the main process moves it
    if accelerator.is_main_process:
        (tmp / state_file).write_text(json.dumps(asdict(state), indent=2))
        _atomic_replace_dir(tmp, folder)
    accelerator.wait_for_everyone()


def load_checkpoint(accelerator: Accelerator, folder: Path, state_cls: type = TrainingState,
                    state_file: str = STATE_FILE):
    """Restore accelerate state from ``folder`` and return the saved state (a ``state_cls``)."""
    accelerator.load_state(str(folder))
    return state_cls(**json.loads((folder / state_file).read_text()))


def save_trainable_weights(model: torch.nn.Module, path: Path) -> None:
    """Save only trainable tensors (adapter + head, or everything for full fine-tuning) as safetensors."""
    tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def load_trainable_weights(model: torch.nn.Module, path: Path) -> None:
    """Load tensors written by :func:`save_trainable_weights`; every trainable tensor must be present."""
    tensors = load_file(str(path))
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in tensors]
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} trainable tensors, e.g. {missing[:3]}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)
