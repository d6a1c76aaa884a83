"""Matthews correlation coefficient as a local `evaluate` metric (scikit-learn).

    >>> import evaluate
    >>> mcc = evaluate.load("gr_ft/metrics/mcc", keep_in_memory=True)
    >>> mcc.compute(predictions=[0, 1, 1, 0], references=[0, 1, 1, 0])
    {'mcc': 1.0}
"""

from sklearn.metrics import matthews_corrcoef

from gr_ft import metric_scripts  # the module, not its classes: evaluate takes the first Metric class it finds

_DESCRIPTION = """
The Matthews correlation coefficient (MCC) is the correlation between predicted and true
class labels, computed from the confusion matrix; the multiclass form is Gorodkin's R_K.
It is +1 for perfect predictions, 0 for chance and -1 for total disagreement, and is
robust to class imbalance. scikit-learn returns 0.0 where it is undefined (e.g. one class).
"""

_KWARGS_DESCRIPTION = metric_scripts.CLASS_ID_ARGS + metric_scripts.SAMPLE_WEIGHT_ARG + """
Returns:
    mcc (`float`): in [-1, 1].

Examples:
    >>> mcc.compute(predictions=[1, 0, 0, 1], references=[0, 1, 1, 0])
    {'mcc': -1.0}
"""

_CITATION = """
@article{matthews1975,
  title={Comparison of the predicted and observed secondary structure of T4 phage lysozyme},
  author={Matthews, B. W.},
  journal={Biochimica et Biophysica Acta (BBA) - Protein Structure},
  volume={405},
  number={2},
  pages={442--451},
  year={1975}
}
@article{gorodkin2004,
  title={Comparing two K-category assignments by a K-category correlation coefficient},
  author={Gorodkin, J.},
  journal={Computational Biology and Chemistry},
  volume={28},
  number={5},
  pages={367--374},
  year={2004}
}
"""


class Mcc(metric_scripts.WeightedScore, metric_scripts.ClassIdMetric):
    """Matthews correlation coefficient (binary and multiclass)."""

    NAME, DESCRIPTION, CITATION, INPUTS = "mcc", _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION
    REFERENCE_URL = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.matthews_corrcoef.html"
    score = staticmethod(matthews_corrcoef)
