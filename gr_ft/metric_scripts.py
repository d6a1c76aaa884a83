"""What the local `evaluate` metric scripts in ``gr_ft/metrics/<name>/<name>.py`` share.

Each script stays a standalone evaluate module (``evaluate.load("gr_ft/metrics/mcc")`` works from a checkout)
holding its description, citation and the score it computes; the schema, the ``MetricInfo`` and the rules for
one-vs-rest averaging and undefined values live here once, so the eight scripts cannot drift apart.

- :class:`GrFtMetric`: ``_info`` built from class attributes (``DESCRIPTION``, ``CITATION``, ``INPUTS``,
  ``REFERENCE_URL``) and the feature schema of :meth:`GrFtMetric.input_features`.
- :class:`ClassIdMetric` / :class:`RealValueMetric`: one class id, or one real value, per example.
- :class:`CorrelationMetric`: Pearson / Spearman, nan (with a warning) where the correlation is undefined.
- :class:`ScoreMetric`: ROC AUC / average precision over scores: binary, multiclass (macro one-vs-rest) and
  multilabel (macro over labels), undefined columns skipped with a warning.
"""

from __future__ import annotations

import logging
from typing import Callable, ClassVar, Optional

import datasets
import evaluate
import numpy as np

__all__ = ["GrFtMetric", "ClassIdMetric", "RealValueMetric", "WeightedScore", "CorrelationMetric", "ScoreMetric",
           "one_vs_rest_targets", "macro_over_columns"]

SCORE_CONFIGS = ("default", "multiclass", "multilabel")

CLASS_ID_ARGS = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): true class ids.
"""
REAL_VALUE_ARGS = """
Args:
    predictions (`list` of `float`): predicted values.
    references (`list` of `float`): true values.
"""
SCORE_ARGS = """
Args:
    prediction_scores: config "default": `list` of `float`, the positive-class score;
        "multiclass": `list` of rows of class probabilities (n_classes columns);
        "multilabel": `list` of rows of per-label scores.
    references: "default" and "multiclass": `list` of `int` class ids ("default": 0/1);
        "multilabel": `list` of 0/1 rows.

"""
SAMPLE_WEIGHT_ARG = """    sample_weight (`list` of `float`, optional): per-example weights. Defaults to None.
"""
"""The argument descriptions the metrics share (each script adds what it returns and an example)."""

SCIKIT_LEARN_CITATION = """
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
SCIPY_CITATION = """
@article{2020SciPy-NMeth,
  title={{SciPy} 1.0: Fundamental Algorithms for Scientific Computing in Python},
  author={Virtanen, Pauli and Gommers, Ralf and Oliphant, Travis E. and others},
  journal={Nature Methods},
  volume={17},
  pages={261--272},
  year={2020}
}
"""


def _int_ids() -> datasets.Value:
    return datasets.Value("int32")


def _rows(kind: str) -> datasets.Sequence:
    return datasets.Sequence(datasets.Value(kind))


class GrFtMetric(evaluate.Metric):
    """An evaluate metric described by class attributes; subclasses give :meth:`input_features` and ``_compute``."""

    NAME: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""
    CITATION: ClassVar[str] = ""
    INPUTS: ClassVar[str] = ""
    REFERENCE_URL: ClassVar[str] = ""
    CONFIGS: ClassVar[tuple[str, ...]] = ("default",)
    NUMPY_FORMAT: ClassVar[bool] = True
    """Hand ``_compute`` numpy arrays for the default config (off for float64 inputs: datasets' numpy
    formatter would downcast them to float32)."""

    @property
    def logger(self) -> logging.Logger:
        return logging.getLogger(f"gr_ft.metrics.{self.NAME}")

    def input_features(self) -> datasets.Features:
        raise NotImplementedError

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in self.CONFIGS:
            raise ValueError(f"unknown {self.NAME} config {self.config_name!r}; choose one of {list(self.CONFIGS)}")
        return evaluate.MetricInfo(
            description=self.DESCRIPTION, citation=self.CITATION, inputs_description=self.INPUTS,
            features=self.input_features(),
            format="numpy" if self.NUMPY_FORMAT and self.config_name == "default" else None,
            reference_urls=[self.REFERENCE_URL],
        )


