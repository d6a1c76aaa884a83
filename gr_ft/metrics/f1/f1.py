"""F1 score (macro by default) as a local `evaluate` metric, computed with scikit-learn.

Config "default" takes one class id per example; config "multilabel" takes a 0/1
row per example:

    >>> import evaluate
    >>> f1 = evaluate.load("gr_ft/metrics/f1", keep_in_memory=True)
    >>> f1.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'f1': 0.6666666666666666}
"""

from sklearn.metrics import f1_score

from gr_ft import metric_scripts  # the module, not its classes: evaluate takes the first Metric class it finds

_DESCRIPTION = """
The F1 score is the harmonic mean of precision and recall: F1 = 2 * P * R / (P + R).
With average="macro" (the default here) it is the unweighted mean of the per-class
(or, for config "multilabel", per-label) F1 scores; "micro" pools the counts first.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`, or `list` of 0/1 rows for config "multilabel"): predicted labels.
    references (same shape as predictions): true labels.
    average (`str`): "macro" (default), "micro", "weighted", "binary" or "samples", as in
        sklearn.metrics.f1_score.
    pos_label (`int`): positive class when average="binary". Defaults to 1.
    labels (`list` of `int`, optional): classes to include. Defaults to all classes seen.
    zero_division (`float`): value for classes with no predictions and no references. Defaults to 0.

Returns:
    f1 (`float`): in [0, 1].

Examples:
    >>> f1.compute(predictions=[0, 1, 0], references=[0, 1, 1], average="macro")
    {'f1': 0.6666666666666666}
"""

_CITATION = metric_scripts.SCIKIT_LEARN_CITATION


class F1(metric_scripts.ClassIdMetric):
    """F1 score with a configurable average (macro by default)."""

    NAME, DESCRIPTION, CITATION, INPUTS = "f1", _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION
    REFERENCE_URL = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"
    CONFIGS = ("default", "multilabel")

    def _compute(self, predictions, references, average="macro", pos_label=1, labels=None, zero_division=0):
        score = f1_score(references, predictions, average=average, pos_label=pos_label, labels=labels,
                         zero_division=zero_division)
        return {"f1": float(score)}
