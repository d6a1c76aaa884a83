"""An on-disk cache of encoded splits, so a second run on the same data skips tokenization (``data.cache``).

An entry is one ``.npz`` (numpy arrays only, read with ``allow_pickle=False``) named by a SHA-256 fingerprint of
everything the encoding depends on: the split's rows (sequences, labels, line numbers - so a changed file, a
different ``data.max_train_rows`` sample or a carved dev split all miss), the tokenizer's full definition,
``max_length``, ``crop``, the label spec and a format version. Entries are written atomically; one that cannot
be read or fails its checks is logged, ignored and rebuilt. Folder: ``encoded/`` under ``$GRFT_CACHE_DIR``
(default ``~/.cache/gr-ft``).

Example:
    >>> train = load_or_encode(splits["train"], tokenizer, spec, max_length=80)   # tokenizes, writes the entry
    >>> train = load_or_encode(splits["train"], tokenizer, spec, max_length=80)   # reads it back
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np

from .data import EncodedSplit, LabeledSplit, encode_split, log_cropping
from .utils import cache_dir, save_npz

__all__ = ["encoded_cache_dir", "split_fingerprint", "load_or_encode"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Bump when the entry layout or what ``encode_split`` produces changes: old entries then miss."""


def encoded_cache_dir() -> Path:
    """Where encoded splits are cached: ``encoded/`` in gr-ft's cache (``$GRFT_CACHE_DIR`` or ``~/.cache/gr-ft``)."""
    return cache_dir() / "encoded"


def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 of the tokenizer's full definition (fast tokenizers: their tokenizer.json) and input format."""
    hf = tokenizer.hf
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is not None:  # truncation and padding are per-call state that encoding itself sets: left out
        definition = json.loads(backend.to_str())
        definition.pop("truncation", None), definition.pop("padding", None)
        definition = json.dumps(definition, sort_keys=True)
    else:
        definition = json.dumps(sorted(hf.get_vocab().items()))
    parts = [type(hf).__name__, definition, tokenizer.input_format, str(tokenizer.format_k), hf.truncation_side,
             json.dumps(hf.special_tokens_map, sort_keys=True, default=str)]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def split_fingerprint(split: LabeledSplit, tokenizer, spec, max_length: int, *, crop: str, sequence_column: str,
                      label_column: str) -> str:
    """The cache key of one encoded split (see the module docstring for what it covers)."""
    frame = split.frame
    digest = hashlib.sha256()
    header = {"version": FORMAT_VERSION, "max_length": max_length, "crop": crop, "spec": asdict(spec),
              "tokenizer": tokenizer_fingerprint(tokenizer), "rows": len(frame)}
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for column in (frame[sequence_column], frame[label_column].astype(str), frame["_line"].astype(str)):
        digest.update(b"\x1e")
        digest.update("\x1f".join(column.tolist()).encode())
    return digest.hexdigest()


def _ragged(rows: list) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.fromiter((x for row in rows for x in row), dtype=np.float64 if _has_float(rows) else np.int64,
                       count=int(offsets[-1]))
    return flat, offsets


def _has_float(rows: list) -> bool:
    return any(isinstance(x, float) for row in rows[:1] for x in row)


def _to_arrays(encoded: EncodedSplit) -> dict[str, np.ndarray]:
    ids, id_offsets = _ragged(encoded.input_ids)
    arrays = {"input_ids": ids.astype(np.int32), "input_offsets": id_offsets,
              "report": np.frombuffer(json.dumps(encoded.crop_report).encode(), dtype=np.uint8)}
    labels = encoded.labels
    if labels and isinstance(labels[0], list):
        arrays["labels"], arrays["label_offsets"] = _ragged(labels)
    else:
        arrays["labels"] = np.asarray(labels, dtype=np.float64 if encoded.problem_type == "regression" else np.int64)
    return arrays


def _split_rows(flat: np.ndarray, offsets: np.ndarray) -> list[list]:
    values = flat.tolist()
    bounds = offsets.tolist()
    return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _from_arrays(arrays, problem_type: str, rows: int) -> EncodedSplit:
    """The split stored in an entry; ValueError when the entry does not hold ``rows`` consistent rows."""
    offsets = arrays["input_offsets"]
    ids = arrays["input_ids"]
    if len(offsets) != rows + 1 or offsets[0] != 0 or offsets[-1] != len(ids) or np.any(np.diff(offsets) < 0):
        raise ValueError("token offsets do not match the split")
    labels = arrays["labels"]
    if "label_offsets" in arrays:
        label_offsets = arrays["label_offsets"]
        if len(label_offsets) != rows + 1 or label_offsets[-1] != len(labels):
            raise ValueError("label offsets do not match the split")
        label_rows = _split_rows(labels, label_offsets)
    elif len(labels) != rows:
        raise ValueError("label count does not match the split")
    else:
        label_rows = labels.tolist()
    report = json.loads(arrays["report"].tobytes().decode())
    return EncodedSplit(_split_rows(ids, offsets), label_rows, problem_type, crop_report=report)


def _read_entry(path: Path, problem_type: str, rows: int) -> Optional[EncodedSplit]:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return _from_arrays(arrays, problem_type, rows)
    except Exception as err:  # truncated, corrupted or foreign file: rebuild it
        logger.warning("ignoring unreadable encoded-split cache entry %s (%s); rebuilding it", path, err)
        return None


def _write_entry(path: Path, arrays: dict[str, np.ndarray]) -> None:
    try:
        save_npz(path, arrays, compressed=False)
    except OSError as err:  # a read-only cache only costs the tokenization next time
        logger.warning("could not write the encoded-split cache entry %s (%s)", path, err)


def load_or_encode(split: LabeledSplit, tokenizer, spec, max_length: int, *, crop: str = "start",
                   sequence_column: str = "sequence", label_column: str = "label",
                   folder: Optional[Path] = None) -> EncodedSplit:
    """:func:`gr_ft.data.encode_split`, read from the cache when this exact encoding was made before.

    Identical to ``encode_split``'s result (same token ids and labels, as Python ints/floats); the crop warning
    is repeated from the stored report.
    """
    key = split_fingerprint(split, tokenizer, spec, max_length, crop=crop, sequence_column=sequence_column,
                            label_column=label_column)
    path = Path(folder or encoded_cache_dir()) / f"{key}.npz"
    encoded = _read_entry(path, spec.problem_type, len(split.frame))
    if encoded is not None:
        log_cropping(encoded.crop_report, max_length, split.source)
        logger.info("%s: encoded split read from the cache (%s)", split.source, path)
        return encoded
    encoded = encode_split(split, tokenizer, spec, max_length, crop=crop, sequence_column=sequence_column,
                           label_column=label_column)
    _write_entry(path, _to_arrays(encoded))
    return encoded
