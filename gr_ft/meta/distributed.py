"""Process-group helpers of meta-learning, over accelerate's collectives (one home for all of them).

Meta-learning exchanges whole parameter deltas or prototype gradients once per meta-step, outside any
DDP backward, so it needs plain collectives rather than DDP's gradient hooks. They are torch.distributed
calls on the default group (no-ops in a single process) rather than ``accelerate.utils.reduce``, which
consults accelerate's own state and silently skips the collective in a process group started without it
(``mp.spawn`` + ``init_process_group``, as tests/test_meta.py does); ``extract_model_from_parallel``
reaches the module under a DDP wrapper.

Example:
    >>> sum_across_processes(torch.ones(2))  # 2 processes -> tensor([2., 2.])
    >>> broadcast_trainable(model)            # once, before the first meta-step
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from accelerate.utils import extract_model_from_parallel
from torch import nn

__all__ = ["unwrap", "trainable_parameters", "device_of", "sum_across_processes", "broadcast_trainable",
           "average_gradients"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module under a DDP wrapper: inner loops must not all-reduce gradients across tasks."""
    return extract_model_from_parallel(model, keep_fp32_wrapper=True)


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Name -> parameter for the weights that train (LoRA + head), under any DDP wrapper."""
    return {name: p for name, p in unwrap(model).named_parameters() if p.requires_grad}


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's (first) parameters."""
    return next(unwrap(model).parameters()).device


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sum_across_processes(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all processes of the default group (a copy; the input itself in a single process)."""
    if _distributed():
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_trainable(model: nn.Module, src: int = 0) -> None:
    """Give every process the trainable weights of process ``src`` (no-op in a single process)."""
    if _distributed():
        for param in trainable_parameters(model).values():
            dist.broadcast(param.data, src=src)


def average_gradients(model: nn.Module) -> None:
    """Average trainable gradients over processes (no-op in one process); call between backward and step.

    Every process must hold the same number of episodes (gradients are averaged per process).
    """
    params = [p for p in unwrap(model).parameters() if p.requires_grad and p.grad is not None]
    if not params:
        return
    ones = torch.ones(1, device=params[0].grad.device, dtype=params[0].grad.dtype)
    summed = sum_across_processes(torch.cat([p.grad.flatten() for p in params] + [ones]))  # last: process count
    offset = 0
    for param in params:
        n = param.numel()
        param.grad.copy_((summed[offset:offset + n] / summed[-1]).view_as(param))
        offset += n
