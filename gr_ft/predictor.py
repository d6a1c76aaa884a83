"""Prediction with a finished run: :func:`load_run` reloads a run folder (or a Hub repo written by
``gr-ft push``) into a :class:`Predictor`; :func:`evaluate_run` scores it on labelled data.

Example:
    >>> predictor = load_run("runs/demo")
    >>> predictor.predict(["ACGT" * 25]).columns.tolist()
    ['prediction', 'prob_0', 'prob_1']
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd
import torch

from .config import FinetuneConfig
from .labels import LabelSpec
from .run_folder import load_model_for_run, run_precision
from .tokenization import SequenceTokenizer

if TYPE_CHECKING:
    from .inference import InferenceOptions

__all__ = ["Predictor", "load_run", "evaluate_run"]

logger = logging.getLogger(__name__)


class Predictor:
    """Predict with a trained run: raw sequences in, a DataFrame of predictions out.

    Prediction goes through :class:`gr_ft.inference.InferenceEngine` (adapter merged, length-sorted
    batches, windows over long sequences) at the run's recorded precision unless ``options`` says otherwise; a
    recorded bf16 runs in fp32 on a machine where bf16 is slower (:func:`gr_ft.inference.inference_precision`).
    ``copy_model=False`` lets the engine merge the adapter into ``model`` in place (``load_run`` does).
    """

    def __init__(self, model, tokenizer: SequenceTokenizer, spec: LabelSpec, cfg: FinetuneConfig,
                 options: Optional["InferenceOptions"] = None, copy_model: bool = True):
        from .inference import InferenceOptions, inference_precision

        self.model, self.tokenizer, self.spec, self.cfg = model, tokenizer, spec, cfg
        options = options or InferenceOptions()
        precision = "fp32" if options.quantize else inference_precision(
            options.precision, run_precision(cfg), next(model.parameters()).device)
        self.options = replace(options, precision=precision)
        self._copy_model = copy_model
        self._engine = None

    @property
    def engine(self):
        """The prediction engine, built (and the adapter merged) on first use."""
        if self._engine is None:
            from .inference import InferenceEngine

            self._engine = InferenceEngine(self.model, self.tokenizer, self.spec.problem_type,
                                           self.cfg.data.max_length, self.options, crop=self.cfg.data.crop,
                                           copy_model=self._copy_model)
            self.model = self._engine.model
        return self._engine

    def _run(self, sequences: list[str], batch_size: Optional[int]):
        if batch_size is not None and batch_size != self.options.batch_size:
            self.options = replace(self.options, batch_size=batch_size)
            self.engine.options = self.options
        return self.engine.run(sequences)

    def logits(self, sequences: list[str], batch_size: Optional[int] = None) -> list[torch.Tensor]:
        """Raw model outputs per sequence: C values, or (tokens, C) over the body tokens for token tasks.

        A sequence read in several windows gets the logits of its aggregated probabilities (see inference.py).
        """
        out = self._run(sequences, batch_size)
        return list(out.logits) if torch.is_tensor(out.logits) else out.logits

    def predict(self, sequences: list[str], batch_size: Optional[int] = None) -> pd.DataFrame:
        """Predicted label (and class probabilities) per sequence; long sequences are read in windows.

        Example:
            >>> load_run("runs/demo").predict(["TATAAAAGGC" * 10])["prediction"].tolist()
            ['1']
        """
        return self._frame(self._run(sequences, batch_size), sequences)

    def _frame(self, out, sequences: list[str]) -> pd.DataFrame:
        kind = self.spec.problem_type
        if kind == "regression":
            return pd.DataFrame({"prediction": out.logits.squeeze(-1).tolist()})
        if kind == "token_classification":
            return pd.DataFrame({"prediction": [self._positions(o, s, len(seq.strip()))
                                                for o, s, seq in zip(out.logits, out.spans, sequences)]})
        probs = out.logits.sigmoid() if kind == "multilabel" else out.logits.softmax(-1)
        frame = pd.DataFrame(probs.numpy(), columns=[f"prob_{n}" for n in self.spec.names])
        if kind == "multilabel":
            frame.insert(0, "prediction", [self.spec.separator.join(n for n, p in zip(self.spec.names, row) if p > 0.5)
                                           for row in probs.numpy()])
        else:
            frame.insert(0, "prediction", [self.spec.decode(i) for i in probs.argmax(-1).tolist()])
        return frame

    def _positions(self, logits: torch.Tensor, spans, length: int) -> str:
        """Per-position label string: each position takes the class of the token covering it (else class 0)."""
        classes = np.zeros(length, dtype=np.int64)
        predicted = logits.argmax(-1).tolist()
        for token, span in enumerate(spans):
            if span is not None:
                classes[span[0] : span[1]] = predicted[token]
        return "".join(self.spec.names[c] for c in classes)


def load_run(run_dir: str | Path, base_model: Optional[str] = None, trust_remote_code: bool = False,
             options: Optional["InferenceOptions"] = None) -> Predictor:
    """Reload a finished run folder (or a Hub repo id written by ``gr-ft push``) for prediction, in one call.

    ``trust_remote_code=True`` is needed (and only then honoured) for backbones that exist only as code shipped
    with the checkpoint (DNABERT-2, HyenaDNA, Caduceus); nothing in the run folder can turn it on.
    ``options`` (:class:`gr_ft.inference.InferenceOptions`) override how it predicts; by default at the
    precision the run trained at.

    Example:
        >>> load_run("runs/demo").predict(["ACGT" * 25])  # doctest: +SKIP
        >>> load_run("me/promoter-lora").predict(["ACGT" * 25])  # doctest: +SKIP
    """
    return Predictor(*load_model_for_run(run_dir, base_model, trust_remote_code=trust_remote_code), options=options,
                     copy_model=False)


def evaluate_run(run_dir: str | Path, data_path: str, split: str = "test", batch_size: int = 64,
                 options: Optional["InferenceOptions"] = None, trust_remote_code: bool = False) -> dict:
    """Metrics of a finished run on labelled data: a file, or one split of a dataset folder.

    Labels are encoded with the run's own label map, so an unknown label is an error naming file and line.
    Scores come from the prediction engine at the run's recorded precision, so on the run's own test split
    (sequences within ``data.max_length``) they reproduce metrics.json; longer sequences are read in windows
    unless ``options.long_sequences="crop"`` (training's crop).

    Example:
        >>> evaluate_run("runs/demo", "../shared/data/promoter/gue_prom_core_all")["mcc"]  # doctest: +SKIP
    """
    from .evaluation import MetricAccumulator
    from .io import find_split_files, read_table, validate_sequences
    from .modeling import TASK_LOSSES

    from .inference import InferenceOptions

    predictor = load_run(run_dir, trust_remote_code=trust_remote_code,
                         options=options or InferenceOptions(batch_size=batch_size))
    cfg, spec, tokenizer = predictor.cfg, predictor.spec, predictor.tokenizer
    path = Path(data_path)
    if path.is_dir():
        files = find_split_files(path)
        if split not in files:
            raise ValueError(f"dataset folder {path} has no {split} split; found {sorted(files)}")
        path = files[split]
    frame = read_table(path, cfg.data.label_column, cfg.data.labels_file)
    if cfg.data.label_column not in frame.columns:
        raise ValueError(f"{path}: no {cfg.data.label_column!r} column; found {[c for c in frame.columns if c != '_line']}")
    alphabet = "protein" if tokenizer.kind == "protein" else "dna"
    frame = validate_sequences(frame, alphabet, str(path), cfg.data.sequence_column)
    sequences = frame[cfg.data.sequence_column].tolist()
    out = predictor.engine.run(sequences)
    logits, labels = _scored_pairs(out, frame, spec, cfg, str(path), tokenizer)
    metrics = MetricAccumulator(spec.problem_type, spec.num_labels)
    metrics.add_batch(logits, labels)
    result = metrics.compute()
    result["loss"] = float(TASK_LOSSES[spec.problem_type](logits, labels, None))
    return result


def _scored_pairs(out, frame: pd.DataFrame, spec: LabelSpec, cfg: FinetuneConfig, source: str,
                  tokenizer: SequenceTokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) to score: per sequence, or per body token (one row of all tokens) for token tasks."""
    raw_labels = frame[cfg.data.label_column].tolist()
    lines = frame["_line"].tolist()
    if spec.problem_type != "token_classification":
        labels = [spec.encode(raw, f"{source}:{line}") for raw, line in zip(raw_labels, lines)]
        return out.logits, torch.tensor(labels)
    token_labels = []
    for raw, line, sequence, spans in zip(raw_labels, lines, frame[cfg.data.sequence_column], out.spans):
        per_position = spec.encode(raw, f"{source}:{line}", sequence_length=len(sequence))
        token_labels.extend(tokenizer.align_position_labels(per_position, spans))
    return torch.cat(out.logits).unsqueeze(0), torch.tensor(token_labels).unsqueeze(0)
