"""Pearson correlation coefficient as a local `evaluate` metric (scipy).

    >>> import evaluate
    >>> pearson = evaluate.load("gr_ft/metrics/pearson", keep_in_memory=True)
    >>> round(pearson.compute(predictions=[1.0, 2.0, 3.0], references=[2.0, 4.0, 7.0])["pearson"], 4)
    0.9934
"""

from scipy.stats import pearsonr

from gr_ft import metric_scripts  # the module, not its classes: evaluate takes the first Metric class it finds

_DESCRIPTION = """
Pearson's r measures the linear correlation between predictions and references:
r = cov(x, y) / (std(x) * std(y)), in [-1, 1]. It is undefined (nan) when either input is
constant or there are fewer than two examples.
"""

_KWARGS_DESCRIPTION = metric_scripts.REAL_VALUE_ARGS + """
Returns:
    pearson (`float`): in [-1, 1], or nan where undefined.

Examples:
    >>> round(pearson.compute(predictions=[3.0, 2.0, 1.0], references=[1.0, 2.0, 3.0])["pearson"], 6)
    -1.0
"""

_CITATION = metric_scripts.SCIPY_CITATION


class Pearson(metric_scripts.CorrelationMetric):
    """Pearson correlation between predicted and true values."""

    NAME, DESCRIPTION, CITATION, INPUTS = "pearson", _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION
    REFERENCE_URL = "https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.pearsonr.html"

    correlation = staticmethod(pearsonr)
