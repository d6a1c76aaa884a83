"""Area under the ROC curve as a local `evaluate` metric (scikit-learn).

Configs: "default" (binary; one positive-class score per example), "multiclass"
(one probability row per example, macro one-vs-rest) and "multilabel" (score rows and
0/1 rows, macro over labels). Undefined cases give nan and a logged warning:

    >>> import evaluate
    >>> auroc = evaluate.load("gr_ft/metrics/roc_auc", keep_in_memory=True)
    >>> auroc.compute(prediction_scores=[0.1, 0.4, 0.35, 0.8], references=[0, 0, 1, 1])
    {'roc_auc': 0.75}
"""

import logging

import datasets
import evaluate
import numpy as np
from sklearn.metrics import roc_auc_score

logger = logging.getLogger("gr_ft.metrics.roc_auc")

_DESCRIPTION = """
ROC AUC is the probability that a randomly drawn positive example is scored above a
randomly drawn negative one (area under the true-positive-rate vs false-positive-rate
curve). For several classes or labels it is computed one-vs-rest per column and
averaged without weights (macro). A column whose references hold a single class has no
ROC curve: it is skipped with a warning, and the result is nan when no column is defined.
"""

_KWARGS_DESCRIPTION = """
Args:
    prediction_scores: config "default": `list` of `float`, the positive-class score;
        "multiclass": `list` of rows of class probabilities (n_classes columns);
        "multilabel": `list` of rows of per-label scores.
    references: "default" and "multiclass": `list` of `int` class ids ("default": 0/1);
        "multilabel": `list` of 0/1 rows.

Returns:
    roc_auc (`float`): in [0, 1], or nan where undefined.

Examples:
    >>> auroc = evaluate.load("gr_ft/metrics/roc_auc", "multiclass", keep_in_memory=True)
    >>> auroc.compute(prediction_scores=[[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]],
    ...               references=[0, 1, 2])
    {'roc_auc': 1.0}
"""

_CITATION = """
@article{bradley1997,
  title={The use of the area under the ROC curve in the evaluation of machine learning algorithms},
  author={Bradley, Andrew P.},
  journal={Pattern Recognition},
  volume={30},
  number={7},
  pages={1145--1159},
  year={1997}
}
"""

_CONFIGS = ("default", "multiclass", "multilabel")


def _features(config_name):
    """Input schema per config; see _KWARGS_DESCRIPTION."""
    if config_name not in _CONFIGS:
        raise ValueError(f"unknown roc_auc config {config_name!r}; choose one of {list(_CONFIGS)}")
    score_row, label_row = datasets.Sequence(datasets.Value("float32")), datasets.Sequence(datasets.Value("int32"))
    scores = datasets.Value("float32") if config_name == "default" else score_row
    labels = label_row if config_name == "multilabel" else datasets.Value("int32")
    return datasets.Features({"prediction_scores": scores, "references": labels})


def binary_roc_auc(references, scores):
    """ROC AUC of 0/1 `references` against `scores`; nan if only one class is present."""
    present = np.unique(references)
    if present.size < 2:
        return float("nan")
    return float(roc_auc_score(references, scores))


def one_vs_rest_targets(references, scores, config_name):
    """(N, C) 0/1 targets matching (N, C) `scores`: one-hot class ids, or the label rows."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"config {config_name!r} needs one score row per example, got shape {scores.shape}")
    if config_name == "multilabel":
        return np.asarray(references, dtype=np.int64), scores
    references = np.asarray(references, dtype=np.int64)
    if references.size and (references.min() < 0 or references.max() >= scores.shape[1]):
        raise ValueError(f"class ids must be in [0, {scores.shape[1]}), got {sorted(set(references.tolist()))}")
    return (references[:, None] == np.arange(scores.shape[1])).astype(np.int64), scores


def macro_roc_auc(targets, scores):
    """Unweighted mean of per-column ROC AUCs, skipping (with a warning) undefined columns."""
    per_column = np.array([binary_roc_auc(targets[:, c], scores[:, c]) for c in range(scores.shape[1])])
    undefined = np.flatnonzero(np.isnan(per_column)).tolist()
    if len(undefined) == len(per_column):
        logger.warning("roc_auc is undefined for every column (single class present in each); returning nan")
        return float("nan")
    if undefined:
        logger.warning("roc_auc: columns %s hold a single class; macro average skips them", undefined)
    return float(np.nanmean(per_column))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RocAuc(evaluate.Metric):
    """ROC AUC: binary, multiclass (macro one-vs-rest) or multilabel (macro over labels)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_features(self.config_name),
            format="numpy" if self.config_name == "default" else None,
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.roc_auc_score.html"
            ],
        )

    def _compute(self, prediction_scores, references):
        if self.config_name != "default":
            targets, scores = one_vs_rest_targets(references, prediction_scores, self.config_name)
            return {"roc_auc": macro_roc_auc(targets, scores)}
        references = np.asarray(references)
        if not np.isin(references, (0, 1)).all():
            raise ValueError("binary roc_auc needs 0/1 references; use config 'multiclass' for more classes")
        score = binary_roc_auc(references, prediction_scores)
        if np.isnan(score):
            logger.warning("roc_auc is undefined: references hold a single class; returning nan")
        return {"roc_auc": score}
