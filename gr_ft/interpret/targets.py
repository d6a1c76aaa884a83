"""What an explanation explains: which model output, on which scale, and the model prepared for it.

Every interpretation method in gr-ft explains one number per sequence, chosen by a
:class:`Target`:

- ``output``: ``logit`` (the raw head output) or ``prob`` (softmax over classes for binary and
  multi-class tasks, sigmoid per class for multi-label and per-position tasks' softmax per token);
  regression has only its raw value (``logit``).
- ``class_index``: which class; None picks class 1 for binary tasks, the only output for
  regression, and each sequence's predicted class otherwise.
- ``position``: for per-position (token classification) tasks, the base whose output is explained
  (the output of the token covering it).

Example:
    >>> target = Target(output="prob", class_index=1)
    >>> values = task_outputs(logits, "binary", target.output)   # B, C
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

__all__ = ["require", "OUTPUT_SCALES", "Target", "task_outputs", "resolve_class_indices", "inference_model", "class_index_of"]

logger = logging.getLogger(__name__)

OUTPUT_SCALES = ("logit", "prob")


def require(module: str):
    """Import an optional dependency of the ``interpret`` extra, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ValueError(f"{module} is not installed; install the interpret extra: pip install -e \".[interpret]\" "
                         f"(or pip install {module.split('.')[0]})") from err


@dataclass
class Target:
    """The model output an explanation is about."""

    output: str = "logit"
    """logit (raw head output) or prob (softmax / sigmoid of it)."""
    class_index: Optional[int] = None
    """Class to explain; None: class 1 for binary, 0 for regression, else each sequence's predicted class."""
    position: Optional[int] = None
    """Per-position tasks only: the 0-based base whose token output is explained."""

    def __post_init__(self):
        if self.output not in OUTPUT_SCALES:
            raise ValueError(f"output must be one of {list(OUTPUT_SCALES)}, got {self.output!r} (flag --output)")
        if self.class_index is not None and self.class_index < 0:
            raise ValueError(f"class index must be >= 0, got {self.class_index} (flag --target)")
        if self.position is not None and self.position < 0:
            raise ValueError(f"position must be >= 0, got {self.position} (flag --position)")


def check_target(target: Target, problem_type: str, num_labels: int) -> None:
    """Refuse targets that make no sense for the task, saying which flag to change."""
    if problem_type == "regression" and target.output == "prob":
        raise ValueError("a regression model has no probabilities; use --output logit")
    if target.class_index is not None and target.class_index >= num_labels:
        raise ValueError(f"class index {target.class_index} is out of range: the model has {num_labels} outputs "
                         f"(flag --target)")
    if problem_type == "token_classification" and target.position is None:
        raise ValueError("a per-position model explains one position at a time; pass --position BASE (0-based)")
    if problem_type != "token_classification" and target.position is not None:
        raise ValueError(f"--position applies to per-position (token classification) models, not {problem_type}")


def class_index_of(name_or_index: str, names: list[str]) -> int:
    """A class given by name (as in ``label_map.json``) or by 0-based index.

        >>> class_index_of("donor", ["acceptor", "donor", "none"])
        1
    """
    if name_or_index in names:
        return names.index(name_or_index)
    if name_or_index.isdigit() and int(name_or_index) < max(len(names), 1):
        return int(name_or_index)
    raise ValueError(f"--target {name_or_index!r} is neither a class name nor an index of this model; "
                     f"classes: {names}")


def task_outputs(logits: torch.Tensor, problem_type: str, output: str) -> torch.Tensor:
    """Head outputs on the requested scale; the class axis is the last one."""
    if output == "logit":
        return logits.float()
    if problem_type in ("multilabel",):
        return logits.float().sigmoid()
    return logits.float().softmax(-1)


def resolve_class_indices(target: Target, problem_type: str, reference_outputs: np.ndarray) -> np.ndarray:
    """One class index per sequence (N,), from the target or the defaults in :class:`Target`."""
    count = reference_outputs.shape[0]
    if target.class_index is not None:
        return np.full(count, target.class_index, dtype=np.int64)
    if problem_type == "binary":
        return np.ones(count, dtype=np.int64)
    if problem_type == "regression":
        return np.zeros(count, dtype=np.int64)
    return reference_outputs.argmax(-1).astype(np.int64)


def inference_model(model: torch.nn.Module, merge: bool = True) -> torch.nn.Module:
    """The model to run many forwards with: peft adapters merged into a copy (exact up to float rounding).

    Merging removes the adapter's extra matmuls from every forward; the caller's model is not
    changed. Models without an adapter are returned as they are.
    """
    if merge and hasattr(model, "merge_and_unload"):
        try:
            merged = copy.deepcopy(model).merge_and_unload()
        except (ValueError, NotImplementedError) as err:  # some adapter types cannot merge
            logger.info("running with the adapter unmerged (%s)", err)
        else:
            return merged.eval()
    return model.eval()
