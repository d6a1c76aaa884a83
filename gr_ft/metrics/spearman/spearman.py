"""Spearman rank correlation as a local `evaluate` metric (scipy).

    >>> import evaluate
    >>> spearman = evaluate.load("gr_ft/metrics/spearman", keep_in_memory=True)
    >>> spearman.compute(predictions=[1.0, 2.0, 30.0], references=[1.0, 5.0, 6.0])
    {'spearman': 1.0}
"""

import logging

import datasets
import evaluate
import numpy as np
from scipy.stats import spearmanr

logger = logging.getLogger("gr_ft.metrics.spearman")

_DESCRIPTION = """
Spearman's rho is Pearson's r between the ranks of predictions and references (ties get
their average rank), so it measures any monotonic relationship, in [-1, 1]. It is
undefined (nan) when either input is constant or there are fewer than two examples.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted values.
    references (`list` of `float`): true values.

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


def _is_degenerate(predictions, references):
    """True when rho is undefined: under two examples or a constant input."""
    return len(predictions) < 2 or np.ptp(predictions) == 0 or np.ptp(references) == 0


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Spearman(evaluate.Metric):
    """Spearman rank correlation between predicted and true values."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
            # no format="numpy": datasets' numpy formatter would downcast float64 to float32
            reference_urls=["https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.spearmanr.html"],
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions, np.float64), np.asarray(references, np.float64)
        if _is_degenerate(predictions, references):
            logger.warning("spearman is undefined for constant inputs or fewer than 2 examples; returning nan")
            return {"spearman": float("nan")}
        return {"spearman": float(spearmanr(predictions, references)[0])}
