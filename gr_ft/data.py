"""From a data argument to tokenized, length-bucketed train/dev/test batches.

``data.path`` may be a dataset folder (``train/dev/test.csv.gz`` as in ``../shared/data/*/*``),
a single file (split by fraction with the run seed), a Hub dataset id, or ``synthetic:<task>``.

Example:
    >>> splits = load_splits(DataConfig(path="synthetic:promoter"), alphabet="dna", seed=0)
    >>> spec = infer_label_spec(splits["train"].frame["label"])
    >>> train = encode_split(splits["train"], tokenizer, spec, max_length=128)
    >>> loader = make_dataloader(train, tokenizer, batch_size=32, shuffle=True, seed=0)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding
from sklearn.utils.class_weight import compute_class_weight
from transformers.trainer_pt_utils import LengthGroupedSampler

from .config import DataConfig
from .io import find_split_files, load_hub_dataset, read_table, validate_sequences
from .labels import LabelSpec

__all__ = [
    "LabeledSplit",
    "EncodedSplit",
    "load_splits",
    "encode_split",
    "make_dataloader",
    "crop_sequences",
    "encode_sequences",
    "class_weights",
    "report_cropping",
    "RandomWindowSplit",
    "random_window_split",
    "pad_multiple_for",
]

logger = logging.getLogger(__name__)


@dataclass
class LabeledSplit:
    """One split's validated rows and where they came from (for error messages)."""

    frame: pd.DataFrame
    source: str


