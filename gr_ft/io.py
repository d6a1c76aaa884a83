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
import zlib
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
    "text_lines",
    "alphabet_hint",
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
        for number, line in enumerate(text_lines(handle, path), start=1):
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


CORRUPT_COMPRESSION = (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError)
"""What reading a truncated or corrupt .gz (or a binary file) raises."""


def corrupt_file_error(path: Path, err: Exception) -> ValueError:
    """The user error for a file that cannot be decoded: truncated gzip, corrupt gzip, not text."""
    if isinstance(err, UnicodeDecodeError):
        return ValueError(f"{path}: is not a text file (byte {err.start} is not UTF-8); give a plain or gzip "
                          f"FASTA/CSV/TSV file")
    return ValueError(f"{path}: the gzip file is truncated or corrupt ({err}); download or compress it again "
                      f"(`gzip -t {path.name}` checks it)")


def text_lines(handle, path: Path) -> Iterator[str]:
    """The lines of an open text file; a truncated or corrupt gzip stream is a user error naming the file."""
    try:
        yield from handle
    except CORRUPT_COMPRESSION as err:
        raise corrupt_file_error(path, err) from None


def _fasta_frame(path: Path, label_column: str, labels_file: Optional[str]) -> pd.DataFrame:
    rows, first_line = [], {}
    for line, header, sequence in read_fasta_records(path):
        record_id, *fields = header.split() or [""]
        if record_id in first_line:
            raise ValueError(f"{path}:{line}: duplicate FASTA id {record_id!r} (first at line {first_line[record_id]}); "
                             f"record ids must be unique, as labels and predictions are keyed by them")
        first_line[record_id] = line
        row = {"id": record_id, "sequence": sequence, "_line": line}
        row.update(field.split("=", 1) for field in fields if "=" in field)
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no FASTA records found")
    frame = pd.DataFrame(rows)
    if labels_file:
        if not Path(labels_file).is_file():
            raise ValueError(f"data.labels_file {labels_file} does not exist; give the CSV/TSV with columns id,label")
        frame = _join_labels(frame, Path(labels_file), label_column, path)
    return frame


def _join_labels(frame: pd.DataFrame, labels_path: Path, label_column: str, fasta: Path) -> pd.DataFrame:
    labels = read_table(labels_path)
    if "id" not in labels.columns or label_column not in labels.columns:
        raise ValueError(f"{labels_path}: a labels file needs columns 'id' and {label_column!r}")
    mapping: dict[str, object] = {}
    for record_id, label, line in zip(labels["id"].astype(str), labels[label_column], labels["_line"]):
        if record_id in mapping and str(mapping[record_id]).strip() != str(label).strip():
            raise ValueError(f"{labels_path}:{line}: conflicting labels for id {record_id!r} "
                             f"({mapping[record_id]!r} earlier, {label!r} here); keep one row per id")
        mapping[record_id] = label
    missing = [rid for rid in frame["id"] if rid not in mapping]
    if missing:
        raise ValueError(
            f"{fasta}: {len(missing)} record(s) have no label in {labels_path}, first: {missing[0]!r}"
        )
    frame[label_column] = frame["id"].map(mapping)
    return frame


def _delimited_frame(path: Path, sep: str) -> pd.DataFrame:
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, compression="infer")
    if sep == "," and len(frame.columns) == 1 and "\t" in str(frame.columns[0]):
        raise ValueError(f"{path}: looks tab-separated (its header {frame.columns[0]!r} has tabs, no commas); "
                         f"rename it to .tsv (or .tsv.gz), or write it with commas")
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
    except CORRUPT_COMPRESSION as err:
        raise corrupt_file_error(path, err) from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty; it needs a header line (e.g. sequence,label) and rows") from None
    except (ValueError, OSError, pd.errors.ParserError) as err:
        if "looks tab-separated" in str(err):
            raise
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
                f"{alphabet_hint(sequence, alphabet)}"
            )
    frame = frame.copy()
    frame[column] = sequences
    return frame


PROTEIN_ONLY = frozenset("EFILPQ")
"""Amino-acid letters that are not IUPAC nucleotide codes: a 'DNA' sequence with them is protein."""


def alphabet_hint(sequence: str, alphabet: str) -> str:
    """What a sequence that fails ``alphabet`` probably is, as advice to append to the error ('' if unclear)."""
    letters = set(sequence.upper())
    if alphabet == "dna" and letters <= PROTEIN_ALPHABET and letters & PROTEIN_ONLY:
        return ("; this looks like protein: use a protein model (e.g. model.name_or_path=facebook/esm2_t6_8M_UR50D, "
                "or model.tokenizer=protein for a fresh one) or data.alphabet=protein")
    if alphabet == "dna" and letters <= DNA_ALPHABET | set("RYKMSWBDHV"):
        return "; IUPAC ambiguity codes: replace them with N"
    if alphabet == "protein" and letters <= DNA_ALPHABET:
        return "; this looks like DNA: use a DNA model or data.alphabet=dna"
    return ""


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
            lines = [(n, line.strip()) for n, line in enumerate(text_lines(handle, path), start=1) if line.strip()]
        frame = pd.DataFrame({"sequence": [s for _, s in lines], "_line": [n for n, _ in lines]})
    if frame.empty:
        raise ValueError(f"{path}: no sequences found")
    frame = validate_sequences(frame, alphabet, str(path), sequence_column)
    ids = frame["id"].astype(str).tolist() if "id" in frame.columns else [str(i) for i in range(len(frame))]
    return ids, frame[sequence_column].tolist()
