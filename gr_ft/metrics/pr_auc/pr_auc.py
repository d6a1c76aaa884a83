"""Area under the precision-recall curve (average precision) as a local `evaluate` metric.

Configs: "default" (binary; one positive-class score per example), "multiclass"
(one probability row per example, macro one-vs-rest) and "multilabel" (score rows and
0/1 rows, macro over labels). Undefined cases give nan and a logged warning:

    >>> import evaluate
    >>> auprc = evaluate.load("gr_ft/metrics/pr_auc", keep_in_memory=True)
    >>> auprc.compute(prediction_scores=[0.1, 0.4, 0.35, 0.8], references=[0, 0, 1, 1])
    {'pr_auc': 0.8333333333333333}
"""

import logging

import datasets
import evaluate
import numpy as np
from sklearn.metrics import average_precision_score

logger = logging.getLogger("gr_ft.metrics.pr_auc")

_DESCRIPTION = """
Average precision (AP) summarises the precision-recall curve as the weighted mean of
precisions at each threshold, weighted by the increase in recall:
AP = sum_n (R_n - R_{n-1}) P_n (scikit-learn's average_precision_score; no interpolation).
For several classes or labels it is computed one-vs-rest per column and averaged without
weights (macro). A column with no positive reference has no defined AP: it is skipped with
a warning, and the result is nan when no column is defined.
"""

_KWARGS_DESCRIPTION = """
Args:
    prediction_scores: config "default": `list` of `float`, the positive-class score;
        "multiclass": `list` of rows of class probabilities (n_classes columns);
        "multilabel": `list` of rows of per-label scores.
    references: "default" and "multiclass": `list` of `int` class ids ("default": 0/1);
        "multilabel": `list` of 0/1 rows.

Returns:
    pr_auc (`float`): in [0, 1], or nan where undefined.

Examples:
    >>> auprc.compute(prediction_scores=[0.9, 0.2], references=[1, 0])
    {'pr_auc': 1.0}
"""

_CITATION = """
@inproceedings{davis2006,
  title={The relationship between Precision-Recall and ROC curves},
  author={Davis, Jesse and Goadrich, Mark},
  booktitle={Proceedings of the 23rd International Conference on Machine Learning},
  pages={233--240},
  year={2006}
}
"""

_CONFIGS = ("default", "multiclass", "multilabel")


def _features(config_name):
    """Input schema per config; see _KWARGS_DESCRIPTION."""
    if config_name not in _CONFIGS:
        raise ValueError(f"unknown pr_auc config {config_name!r}; choose one of {list(_CONFIGS)}")
    score_row, label_row = datasets.Sequence(datasets.Value("float32")), datasets.Sequence(datasets.Value("int32"))
    scores = datasets.Value("float32") if config_name == "default" else score_row
    labels = label_row if config_name == "multilabel" else datasets.Value("int32")
    return datasets.Features({"prediction_scores": scores, "references": labels})


def binary_average_precision(references, scores):
    """Average precision of 0/1 `references` against `scores`; nan if there is no positive."""
    if not np.any(np.asarray(references) == 1):
        return float("nan")
    return float(average_precision_score(references, scores))


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


def macro_average_precision(targets, scores):
    """Unweighted mean of per-column APs, skipping (with a warning) columns with no positive."""
    per_column = np.array([binary_average_precision(targets[:, c], scores[:, c]) for c in range(scores.shape[1])])
    undefined = np.flatnonzero(np.isnan(per_column)).tolist()
    if len(undefined) == len(per_column):
        logger.warning("pr_auc is undefined for every column (no positive references); returning nan")
        return float("nan")
    if undefined:
        logger.warning("pr_auc: columns %s have no positive reference; macro average skips them", undefined)
    return float(np.nanmean(per_column))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PrAuc(evaluate.Metric):
    """Average precision: binary, multiclass (macro one-vs-rest) or multilabel (macro over labels)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_features(self.config_name),
            format="numpy" if self.config_name == "default" else None,
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.average_precision_score.html"
            ],
        )

    def _compute(self, prediction_scores, references):
        if self.config_name != "default":
            targets, scores = one_vs_rest_targets(references, prediction_scores, self.config_name)
            return {"pr_auc": macro_average_precision(targets, scores)}
        references = np.asarray(references)
        if not np.isin(references, (0, 1)).all():
            raise ValueError("binary pr_auc needs 0/1 references; use config 'multiclass' for more classes")
        score = binary_average_precision(references, prediction_scores)
        if np.isnan(score):
            logger.warning("pr_auc is undefined: no positive reference; returning nan")
        return {"pr_auc": score}
