"""Spearman rank correlation as a local `evaluate` metric (scipy).

    >>> import evaluate
    >>> spearman = evaluate.load("gr_ft/metrics/spearman", keep_in_memory=True)
    >>> spearman.compute(predictions=[1.0, 2.0, 30.0], references=[1.0, 5.0, 6.0])
    {'spearman': 1.0}
"""

from scipy.stats import spearmanr

from gr_ft import metric_scripts  # the module, not its classes: evaluate takes the first Metric class it finds

_DESCRIPTION = """
Spearman's rho is Pearson's r between the ranks of predictions and references (ties get
their average rank), so it measures any monotonic relationship, in [-1, 1]. It is
undefined (nan) when either input is constant or there are fewer than two examples.
"""

_KWARGS_DESCRIPTION = metric_scripts.REAL_VALUE_ARGS + """
Returns:
    spearman (`float`): in [-1, 1], or nan where undefined.

Examples:
    >>> spearman.compute(predictions=[3.0, 2.0, 1.0], references=[1.0, 2.0, 3.0])
    {'spearman': -1.0}
"""

_CITATION = """
@article{spearman1904,
  title={The proof and measurement of association between two things},
  author={Spearman, Charles},
  journal={The American Journal of Psychology},
  volume={15},
  number={1},
  pages={72--101},
  year={1904}
}
"""


class Spearman(metric_scripts.CorrelationMetric):
    """Spearman rank correlation between predicted and true values."""

    NAME, DESCRIPTION, CITATION, INPUTS = "spearman", _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION
    REFERENCE_URL = "https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.spearmanr.html"

    correlation = staticmethod(spearmanr)
