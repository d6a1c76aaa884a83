"""Mean squared error as a local `evaluate` metric (scikit-learn).

    >>> import evaluate
    >>> mse = evaluate.load("gr_ft/metrics/mse", keep_in_memory=True)
    >>> mse.compute(predictions=[1.0, 2.0, 3.0], references=[1.0, 2.0, 5.0])
    {'mse': 1.3333333333333333}
"""

import datasets
import evaluate
from sklearn.metrics import mean_squared_error

_DESCRIPTION = """
Mean squared error: MSE = mean((prediction - reference) ** 2). Lower is better; 0 is perfect.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted values.
    references (`list` of `float`): true values.
    sample_weight (`list` of `float`, optional): per-example weights. Defaults to None.

Returns:
    mse (`float`): >= 0.

Examples:
    >>> mse.compute(predictions=[0.0, 0.0], references=[1.0, -1.0])
    {'mse': 1.0}
"""

_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and
          Grisel, O. and Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and
          Vanderplas, J. and Passos, A. and Cournapeau, D. and Brucher, M. and Perrot, M. and
          Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Mse(evaluate.Metric):
    """Mean squared error between predicted and true values."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
            # no format="numpy": datasets' numpy formatter would downcast float64 to float32
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.mean_squared_error.html"
            ],
        )

    def _compute(self, predictions, references, sample_weight=None):
        return {"mse": float(mean_squared_error(references, predictions, sample_weight=sample_weight))}