def _synthetic_splits(task: str, cfg: DataConfig, seed: int) -> dict[str, pd.DataFrame]:
    from . import synthetic

    sizes = {"train": cfg.synthetic_size, "dev": max(cfg.synthetic_size // 4, 8), "test": max(cfg.synthetic_size // 4, 8)}
    frames = {}
    for offset, (split, n) in enumerate(sizes.items()):
        frame = synthetic.make_task(task, n, seed=1000 * seed + offset)
        frame["_line"] = range(2, len(frame) + 2)
        frames[split] = frame
    return frames


def _split_by_fraction(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    held = rng.random(len(frame)) < fraction
    return frame[~held], frame[held]


def _raw_splits(cfg: DataConfig, seed: int) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    path = Path(cfg.path)
    if cfg.path.startswith("synthetic:"):
        task = cfg.path.split(":", 1)[1]
        return _synthetic_splits(task, cfg, seed), {s: f"{cfg.path}[{s}]" for s in ("train", "dev", "test")}
    if path.is_dir():
        files = find_split_files(path)
        frames = {s: read_table(p, cfg.label_column, cfg.labels_file) for s, p in files.items()}
        return frames, {s: str(p) for s, p in files.items()}
    if path.is_file():
        return {"train": read_table(path, cfg.label_column, cfg.labels_file)}, {"train": str(path)}
    if path.suffix or cfg.path.startswith((".", "/", "~")) or cfg.path.count("/") != 1:
        raise ValueError(f"data.path {cfg.path!r} does not exist (not a file or folder, nor a Hub id user/name)")
    frames = load_hub_dataset(cfg.path)
    return frames, {s: f"{cfg.path}[{s}]" for s in frames}


def load_splits(cfg: DataConfig, alphabet: str, seed: int = 0) -> dict[str, LabeledSplit]:
    """Read, validate and (if needed) split the data into train/dev/test.

    Missing dev/test splits are carved from train with ``cfg.dev_fraction``/``cfg.test_fraction``.
    """
    frames, sources = _raw_splits(cfg, seed)
    for split in ("test", "dev"):
        if split not in frames:
            fraction = cfg.test_fraction if split == "test" else cfg.dev_fraction
            if fraction == 0:
                raise ValueError(f"no {split} split in {cfg.path} and data.{split}_fraction=0; give one of them")
            frames["train"], frames[split] = _split_by_fraction(frames["train"], fraction, seed + len(split))
            sources[split] = f"{sources['train']} (held-out {split} fraction)"
    splits = {}
    for split, frame in frames.items():
        if split not in ("train", "dev", "test"):
            continue
        source = sources[split]
        if cfg.label_column not in frame.columns:
            columns = [c for c in frame.columns if c != "_line"]
            raise ValueError(f"{source}: no {cfg.label_column!r} column; found {columns}. Set data.label_column.")
        frame = validate_sequences(frame, alphabet, source, cfg.sequence_column)
        if frame.empty:
            raise ValueError(f"{source}: the {split} split is empty")
        if split == "train" and cfg.max_train_rows is not None and len(frame) > cfg.max_train_rows:
            frame = frame.sample(n=cfg.max_train_rows, random_state=seed)
            source = f"{source} (sample of {cfg.max_train_rows} rows, data.max_train_rows)"
        splits[split] = LabeledSplit(frame.reset_index(drop=True), source)
    return splits


def crop_sequences(sequences: list[str], max_chars: int, mode: str) -> tuple[list[str], list[int]]:
    """Cut sequences to ``max_chars`` keeping the start, end, center, or both ends; returns crops and offsets.

    The offset is where the crop starts in the original sequence (0 for ``ends``, whose crop is two pieces).

    Example:
        >>> crop_sequences(["AACCGGTT"], 4, "center")
        (['CCGG'], [2])
        >>> crop_sequences(["AACCGGTT"], 4, "ends")
        (['AATT'], [0])
    """
    crops, starts = [], []
    for seq in sequences:
        excess = max(len(seq) - max_chars, 0)
        if mode == "ends" and excess:
            head = max_chars - max_chars // 2
            crops.append(seq[:head] + seq[len(seq) - max_chars // 2 :])
            starts.append(0)
            continue
        start = {"start": 0, "end": excess, "center": excess // 2, "ends": 0}[mode]
        crops.append(seq[start : start + max_chars])
        starts.append(start)
    return crops, starts


class EncodedSplit(Dataset):
    """Token ids and encoded labels of one split; ``lengths`` drives length bucketing."""

    def __init__(self, input_ids: list[list[int]], labels: list[Any], problem_type: str,
                 crop_report: Optional[dict] = None):
        self.input_ids = input_ids
        self.labels = labels
        self.problem_type = problem_type
        self.crop_report = crop_report  # what data.max_length cut (report_cropping), kept by the encoded cache
        self.lengths = [len(ids) for ids in input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input_ids": self.input_ids[index], "labels": self.labels[index]}


CROP_WARN_FRACTION = 0.02
"""Warn before training when more than this fraction of a split's rows is cut to fit ``data.max_length``."""


def _max_chars(tokenizer, max_length: int) -> Optional[int]:
    """Characters that fit in ``max_length`` tokens, for tokenizers with a fixed character rate (None for BPE)."""
    n_special = len(tokenizer.hf("")["input_ids"])
    body = max_length - n_special
    fmt = tokenizer.input_format
    if fmt == "kmer":
        return body + tokenizer.format_k - 1
    if fmt == "chunked_kmer":  # N and a short tail become single-base tokens, so this is an upper bound
        return body * tokenizer.format_k
    if fmt in ("char", "spaced", "spaced_uzob_to_x"):
        return body
    return None


MIN_SEQUENCE_TOKENS = 4
"""Fewest sequence tokens (beside the special tokens) a ``data.max_length`` may leave: below it no motif fits."""


def check_max_length(tokenizer, max_length: int, flag: str = "data.max_length") -> None:
    """Refuse a token budget that leaves (almost) no room for the sequence after the special tokens.

    Example:
        >>> check_max_length(tokenizer, 3)  # raises: 1 sequence token after CLS and SEP
    """
    n_special = len(tokenizer.hf("")["input_ids"])
    if max_length - n_special < MIN_SEQUENCE_TOKENS:
        raise ValueError(f"{flag}={max_length} leaves {max(max_length - n_special, 0)} token(s) for the sequence after "
                         f"the tokenizer's {n_special} special tokens; set {flag} >= {n_special + MIN_SEQUENCE_TOKENS} "
                         f"(usually the longest sequence in tokens, e.g. 512)")


def report_cropping(sequences: list[str], tokenizer, max_length: int, source: str) -> dict:
    """How many rows ``data.max_length`` cuts, and by how much; logged as a warning above CROP_WARN_FRACTION.

    Example:
        >>> report_cropping(["ACGT" * 100], tokenizer, 66, "train.csv")["cropped"]
        1
    """
    max_chars = _max_chars(tokenizer, max_length)
    if max_chars is None:  # BPE: count rows whose tokens exceed the budget
        lengths = [len(ids) for ids in tokenizer.hf(sequences[:5000])["input_ids"]]
        budget = max_length
    else:
        lengths, budget = [len(s) for s in sequences], max_chars
    over = [n for n in lengths if n > budget]
    report = {"rows": len(lengths), "cropped": len(over), "longest": max(lengths, default=0), "kept": budget,
              "unit": "tokens" if max_chars is None else "characters"}
    log_cropping(report, max_length, source)
    return report


def log_cropping(report: dict, max_length: int, source: str) -> None:
    """The warning of :func:`report_cropping` when more than CROP_WARN_FRACTION of the rows are cut."""
    rows, cropped = report["rows"], report["cropped"]
    if rows and cropped / rows > CROP_WARN_FRACTION:
        logger.warning(
            "%s: data.max_length=%d cuts %d of %d rows (%.0f%%) from up to %d to %d %s; raise data.max_length "
            "(or choose data.crop) if the signal may lie in the part that is cut", source, max_length, cropped,
            rows, 100 * cropped / rows, report["longest"], report["kept"], report["unit"])


def encode_sequences(tokenizer, sequences: list[str], max_length: int, crop: str = "start") -> tuple[dict, list[int]]:
    """Crop (for fixed-rate tokenizers) and tokenize; returns the encoding and each crop's start offset.

    Example:
        >>> encoded, starts = encode_sequences(tokenizer, ["ACGT" * 100], max_length=66, crop="center")
    """
    max_chars = _max_chars(tokenizer, max_length)
    if max_chars is None:
        return tokenizer.encode(sequences, max_length=max_length), [0] * len(sequences)
    cropped, starts = crop_sequences(sequences, max_chars, crop)
    return tokenizer.encode(cropped, max_length=max_length), starts


def encode_split(split: LabeledSplit, tokenizer, spec: LabelSpec, max_length: int, *, crop: str = "start",
                 sequence_column: str = "sequence", label_column: str = "label") -> EncodedSplit:
    """Crop, tokenize and encode labels of one split (per-position labels are mapped onto tokens).

    ``crop="random"`` (a new window each epoch, for training: see :func:`random_window_split`) scores the
    centre window here, so dev and test stay deterministic.
    """
    frame = split.frame
    sequences = frame[sequence_column].tolist()
    check_max_length(tokenizer, max_length)
    report = report_cropping(sequences, tokenizer, max_length, split.source)
    crop = "center" if crop == "random" else crop
    encoded, starts = encode_sequences(tokenizer, sequences, max_length, crop)
    labels = []
    for i, (raw, line) in enumerate(zip(frame[label_column].tolist(), frame["_line"])):
        where = f"{split.source}:{line}"
        if spec.problem_type == "token_classification":
            per_position = spec.encode(raw, where, sequence_length=len(sequences[i]))
            window = per_position[starts[i] :]
            labels.append(tokenizer.align_position_labels(window, encoded["token_spans"][i]))
        else:
            labels.append(spec.encode(raw, where))
    return EncodedSplit(encoded["input_ids"], labels, spec.problem_type, crop_report=report)


class RandomWindowSplit(Dataset):
    """Training rows cut to a new random window of ``max_length`` tokens every epoch (``data.crop=random``).

    The window of row ``i`` in epoch ``e`` starts at an offset drawn from ``numpy.random.default_rng([seed, e, i])``,
    so every process and every resume sees the same windows; rows that fit are used whole. Tokenized per item.
    """

    def __init__(self, sequences: list[str], labels: list[Any], tokenizer, max_length: int, problem_type: str,
                 seed: int):
        self.max_chars = _max_chars(tokenizer, max_length)
        if self.max_chars is None:
            raise ValueError("data.crop=random needs a tokenizer with a fixed number of bases per token (k-mer, "
                             f"nucleotide, residue); {tokenizer.name!r} ({tokenizer.input_format}) is not: use start, "
                             "end or center")
        self.sequences, self.labels, self.tokenizer = sequences, labels, tokenizer
        self.max_length, self.problem_type, self.seed, self.epoch = max_length, problem_type, seed, 0
        self.lengths = [min(len(seq), self.max_chars) for seq in sequences]  # for length bucketing only

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sequence = self.sequences[index]
        excess = max(len(sequence) - self.max_chars, 0)
        start = int(np.random.default_rng([self.seed, self.epoch, index]).integers(0, excess + 1)) if excess else 0
        encoded = self.tokenizer.encode([sequence[start : start + self.max_chars]], max_length=self.max_length)
        labels = self.labels[index]
        if self.problem_type == "token_classification":
            labels = self.tokenizer.align_position_labels(labels[start:], encoded["token_spans"][0])
        return {"input_ids": encoded["input_ids"][0], "labels": labels}


def random_window_split(split: LabeledSplit, tokenizer, spec: LabelSpec, max_length: int, *, seed: int,
                        sequence_column: str = "sequence", label_column: str = "label") -> RandomWindowSplit:
    """The training split for ``data.crop=random``: labels encoded once, windows drawn per epoch.

    Example:
        >>> train = random_window_split(splits["train"], tokenizer, spec, max_length=128, seed=0)
        >>> train.set_epoch(1); train[0]["input_ids"][:3]  # doctest: +SKIP
    """
    frame = split.frame
    sequences = frame[sequence_column].tolist()
    labels = []
    for sequence, raw, line in zip(sequences, frame[label_column].tolist(), frame["_line"]):
        where = f"{split.source}:{line}"
        if spec.problem_type == "token_classification":
            labels.append(spec.encode(raw, where, sequence_length=len(sequence)))
        else:
            labels.append(spec.encode(raw, where))
    return RandomWindowSplit(sequences, labels, tokenizer, max_length, spec.problem_type, seed)


PAD_MULTIPLE = 8
"""On a GPU, batches are padded to a multiple of this many tokens (tensor-core friendly shapes)."""


def pad_multiple_for(device: torch.device | str) -> int:
    """Pad batches to a multiple of this many tokens on ``device``: ``PAD_MULTIPLE`` on a GPU, 1 on CPU.

    On CPU the extra positions are pure cost, and they turn a batch of equal-length rows (fixed-length DNA) into
    a padded one whose attention mask the model must apply; padded to its longest row, such a batch has no
    padding, and transformers then drops the all-ones mask (docs/speed.md, "Step efficiency").

    Example:
        >>> pad_multiple_for("cpu"), pad_multiple_for("cuda:0")
        (1, 8)
    """
    return 1 if torch.device(device).type == "cpu" else PAD_MULTIPLE


def _collator(tokenizer, problem_type: str, pad_to_multiple_of: int = PAD_MULTIPLE):
    multiple = pad_to_multiple_of if pad_to_multiple_of > 1 else None
    if problem_type == "token_classification":
        return DataCollatorForTokenClassification(tokenizer.hf, pad_to_multiple_of=multiple)
    return DataCollatorWithPadding(tokenizer.hf, pad_to_multiple_of=multiple)


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped sampler, reseeded by ``set_epoch`` (accelerate calls it through the loader)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int, data: Optional[Dataset] = None):
        self.seed, self.data = seed, data
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(seed))

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)
        _set_data_epoch(self.data, epoch)


class EpochRandomSampler(torch.utils.data.RandomSampler):
    """A random sampler reseeded by ``set_epoch`` so every process and every resume sees the same order."""

    def __init__(self, data: Dataset, seed: int):
        self.seed = seed
        super().__init__(data, generator=torch.Generator().manual_seed(seed))

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)
        _set_data_epoch(self.data_source, epoch)


class TokenBudgetBatchSampler:
    """Batches that hold at most ``max_tokens`` padded tokens (rows x longest row, rounded up to the collator's
    multiple of ``PAD_MULTIPLE``) and at most ``max_rows`` rows.

    Batches are formed once: rows sorted by length (ties in a seeded random order), cut greedily. Every epoch
    serves them in a new order seeded by ``seed + epoch`` (``set_epoch``), so the batch count is the same in
    every epoch and a resume replays the same batches. A row longer than the budget gets a batch of its own.

    Example:
        >>> sampler = TokenBudgetBatchSampler([10, 500, 20, 480], max_tokens=1024, max_rows=32, seed=0)
        >>> sorted(sorted(b) for b in sampler)
        [[0, 2], [1, 3]]
    """

    def __init__(self, lengths: list[int], max_tokens: int, max_rows: int, seed: int, data: Optional[Dataset] = None):
        self.max_tokens, self.max_rows, self.seed, self.data = max_tokens, max_rows, seed, data
        self.epoch = 0
        self.sampler = self  # accelerate's loader calls batch_sampler.sampler.set_epoch
        ties = np.random.default_rng(seed).permutation(len(lengths))
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], ties[i]))
        self.batches: list[list[int]] = []
        batch: list[int] = []
        for index in order:  # ascending: the newest row is the longest of its batch
            padded = -(-lengths[index] // PAD_MULTIPLE) * PAD_MULTIPLE
            if batch and (padded * (len(batch) + 1) > max_tokens or len(batch) == max_rows):
                self.batches.append(batch)
                batch = []
            batch.append(index)
        if batch:
            self.batches.append(batch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        _set_data_epoch(self.data, epoch)

    def __iter__(self):
        order = torch.randperm(len(self.batches), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        return (list(self.batches[i]) for i in order.tolist())

    def __len__(self) -> int:
        return len(self.batches)


def _set_data_epoch(data: Optional[Dataset], epoch: int) -> None:
    """Datasets that change per epoch (RandomWindowSplit) follow the sampler's epoch."""
    if hasattr(data, "set_epoch"):
        data.set_epoch(epoch)


def make_dataloader(data: EncodedSplit, tokenizer, batch_size: int, *, shuffle: bool, seed: int = 0,
                    bucket_by_length: bool = True, num_workers: int = 0,
                    batch_tokens: Optional[int] = None, pad_to_multiple_of: int = PAD_MULTIPLE) -> DataLoader:
    """A DataLoader with dynamic padding (to the longest row, rounded up to ``pad_to_multiple_of``: see
    :func:`pad_multiple_for`); training batches group similar lengths.

    Training samplers are reseeded per epoch through ``loader.set_epoch`` / ``sampler.set_epoch``.
    ``batch_tokens`` caps the padded tokens of each training batch (:class:`TokenBudgetBatchSampler`,
    ``batch_size`` rows at most). Evaluation loaders (``shuffle=False``) visit sequences sorted by length,
    so batches carry little padding; metrics do not depend on order.
    """
    collate = _collator(tokenizer, data.problem_type, pad_to_multiple_of)
    if shuffle and batch_tokens is not None:
        batches = TokenBudgetBatchSampler(data.lengths, batch_tokens, batch_size, seed, data)
        return DataLoader(data, batch_sampler=batches, collate_fn=collate, num_workers=num_workers)
    if shuffle and bucket_by_length:
        sampler = EpochLengthGroupedSampler(batch_size, data.lengths, seed, data)
    elif shuffle:
        sampler = EpochRandomSampler(data, seed)
    else:
        sampler = sorted(range(len(data)), key=data.lengths.__getitem__)
    return DataLoader(data, batch_size=batch_size, sampler=sampler, collate_fn=collate, num_workers=num_workers)


def balanced_class_weights(labels, num_labels: int) -> np.ndarray:
    """scikit-learn's "balanced" class weights, n / (k * count) (``compute_class_weight``), for all ``num_labels``
    classes: one absent from ``labels`` (sklearn refuses those) is weighted as if seen once."""
    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    counts = np.bincount(labels, minlength=num_labels)
    weights = np.full(num_labels, len(labels) / num_labels, dtype=np.float64)
    if present.size:
        weights[present] = compute_class_weight("balanced", classes=present, y=labels) * present.size / num_labels
    weights[counts == 0] = len(labels) / num_labels
    return weights


def class_weights(data: EncodedSplit, num_labels: int) -> torch.Tensor:
    """Inverse-frequency class weights (:func:`balanced_class_weights`) for imbalanced single-label classification."""
    return torch.tensor(balanced_class_weights(data.labels, num_labels), dtype=torch.float32)