class ClassIdMetric(GrFtMetric):
    """Predicted and true class ids (config ``multilabel``, where offered: 0/1 rows)."""

    def input_features(self) -> datasets.Features:
        if self.config_name == "multilabel":
            return datasets.Features({"predictions": _rows("int32"), "references": _rows("int32")})
        return datasets.Features({"predictions": _int_ids(), "references": _int_ids()})


class RealValueMetric(GrFtMetric):
    """Predicted and true real values (float64, passed as lists)."""

    NUMPY_FORMAT = False

    def input_features(self) -> datasets.Features:
        return datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")})


class WeightedScore:
    """Mixin: ``_compute`` is a scikit-learn ``score(y_true, y_pred, sample_weight=None)`` reported under NAME."""

    score: ClassVar[Callable]

    def _compute(self, predictions, references, sample_weight=None):
        return {self.NAME: float(type(self).score(references, predictions, sample_weight=sample_weight))}


class CorrelationMetric(RealValueMetric):
    """A correlation of predictions with references; nan where either is constant or there are < 2 examples."""

    correlation: ClassVar[Callable]
    """scipy.stats function returning (statistic, p-value)."""

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions, np.float64), np.asarray(references, np.float64)
        if len(predictions) < 2 or np.ptp(predictions) == 0 or np.ptp(references) == 0:
            self.logger.warning("%s is undefined for constant inputs or fewer than 2 examples; returning nan",
                                self.NAME)
            return {self.NAME: float("nan")}
        return {self.NAME: float(type(self).correlation(predictions, references)[0])}


def one_vs_rest_targets(references, scores, config_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) 0/1 targets matching (N, C) ``scores``: one-hot class ids, or the label rows."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"config {config_name!r} needs one score row per example, got shape {scores.shape}")
    if config_name == "multilabel":
        return np.asarray(references, dtype=np.int64), scores
    references = np.asarray(references, dtype=np.int64)
    if references.size and (references.min() < 0 or references.max() >= scores.shape[1]):
        raise ValueError(f"class ids must be in [0, {scores.shape[1]}), got {sorted(set(references.tolist()))}")
    return (references[:, None] == np.arange(scores.shape[1])).astype(np.int64), scores


def macro_over_columns(binary: Callable, targets: np.ndarray, scores: np.ndarray, name: str,
                       undefined_why: str, logger: logging.Logger) -> float:
    """Unweighted mean of ``binary`` per column, skipping (with a warning) the columns where it is undefined."""
    per_column = np.array([binary(targets[:, c], scores[:, c]) for c in range(scores.shape[1])])
    undefined = np.flatnonzero(np.isnan(per_column)).tolist()
    if len(undefined) == len(per_column):
        logger.warning("%s is undefined for every column (%s in each); returning nan", name, undefined_why)
        return float("nan")
    if undefined:
        logger.warning("%s: columns %s have %s; macro average skips them", name, undefined, undefined_why)
    return float(np.nanmean(per_column))


class ScoreMetric(GrFtMetric):
    """A ranking score over predicted scores: binary (one score per example), multiclass or multilabel (rows)."""

    CONFIGS = SCORE_CONFIGS
    binary: ClassVar[Callable[[np.ndarray, np.ndarray], float]]
    """0/1 references and scores -> the score, nan where it is undefined."""
    UNDEFINED_WHY: ClassVar[str] = ""
    """Why ``binary`` can be undefined, for the warning (e.g. "a single class")."""

    def input_features(self) -> datasets.Features:
        scores = datasets.Value("float32") if self.config_name == "default" else _rows("float32")
        labels = _rows("int32") if self.config_name == "multilabel" else _int_ids()
        return datasets.Features({"prediction_scores": scores, "references": labels})

    def _compute(self, prediction_scores, references):
        binary: Optional[Callable] = type(self).binary
        if self.config_name != "default":
            targets, scores = one_vs_rest_targets(references, prediction_scores, self.config_name)
            return {self.NAME: macro_over_columns(binary, targets, scores, self.NAME, self.UNDEFINED_WHY,
                                                  self.logger)}
        references = np.asarray(references)
        if not np.isin(references, (0, 1)).all():
            raise ValueError(f"binary {self.NAME} needs 0/1 references; use config 'multiclass' for more classes")
        score = binary(references, prediction_scores)
        if np.isnan(score):
            self.logger.warning("%s is undefined: %s; returning nan", self.NAME, self.UNDEFINED_WHY)
        return {self.NAME: score}
