"""Mean squared error as a local `evaluate` metric (scikit-learn).

    >>> import evaluate
    >>> mse = evaluate.load("gr_ft/metrics/mse", keep_in_memory=True)
    >>> mse.compute(predictions=[1.0, 2.0, 3.0], references=[1.0, 2.0, 5.0])
    {'mse': 1.3333333333333333}
"""

from sklearn.metrics import mean_squared_error

from gr_ft import metric_scripts  # the module, not its classes: evaluate takes the first Metric class it finds

_DESCRIPTION = """
Mean squared error: MSE = mean((prediction - reference) ** 2). Lower is better; 0 is perfect.
"""

_KWARGS_DESCRIPTION = metric_scripts.REAL_VALUE_ARGS + metric_scripts.SAMPLE_WEIGHT_ARG + """
Returns:
    mse (`float`): >= 0.

Examples:
    >>> mse.compute(predictions=[0.0, 0.0], references=[1.0, -1.0])
    {'mse': 1.0}
"""

_CITATION = metric_scripts.SCIKIT_LEARN_CITATION


class Mse(metric_scripts.WeightedScore, metric_scripts.RealValueMetric):
    """Mean squared error between predicted and true values."""

    NAME, DESCRIPTION, CITATION, INPUTS = "mse", _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION
    REFERENCE_URL = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.mean_squared_error.html"
    score = staticmethod(mean_squared_error)
