"""Pearson correlation coefficient as a local `evaluate` metric (scipy).

    >>> import evaluate
    >>> pearson = evaluate.load("gr_ft/metrics/pearson", keep_in_memory=True)
    >>> round(pearson.compute(predictions=[1.0, 2.0, 3.0], references=[2.0, 4.0, 7.0])["pearson"], 4)
    0.9934
"""

import logging

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr

logger = logging.getLogger("gr_ft.metrics.pearson")

_DESCRIPTION = """
Pearson's r measures the linear correlation between predictions and references:
r = cov(x, y) / (std(x) * std(y)), in [-1, 1]. It is undefined (nan) when either input is
constant or there are fewer than two examples.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted values.
    references (`list` of `float`): true values.

Returns:
    pearson (`float`): in [-1, 1], or nan where undefined.

Examples:
    >>> round(pearson.compute(predictions=[3.0, 2.0, 1.0], references=[1.0, 2.0, 3.0])["pearson"], 6)
    -1.0
"""

_CITATION = """
@article{2020SciPy-NMeth,
  title={{SciPy} 1.0: Fundamental Algorithms for Scientific Computing in Python},
  author={Virtanen, Pauli and Gommers, Ralf and Oliphant, Travis E. and others},
  journal={Nature Methods},
  volume={17},
  pages={261--272},
  year={2020}
}
"""


def _is_degenerate(predictions, references):
    """True when r is undefined: under two examples or a constant input."""
    return len(predictions) < 2 or np.ptp(predictions) == 0 or np.ptp(references) == 0


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Pearson(evaluate.Metric):
    """Pearson correlation between predicted and true values."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
            # no format="numpy": datasets' numpy formatter would downcast float64 to float32
            reference_urls=["https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.pearsonr.html"],
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions, np.float64), np.asarray(references, np.float64)
        if _is_degenerate(predictions, references):
            logger.warning("pearson is undefined for constant inputs or fewer than 2 examples; returning nan")
            return {"pearson": float("nan")}
        return {"pearson": float(pearsonr(predictions, references)[0])}
