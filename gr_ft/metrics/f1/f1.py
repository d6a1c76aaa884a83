"""F1 score (macro by default) as a local `evaluate` metric, computed with scikit-learn.

Config "default" takes one class id per example; config "multilabel" takes a 0/1
row per example:

    >>> import evaluate
    >>> f1 = evaluate.load("gr_ft/metrics/f1", keep_in_memory=True)
    >>> f1.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'f1': 0.6666666666666666}
"""

import datasets
import evaluate
from sklearn.metrics import f1_score

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

_CONFIGS = ("default", "multilabel")


def _features(config_name):
    """Scalar class ids for "default"; 0/1 rows for "multilabel"."""
    if config_name not in _CONFIGS:
        raise ValueError(f"unknown f1 config {config_name!r}; choose one of {list(_CONFIGS)}")
    if config_name == "multilabel":
        row = datasets.Sequence(datasets.Value("int32"))
        return datasets.Features({"predictions": row, "references": row})
    return datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")})


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    """F1 score with a configurable average (macro by default)."""

    def _info(self):
        features = _features(self.config_name)
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=features,
            format="numpy" if self.config_name == "default" else None,
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
        )

    def _compute(self, predictions, references, average="macro", pos_label=1, labels=None, zero_division=0):
        score = f1_score(
            references,
            predictions,
            average=average,
            pos_label=pos_label,
            labels=labels,
            zero_division=zero_division,
        )
        return {"f1": float(score)}
