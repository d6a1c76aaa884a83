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

    def __init__(self, input_ids: list[list[int]], labels: list[Any], problem_type: str):
        self.input_ids = input_ids
        self.labels = labels
        self.problem_type = problem_type
        self.lengths = [len(ids) for ids in input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input_ids": self.input_ids[index], "labels": self.labels[index]}


def _max_chars(tokenizer, max_length: int) -> Optional[int]:
    """Characters that fit in ``max_length`` tokens, for tokenizers with a fixed character rate."""
    n_special = len(tokenizer.encode(["A"])["input_ids"][0]) - 1
    if tokenizer.kind in ("nucleotide", "protein"):
        return max_length - n_special
    if tokenizer.kind == "kmer":
        return max_length - n_special + tokenizer.k - 1
    return None


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


def encode_split(split: LabeledSplit, tokenizer, spec: LabelSpec, max_length: int, crop: str = "start",
                 sequence_column: str = "sequence", label_column: str = "label") -> EncodedSplit:
    """Crop, tokenize and encode labels of one split (per-position labels are mapped onto tokens)."""
    frame = split.frame
    sequences = frame[sequence_column].tolist()
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
    return EncodedSplit(encoded["input_ids"], labels, spec.problem_type)


def _collator(tokenizer, problem_type: str):
    if problem_type == "token_classification":
        return DataCollatorForTokenClassification(tokenizer.hf, pad_to_multiple_of=8)
    return DataCollatorWithPadding(tokenizer.hf, pad_to_multiple_of=8)


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped sampler, reseeded by ``set_epoch`` (accelerate calls it through the loader)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        self.seed = seed
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(seed))

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


class EpochRandomSampler(torch.utils.data.RandomSampler):
    """A random sampler reseeded by ``set_epoch`` so every process and every resume sees the same order."""

    def __init__(self, data: Dataset, seed: int):
        self.seed = seed
        super().__init__(data, generator=torch.Generator().manual_seed(seed))

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


def make_dataloader(data: EncodedSplit, tokenizer, batch_size: int, shuffle: bool, seed: int = 0,
                    bucket_by_length: bool = True, num_workers: int = 0) -> DataLoader:
    """A DataLoader with dynamic padding; training batches group similar lengths.

    Training samplers are reseeded per epoch through ``loader.set_epoch`` / ``sampler.set_epoch``.
    Evaluation loaders (``shuffle=False``) visit sequences sorted by length, so batches carry little
    padding; metrics do not depend on order.
    """
    if shuffle and bucket_by_length:
        sampler = EpochLengthGroupedSampler(batch_size, data.lengths, seed)
    elif shuffle:
        sampler = EpochRandomSampler(data, seed)
    else:
        sampler = sorted(range(len(data)), key=data.lengths.__getitem__)
    return DataLoader(data, batch_size=batch_size, sampler=sampler, collate_fn=_collator(tokenizer, data.problem_type),
                      num_workers=num_workers)


def class_weights(data: EncodedSplit, num_labels: int) -> torch.Tensor:
    """Inverse-frequency class weights (mean 1) for imbalanced single-label classification."""
    counts = np.bincount(np.asarray(data.labels, dtype=np.int64), minlength=num_labels).astype(np.float64)
    weights = counts.sum() / np.maximum(counts, 1) / num_labels
    return torch.tensor(weights, dtype=torch.float32)
