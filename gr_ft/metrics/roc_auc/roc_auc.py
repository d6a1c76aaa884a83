"""Area under the ROC curve as a local `evaluate` metric (scikit-learn).

Configs "default" (binary), "multiclass" and "multilabel", as `gr_ft.metric_scripts.ScoreMetric` describes;
undefined cases give nan and a logged warning:

    >>> import evaluate
    >>> auroc = evaluate.load("gr_ft/metrics/roc_auc", keep_in_memory=True)
    >>> auroc.compute(prediction_scores=[0.1, 0.4, 0.35, 0.8], references=[0, 0, 1, 1])
    {'roc_auc': 0.75}
"""

import numpy as np
from sklearn.metrics import roc_auc_score

from gr_ft import metric_scripts  # the module, not its classes: evaluate takes the first Metric class it finds

_DESCRIPTION = """
ROC AUC is the probability that a randomly drawn positive example is scored above a
randomly drawn negative one (area under the true-positive-rate vs false-positive-rate
curve). For several classes or labels it is computed one-vs-rest per column and
averaged without weights (macro). A column whose references hold a single class has no
ROC curve: it is skipped with a warning, and the result is nan when no column is defined.
"""

_KWARGS_DESCRIPTION = metric_scripts.SCORE_ARGS + """
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


def binary_roc_auc(references, scores):
    """ROC AUC of 0/1 `references` against `scores`; nan if only one class is present."""
    if np.unique(references).size < 2:
        return float("nan")
    return float(roc_auc_score(references, scores))


class RocAuc(metric_scripts.ScoreMetric):
    """ROC AUC: binary, multiclass (macro one-vs-rest) or multilabel (macro over labels)."""

    NAME, DESCRIPTION, CITATION, INPUTS = "roc_auc", _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION
    REFERENCE_URL = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.roc_auc_score.html"
    UNDEFINED_WHY = "a single class"
    binary = staticmethod(binary_roc_auc)
