"""Reading labelled sequence files: CSV/TSV (gzip or plain), FASTA, parquet, JSONL, Hub datasets.

Every reader returns a pandas DataFrame with a ``sequence`` column, the label column and any
extra columns (``cell_type``...), plus a ``_line`` column giving the 1-based line (CSV/TSV, JSONL)
or record number (FASTA, parquet) so that a bad record can be reported by file and line.

FASTA labels follow one convention: ``key=value`` fields in the header become columns, so
``>chr1:100-170 label=1 cell_type=HepG2`` gives ``label=1, cell_type=HepG2``. Alternatively
a separate ``labels_file`` (CSV/TSV with ``id,label``) maps record ids to labels.

Example:
    >>> frame = read_table("train.csv.gz")
    >>> frame.columns.tolist()
    ['sequence', 'label', '_line']
"""

from __future__ import annotations

import gzip
import io
import logging
from pathlib import Path
from typing import Callable, Iterator, Optional

import pandas as pd

__all__ = [
    "read_table",
    "read_fasta_records",
    "find_split_files",
    "load_hub_dataset",
    "validate_sequences",
    "read_sequences",
    "open_text",
    "DNA_ALPHABET",
    "PROTEIN_ALPHABET",
]

logger = logging.getLogger(__name__)

DNA_ALPHABET = frozenset("ACGTN")
PROTEIN_ALPHABET = frozenset("ACDEFGHIKLMNPQRSTVWY" + "XBZUO")
ALPHABETS = {"dna": DNA_ALPHABET, "protein": PROTEIN_ALPHABET}
SPLIT_NAMES = ("train", "dev", "test")
SPLIT_ALIASES = {"dev": ("dev", "validation", "valid", "val")}
FASTA_SUFFIXES = (".fasta", ".fa", ".fna", ".faa")


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bgz"):
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def open_text(path: Path) -> io.TextIOBase:
    """Open a plain or gzip-compressed text file for reading."""
    if path.suffix.lower() in (".gz", ".bgz"):
        return gzip.open(path, "rt")
    return open(path, "rt")


def read_fasta_records(path: str | Path) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line_number, header, sequence)`` for each FASTA record (plain or gzip), streaming.

    Example:
        >>> next(read_fasta_records("genome.fa.gz"))[1]
        'chr1 label=1'
    """
    path = Path(path)
    header, chunks, start = None, [], 0
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                if header is not None:
                    yield start, header, "".join(chunks)
                header, chunks, start = line[1:].strip(), [], number
            elif header is None:
                raise ValueError(f"{path}:{number}: sequence line before the first '>' header; is this FASTA?")
            else:
                chunks.append(line)
    if header is not None:
        yield start, header, "".join(chunks)


def _fasta_frame(path: Path, label_column: str, labels_file: Optional[str]) -> pd.DataFrame:
    rows = []
    for line, header, sequence in read_fasta_records(path):
        record_id, *fields = header.split()
        row = {"id": record_id, "sequence": sequence, "_line": line}
        row.update(field.split("=", 1) for field in fields if "=" in field)
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no FASTA records found")
    frame = pd.DataFrame(rows)
    if labels_file:
        frame = _join_labels(frame, Path(labels_file), label_column, path)
    return frame


def _join_labels(frame: pd.DataFrame, labels_path: Path, label_column: str, fasta: Path) -> pd.DataFrame:
    labels = read_table(labels_path)
    if "id" not in labels.columns or label_column not in labels.columns:
        raise ValueError(f"{labels_path}: a labels file needs columns 'id' and {label_column!r}")
    mapping = dict(zip(labels["id"].astype(str), labels[label_column]))
    missing = [rid for rid in frame["id"] if rid not in mapping]
    if missing:
        raise ValueError(
            f"{fasta}: {len(missing)} record(s) have no label in {labels_path}, first: {missing[0]!r}"
        )
    frame[label_column] = frame["id"].map(mapping)
    return frame


def _delimited_frame(path: Path, sep: str) -> pd.DataFrame:
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, compression="infer")
    frame["_line"] = range(2, len(frame) + 2)  # line 1 is the header
    return frame


def _jsonl_frame(path: Path) -> pd.DataFrame:
    frame = pd.read_json(path, lines=True, dtype=False, compression="infer")
    frame["_line"] = range(1, len(frame) + 1)
    return frame


def _parquet_frame(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    frame["_line"] = range(1, len(frame) + 1)
    return frame


READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": lambda p: _delimited_frame(p, ","),
    ".tsv": lambda p: _delimited_frame(p, "\t"),
    ".txt": lambda p: _delimited_frame(p, "\t"),
    ".jsonl": _jsonl_frame,
    ".json": _jsonl_frame,
    ".parquet": _parquet_frame,
}


def read_table(path: str | Path, label_column: str = "label", labels_file: Optional[str] = None) -> pd.DataFrame:
    """Read one labelled file into a DataFrame (see the module docstring for formats).

    Example:
        >>> read_table("peaks.fa.gz").loc[0, "label"]
        '1'
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {path} does not exist")
    suffix = _base_suffix(path)
    if suffix in FASTA_SUFFIXES:
        return _fasta_frame(path, label_column, labels_file)
    if suffix not in READERS:
        known = sorted(set(READERS) | set(FASTA_SUFFIXES))
        raise ValueError(f"{path}: unknown file type {suffix!r}; use one of {known} (optionally .gz)")
    try:
        return READERS[suffix](path)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise ValueError(f"{path}: could not be read as {suffix[1:]}: {err}") from err


