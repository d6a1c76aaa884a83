"""Evaluation metrics per problem type, accumulated over batches and computed with `evaluate`.

Logits are reduced batch by batch to what the metrics need (predicted class, class
probabilities, or regression outputs) as small float32 numpy arrays, and the metrics are
computed by the local evaluate modules shipped in `gr_ft/metrics/<name>/<name>.py`
(package data, no ``__init__.py``). `evaluate.load` is given the absolute path of the
script, so it never asks the Hugging Face Hub for anything, and each loaded module keeps
its data in memory, so concurrent processes (e.g. two torchrun workers) share no cache files.

    >>> acc = MetricAccumulator("binary", num_labels=2)
    >>> acc.add_batch(torch.tensor([[2.0, -1.0], [-1.0, 3.0]]), torch.tensor([0, 1]))
    >>> acc.compute()["mcc"]
    1.0
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

__all__ = [
    "PROBLEM_TYPES",
    "PRIMARY_METRIC",
    "METRIC_DIRECTIONS",
    "IGNORE_INDEX",
    "METRIC_SCRIPTS",
    "MetricAccumulator",
    "load_metric",
    "metric_direction",
]

logger = logging.getLogger(__name__)

PROBLEM_TYPES = ("binary", "multiclass", "multilabel", "regression", "token_classification")

IGNORE_INDEX = -100
"""Label value of token positions that metrics (and the loss) skip."""

PRIMARY_METRIC: dict[str, str] = {
    "binary": "mcc",
    "multiclass": "mcc",
    "token_classification": "mcc",
    "multilabel": "macro_f1",
    "regression": "pearson",
}
"""Problem type -> metric used to pick the best checkpoint."""

METRIC_DIRECTIONS: dict[str, str] = {
    "accuracy": "max",
    "f1": "max",
    "macro_f1": "max",
    "micro_f1": "max",
    "mcc": "max",
    "auroc": "max",
    "auprc": "max",
    "pearson": "max",
    "spearman": "max",
    "mse": "min",
    "loss": "min",
}
"""Metric name -> whether a higher ("max") or lower ("min") value is better."""


def metric_direction(name: str) -> str:
    """"max" if a higher value of metric `name` is better, "min" if lower is; an "eval_" prefix is ignored.

    >>> metric_direction("mcc"), metric_direction("eval_mse")
    ('max', 'min')
    """
    key = name.removeprefix("eval_")
    if key not in METRIC_DIRECTIONS:
        raise ValueError(f"unknown metric {name!r}; choose one of {sorted(METRIC_DIRECTIONS)}")
    return METRIC_DIRECTIONS[key]


METRICS_DIR = Path(__file__).resolve().parent / "metrics"
"""Folder holding one sub-folder per local evaluate metric."""

METRIC_SCRIPTS: dict[str, Path] = {
    name: METRICS_DIR / name / f"{name}.py"
    for name in ("accuracy", "f1", "mcc", "roc_auc", "pr_auc", "pearson", "spearman", "mse")
}
"""Metric name -> absolute path of its evaluate script."""


@functools.lru_cache(maxsize=None)
def load_metric(name: str, config_name: str | None = None):
    """Load local metric `name` as an ``evaluate.EvaluationModule``, once per process; no network.

    evaluate copies the script into its module cache under a file lock (safe when several
    processes load at once) and imports it. ``keep_in_memory=True`` keeps predictions in
    memory instead of Arrow files under ``~/.cache/huggingface/metrics``. The module is
    shared per process: do not call it from several threads at once.

    >>> load_metric("roc_auc", "multiclass").compute(
    ...     prediction_scores=[[0.9, 0.1], [0.2, 0.8]], references=[0, 1])
    {'roc_auc': 1.0}
    """
    if name not in METRIC_SCRIPTS:
        raise ValueError(f"unknown metric {name!r}; choose one of {sorted(METRIC_SCRIPTS)}")
    import evaluate  # imported lazily: it takes seconds

    logger.debug("loading metric %s (config %s) from %s", name, config_name, METRIC_SCRIPTS[name])
    return evaluate.load(str(METRIC_SCRIPTS[name]), config_name, keep_in_memory=True)


# ---- reducing one batch of logits to what the metrics need -------------------------------


def _as_float32(logits: torch.Tensor) -> torch.Tensor:
    """Detached float32 CPU copy (bf16/fp16 logits are upcast before softmax/sigmoid)."""
    return logits.detach().to(device="cpu", dtype=torch.float32)


def _check_class_ids(labels: torch.Tensor, num_labels: int) -> None:
    """Raise if any class id lies outside [0, num_labels)."""
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_labels):
        found = sorted(set(labels.unique().tolist()))
        raise ValueError(f"labels must be class ids in [0, {num_labels}), got values {found}")


def _class_probabilities(logits: torch.Tensor, num_labels: int) -> torch.Tensor:
    """(N, C) probabilities from (N, C) logits, or (N, 2) from one binary logit per example."""
    if num_labels == 1 or logits.ndim == 1:  # binary head with a single logit: (N,) or (N, 1)
        positive = torch.sigmoid(logits.reshape(-1))
        return torch.stack([1 - positive, positive], dim=1)
    if logits.ndim != 2 or logits.shape[1] != num_labels:
        raise ValueError(f"expected logits of shape (batch, {num_labels}), got {tuple(logits.shape)}")
    return torch.softmax(logits, dim=1)


def _reduce_classification(logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> dict[str, np.ndarray]:
    """Predicted class, class probabilities and labels of one batch (binary or multiclass)."""
    probs = _class_probabilities(_as_float32(logits), num_labels)  # N, C
    labels = labels.detach().cpu().reshape(-1).long()
    if labels.shape[0] != probs.shape[0]:
        raise ValueError(f"got {probs.shape[0]} logit rows but {labels.shape[0]} labels")
    _check_class_ids(labels, probs.shape[1])
    return {
        "preds": probs.argmax(dim=1).numpy().astype(np.int32),
        "probs": probs.numpy(),
        "labels": labels.numpy().astype(np.int32),
    }


def _reduce_token_classification(logits: torch.Tensor, labels: torch.Tensor, num_labels: int):
    """Like _reduce_classification, over the positions whose label is not IGNORE_INDEX."""
    if logits.ndim != 3 or logits.shape[:2] != labels.shape:
        raise ValueError(
            f"token_classification needs logits (batch, length, {num_labels}) and labels (batch, length); "
            f"got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    keep = labels.detach().cpu() != IGNORE_INDEX  # B, L
    return _reduce_classification(logits.detach().cpu()[keep], labels.detach().cpu()[keep], num_labels)


def _reduce_multilabel(logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> dict[str, np.ndarray]:
    """Per-label sigmoid probabilities (N, C) and 0/1 labels (N, C) of one batch."""
    if logits.ndim != 2 or logits.shape[1] != num_labels or labels.shape != logits.shape:
        raise ValueError(
            f"multilabel needs logits and labels of shape (batch, {num_labels}); "
            f"got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    labels = labels.detach().cpu()
    if not torch.isin(labels, torch.tensor([0, 1], dtype=labels.dtype)).all():
        raise ValueError("multilabel labels must be 0 or 1")
    return {"probs": torch.sigmoid(_as_float32(logits)).numpy(), "labels": labels.numpy().astype(np.int32)}


def _reduce_regression(logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> dict[str, np.ndarray]:
    """Predictions and targets of one batch as (N,) float32 arrays; logits (N,) or (N, 1)."""
    if logits.ndim > 2 or (logits.ndim == 2 and logits.shape[1] != 1):
        raise ValueError(f"regression needs one output per example, logits (batch,) or (batch, 1); "
                         f"got {tuple(logits.shape)}")
    preds = _as_float32(logits).reshape(-1)
    targets = labels.detach().to(device="cpu", dtype=torch.float32).reshape(-1)
    if preds.shape != targets.shape:
        raise ValueError(f"got {preds.shape[0]} predictions but {targets.shape[0]} targets")
    return {"preds": preds.numpy(), "labels": targets.numpy()}


# ---- metrics over the accumulated arrays --------------------------------------------------


def _score(metric: str, config_name: str | None = None, **inputs) -> float:
    """Run the local evaluate metric `metric` and return its value as a plain float."""
    return float(load_metric(metric, config_name).compute(**inputs)[metric])


def _label_metrics(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """accuracy, macro F1 and MCC of predicted vs true class ids."""
    return {
        "accuracy": _score("accuracy", predictions=preds, references=labels),
        "macro_f1": _score("f1", predictions=preds, references=labels, average="macro"),
        "mcc": _score("mcc", predictions=preds, references=labels),
    }


def _binary_metrics(data: dict[str, np.ndarray]) -> dict[str, float]:
    """accuracy, f1 (macro), mcc, and auroc/auprc of the positive class (column 1)."""
    metrics = _label_metrics(data["preds"], data["labels"])
    metrics["f1"] = metrics.pop("macro_f1")
    positive = data["probs"][:, 1]
    metrics["auroc"] = _score("roc_auc", prediction_scores=positive, references=data["labels"])
    metrics["auprc"] = _score("pr_auc", prediction_scores=positive, references=data["labels"])
    return metrics


def _multiclass_metrics(data: dict[str, np.ndarray]) -> dict[str, float]:
    """accuracy, macro_f1, mcc, and macro one-vs-rest auroc/auprc (also per token position)."""
    metrics = _label_metrics(data["preds"], data["labels"])
    rows = {"prediction_scores": data["probs"], "references": data["labels"]}
    metrics["auroc"] = _score("roc_auc", "multiclass", **rows)
    metrics["auprc"] = _score("pr_auc", "multiclass", **rows)
    return metrics


def _multilabel_metrics(data: dict[str, np.ndarray]) -> dict[str, float]:
    """macro/micro F1 at probability 0.5, and auroc/auprc macro-averaged over labels."""
    preds = (data["probs"] > 0.5).astype(np.int32)
    rows = {"prediction_scores": data["probs"], "references": data["labels"]}
    return {
        "macro_f1": _score("f1", "multilabel", predictions=preds, references=data["labels"], average="macro"),
        "micro_f1": _score("f1", "multilabel", predictions=preds, references=data["labels"], average="micro"),
        "auroc": _score("roc_auc", "multilabel", **rows),
        "auprc": _score("pr_auc", "multilabel", **rows),
    }


def _regression_metrics(data: dict[str, np.ndarray]) -> dict[str, float]:
    """pearson, spearman and mse of predictions vs targets."""
    inputs = {"predictions": data["preds"].astype(np.float64), "references": data["labels"].astype(np.float64)}
    return {name: _score(name, **inputs) for name in ("pearson", "spearman", "mse")}


Reducer = Callable[[torch.Tensor, torch.Tensor, int], dict[str, np.ndarray]]
Scorer = Callable[[dict[str, np.ndarray]], dict[str, float]]

PROBLEM_HANDLERS: dict[str, tuple[Reducer, Scorer]] = {
    "binary": (_reduce_classification, _binary_metrics),
    "multiclass": (_reduce_classification, _multiclass_metrics),
    "multilabel": (_reduce_multilabel, _multilabel_metrics),
    "regression": (_reduce_regression, _regression_metrics),
    "token_classification": (_reduce_token_classification, _multiclass_metrics),
}
"""Problem type -> (reduce one batch of logits, compute metrics over all reduced batches)."""
assert set(PROBLEM_HANDLERS) == set(PROBLEM_TYPES)


def _check_num_labels(problem_type: str, num_labels: int) -> None:
    """Raise if `num_labels` cannot go with `problem_type`."""
    if problem_type == "binary" and num_labels not in (1, 2):
        raise ValueError(f"binary needs num_labels 1 (one logit) or 2 (two logits), got {num_labels}")
    if problem_type == "regression" and num_labels != 1:
        raise ValueError(f"regression takes one output per example (num_labels=1), got {num_labels}")
    if problem_type in ("multiclass", "token_classification", "multilabel") and num_labels < 2:
        raise ValueError(f"{problem_type} needs num_labels >= 2, got {num_labels}")


class MetricAccumulator:
    """Collects batches of (logits, labels) and computes the metrics of `problem_type`.

    Only what the metrics need is kept per batch (class ids and float32 probabilities, or
    regression outputs); for token_classification only positions whose label is not -100.
    Metrics run through the local evaluate modules in `gr_ft/metrics`.

    >>> acc = MetricAccumulator("regression", num_labels=1)
    >>> acc.add_batch(torch.tensor([[0.1], [0.5], [0.9]]), torch.tensor([1.0, 2.0, 3.0]))
    >>> round(acc.compute()["pearson"], 6), acc.compute()["n"]
    (1.0, 3.0)
    """

    def __init__(self, problem_type: str, num_labels: int):
        if problem_type not in PROBLEM_HANDLERS:
            raise ValueError(f"unknown problem_type {problem_type!r}; choose one of {list(PROBLEM_TYPES)}")
        _check_num_labels(problem_type, num_labels)
        self.problem_type = problem_type
        self.num_labels = num_labels
        self._reduce, self._score = PROBLEM_HANDLERS[problem_type]
        self._parts: dict[str, list[np.ndarray]] = defaultdict(list)

    def add_batch(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Reduce one batch and keep the small arrays (logits may be bf16, on any device)."""
        for key, array in self._reduce(logits, labels, self.num_labels).items():
            self._parts[key].append(array)

    def __len__(self) -> int:
        """Examples (or token positions) added so far."""
        return sum(len(part) for part in self._parts.get("labels", []))

    def compute(self) -> dict[str, float]:
        """Metrics over every batch added so far, plus `n`; plain floats, nan where undefined."""
        n = len(self)
        if n == 0:
            raise ValueError(f"no {self.problem_type} examples to score: call add_batch with labelled data first")
        data = {key: np.concatenate(parts) for key, parts in self._parts.items()}
        metrics = self._score(data)
        metrics["n"] = float(n)
        return {name: float(value) for name, value in metrics.items()}

    def reset(self) -> None:
        """Forget every batch added so far."""
        self._parts.clear()
