"""Accuracy as a local `evaluate` metric, computed with scikit-learn.

Load it offline from its folder (no Hub access):

    >>> import evaluate
    >>> accuracy = evaluate.load("gr_ft/metrics/accuracy", keep_in_memory=True)
    >>> accuracy.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666}
"""

from sklearn.metrics import accuracy_score

from gr_ft import metric_scripts  # the module, not its classes: evaluate takes the first Metric class it finds

_DESCRIPTION = """
Accuracy is the fraction of predictions equal to their reference label:
accuracy = (TP + TN) / (TP + TN + FP + FN) for binary problems, and
mean(prediction == reference) in general.
"""

_KWARGS_DESCRIPTION = metric_scripts.CLASS_ID_ARGS + metric_scripts.SAMPLE_WEIGHT_ARG + """
Returns:
    accuracy (`float`): in [0, 1]; 1.0 means every prediction is correct.

Examples:
    >>> accuracy.compute(predictions=[0, 1], references=[0, 1])
    {'accuracy': 1.0}
"""

_CITATION = metric_scripts.SCIKIT_LEARN_CITATION


class Accuracy(metric_scripts.WeightedScore, metric_scripts.ClassIdMetric):
    """Fraction of predicted class ids equal to the reference class ids."""

    NAME, DESCRIPTION, CITATION, INPUTS = "accuracy", _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION
    REFERENCE_URL = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"
    score = staticmethod(accuracy_score)
