"""Area under the precision-recall curve (average precision) as a local `evaluate` metric.

Configs "default" (binary), "multiclass" and "multilabel", as `gr_ft.metric_scripts.ScoreMetric` describes;
undefined cases give nan and a logged warning:

    >>> import evaluate
    >>> auprc = evaluate.load("gr_ft/metrics/pr_auc", keep_in_memory=True)
    >>> auprc.compute(prediction_scores=[0.1, 0.4, 0.35, 0.8], references=[0, 0, 1, 1])
    {'pr_auc': 0.8333333333333333}
"""

import numpy as np
from sklearn.metrics import average_precision_score

from gr_ft import metric_scripts  # the module, not its classes: evaluate takes the first Metric class it finds

_DESCRIPTION = """
Average precision (AP) summarises the precision-recall curve as the weighted mean of
precisions at each threshold, weighted by the increase in recall:
AP = sum_n (R_n - R_{n-1}) P_n (scikit-learn's average_precision_score; no interpolation).
For several classes or labels it is computed one-vs-rest per column and averaged without
weights (macro). A column with no positive reference has no defined AP: it is skipped with
a warning, and the result is nan when no column is defined.
"""

_KWARGS_DESCRIPTION = metric_scripts.SCORE_ARGS + """
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


def binary_average_precision(references, scores):
    """Average precision of 0/1 `references` against `scores`; nan if there is no positive."""
    if not np.any(np.asarray(references) == 1):
        return float("nan")
    return float(average_precision_score(references, scores))


class PrAuc(metric_scripts.ScoreMetric):
    """Average precision: binary, multiclass (macro one-vs-rest) or multilabel (macro over labels)."""

    NAME, DESCRIPTION, CITATION, INPUTS = "pr_auc", _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION
    REFERENCE_URL = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.average_precision_score.html"
    UNDEFINED_WHY = "no positive reference"
    binary = staticmethod(binary_average_precision)