def find_split_files(folder: str | Path) -> dict[str, Path]:
    """Find ``train``/``dev``/``test`` files of any supported type in a dataset folder.

    Example:
        >>> sorted(find_split_files("../shared/data/promoter/gue_prom_core_all"))
        ['dev', 'test', 'train']
    """
    folder = Path(folder)
    found: dict[str, Path] = {}
    for split in SPLIT_NAMES:
        for alias in SPLIT_ALIASES.get(split, (split,)):
            matches = sorted(p for p in folder.glob(f"{alias}.*") if p.is_file())
            if matches:
                found[split] = matches[0]
                break
    if "train" not in found:
        raise ValueError(
            f"dataset folder {folder} has no train file; expected train.csv[.gz] (or .tsv, .fasta, .parquet, "
            f".jsonl) and optionally dev.* and test.*"
        )
    return found


def load_hub_dataset(dataset_id: str) -> dict[str, pd.DataFrame]:
    """Load a Hugging Face Hub dataset's splits as DataFrames (``validation`` is renamed ``dev``).

    Example:
        >>> load_hub_dataset("InstaDeepAI/nucleotide_transformer_downstream_tasks")  # doctest: +SKIP
    """
    import datasets

    try:
        loaded = datasets.load_dataset(dataset_id)
    except Exception as err:  # datasets raises many types for "not found" and "offline"
        raise ValueError(
            f"could not load {dataset_id!r}: it is not a local file or folder, and loading it as a Hugging Face "
            f"Hub dataset failed ({type(err).__name__}: {str(err)[:200]}). If you are offline, download the data "
            f"and pass a local path."
        ) from err
    frames = {}
    for split, table in loaded.items():
        name = "dev" if split in SPLIT_ALIASES["dev"] else split
        frame = table.to_pandas()
        frame["_line"] = range(1, len(frame) + 1)
        frames[name] = frame
    return frames


def validate_sequences(frame: pd.DataFrame, alphabet: str, source: str, column: str = "sequence") -> pd.DataFrame:
    """Upper-case sequences and check them against the alphabet; errors name the file and line.

    Example:
        >>> validate_sequences(pd.DataFrame({"sequence": ["acgt"], "_line": [2]}), "dna", "x.csv")["sequence"][0]
        'ACGT'
    """
    if column not in frame.columns:
        columns = [c for c in frame.columns if c != "_line"]
        raise ValueError(f"{source}: no {column!r} column; found columns {columns}. Set data.sequence_column.")
    allowed = ALPHABETS[alphabet]
    sequences = frame[column].astype(str).str.strip().str.upper()
    for sequence, line in zip(sequences, frame["_line"]):
        if not sequence:
            raise ValueError(f"{source}:{line}: empty sequence; remove the record or fill it in")
        bad = set(sequence) - allowed
        if bad:
            raise ValueError(
                f"{source}:{line}: invalid {alphabet} character(s) {sorted(bad)} in sequence "
                f"{sequence[:30]}{'...' if len(sequence) > 30 else ''}; allowed: {''.join(sorted(allowed))}"
            )
    frame = frame.copy()
    frame[column] = sequences
    return frame


def read_sequences(path: str | Path, alphabet: str, sequence_column: str = "sequence") -> tuple[list[str], list[str]]:
    """Unlabelled sequences for prediction: FASTA, a table with a sequence column, or one sequence per line.

    Returns ``(ids, sequences)``; ids are FASTA ids, an ``id`` column, or row numbers.

    Example:
        >>> ids, seqs = read_sequences("candidates.fa", alphabet="dna")
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"input file {path} does not exist")
    suffix = _base_suffix(path)
    if suffix in FASTA_SUFFIXES:
        records = list(read_fasta_records(path))
        frame = pd.DataFrame({"id": [h.split()[0] if h else str(i) for i, (_, h, _) in enumerate(records)],
                              "sequence": [s for _, _, s in records], "_line": [n for n, _, _ in records]})
    elif suffix in READERS and suffix != ".txt":
        frame = read_table(path)
    else:
        with open_text(path) as handle:
            lines = [(n, line.strip()) for n, line in enumerate(handle, start=1) if line.strip()]
        frame = pd.DataFrame({"sequence": [s for _, s in lines], "_line": [n for n, _ in lines]})
    if frame.empty:
        raise ValueError(f"{path}: no sequences found")
    frame = validate_sequences(frame, alphabet, str(path), sequence_column)
    ids = frame["id"].astype(str).tolist() if "id" in frame.columns else [str(i) for i in range(len(frame))]
    return ids, frame[sequence_column].tolist()
