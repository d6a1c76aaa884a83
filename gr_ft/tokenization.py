"""Tokenizers for DNA and protein language models, and how raw sequences become tokens.

Built-in vocabularies (``BUILTIN_TOKENIZERS``) match the models gr-ft fine-tunes:

- ``kmer3`` .. ``kmer6``: DNABERT's overlapping k-mers with DNABERT's own ids ([PAD] [UNK] [CLS]
  [SEP] [MASK], then the 4^k k-mers in A,T,C,G product order, as in zhihan1996/DNA_bert_k's vocab.txt).
- ``nucleotide``: one token per base (A C G T N).
- ``protein``: the ESM-2 alphabet in ESM order, so ids match ESM checkpoints.
- ``hyena`` / ``caduceus``: the character vocabularies of HyenaDNA and Caduceus checkpoints.
- ``bpe``: DNA byte-pair encoding in the DNABERT-2 manner, trained on the in-domain corpus.

:class:`SequenceTokenizer` wraps any Hugging Face tokenizer and decides how a raw sequence becomes
the text that tokenizer reads (its *input format*, see ``INPUT_FORMATS``: overlapping ``kmer``,
NT-style ``chunked_kmer``, ProtTrans-style ``spaced``, ``char`` or ``raw``). It reports for every
token the span of the original sequence it stands for, so per-position labels can be aligned to
tokens, and it refuses input that a vocabulary would silently turn into [UNK]::

    tok = SequenceTokenizer.from_pretrained("kmer3")
    enc = tok.encode(["ACGTA"])   # enc["input_ids"] == [[2, 16, 50, 57, 3]]
    tok.align_position_labels([0, 0, 1, 0, 0], enc["token_spans"][0])  # [-100, 0, 1, 0, -100]

:func:`check_vocab_matches` compares a tokenizer's token->id map with a checkpoint's own
(:func:`load_checkpoint_vocab`), so a built-in vocabulary can never silently scramble ids.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .io import alphabet_hint, open_text, read_fasta_records, text_lines
from .utils import check_output_folder

__all__ = [
    "BUILTIN_TOKENIZERS",
    "CHARACTER_SPECIAL_TOKENS",
    "DNABERT_BASE_ORDER",
    "DNA_SPECIAL_TOKENS",
    "ESM_ALPHABET",
    "INPUT_FORMATS",
    "SHIPPED_TOKENIZERS_DIR",
    "SequenceTokenizer",
    "build_caduceus_tokenizer",
    "build_hyena_tokenizer",
    "build_kmer_tokenizer",
    "build_nucleotide_tokenizer",
    "build_protein_tokenizer",
    "check_vocab_matches",
    "chunk_kmers",
    "dnabert_kmers",
    "infer_input_format",
    "infer_tokenizer_kind",
    "kmerize",
    "load_checkpoint_vocab",
    "read_sequence_file",
    "train_bpe_from_files",
    "train_bpe_tokenizer",
    "write_builtin_tokenizers",
]

logger = logging.getLogger(__name__)

DNA_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
"""DNABERT / DNABERT-2 special tokens, at ids 0-4 in every DNA vocabulary built here."""

DNA_ALPHABET = "ACGTN"
DNABERT_BASE_ORDER = "ATCG"
"""Base order of DNABERT's k-mer vocabularies: k-mers follow ``itertools.product("ATCG", repeat=k)``."""
CHARACTER_SPECIAL_TOKENS = ["[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]"]
"""HyenaDNA / Caduceus character tokenizers: these specials at ids 0-6, then the characters from 7."""
ESM_ALPHABET = (
    ["<cls>", "<pad>", "<eos>", "<unk>"]
    + list("LAGVSERTIDPKQNFYMHWCXBUZO.-")
    + ["<null_1>", "<mask>"]
)
"""The ESM-2 vocabulary in id order (33 tokens; <mask> = 32)."""

STANDARD_AMINO_ACIDS = frozenset("ACDEFGHIKLMNPQRSTVWY")


def shipped_dir(name: str) -> Path:
    """A top-level folder of the checkout (tokenizers, model_cards), or its copy inside a wheel (gr_ft/shipped/)."""
    checkout = Path(__file__).resolve().parent.parent / name
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "shipped" / name


SHIPPED_TOKENIZERS_DIR = shipped_dir("tokenizers")
DEFAULT_DNA_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared/data/corpus/indomain_dna_train.fasta.gz"
BPE_TRAIN_CHUNK_BP = 1000  # long records are cut so BPE merges never scan megabase "words"
KINDS = ("kmer", "nucleotide", "protein", "bpe", "other")
INPUT_FORMATS = ("kmer", "chunked_kmer", "spaced", "spaced_uzob_to_x", "char", "raw")
"""How a raw sequence becomes tokenizer text: overlapping k-mers joined by spaces (DNABERT);
non-overlapping k-mers from the left with leftover bases and N as single bases (Nucleotide
Transformer); one residue per space-separated word (ProtBERT, ProtT5; ``spaced_uzob_to_x`` first maps
the rare residues U Z O B to X as the ProtTrans model cards do); one token per character (ESM,
HyenaDNA, Caduceus, the built-in nucleotide/protein); the sequence as is (BPE)."""
RARE_RESIDUES_TO_X = str.maketrans("UZOB", "XXXX")
INPUT_FORMAT_FILE = "gr_ft_input_format.json"
GUARD_MIN_RESIDUES = 8  # sequences at least this long are checked for [UNK]-only encodings
GUARD_MAX_UNK_FRACTION = 0.5
_DNA_SPECIALS = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
_ESM_SPECIALS = dict(pad_token="<pad>", unk_token="<unk>", cls_token="<cls>", eos_token="<eos>", mask_token="<mask>")
_SPECIAL_LOOKING = re.compile(r"\[[^\]]+\]|<[^>]+>")
_SPECIAL_LOOKING_SPLIT = re.compile(r"(\[[^\]]+\]|<[^>]+>)")
_SUBWORD_MARKERS = ("##", "\u2581", "\u0120")  # WordPiece, SentencePiece, byte-level BPE


# ----------------------------------------------------------------------------- builders
def _wrap(tokenizer: Tokenizer, first: str, last: str, specials: dict) -> PreTrainedTokenizerFast:
    """Add the ``first $A last`` template to a ``tokenizers.Tokenizer`` and wrap it for transformers."""
    first_id, last_id = tokenizer.token_to_id(first), tokenizer.token_to_id(last)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{first} $A {last}",
        pair=f"{first} $A {last} $B:1 {last}:1",
        special_tokens=[(first, first_id), (last, last_id)],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **specials)


def _per_character_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Drop whitespace, then make every remaining character its own word."""
    return pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
    )


def dnabert_kmers(k: int) -> list[str]:
    """The 4^k k-mers in the order of DNABERT's vocab.txt (A,T,C,G product order).

        >>> dnabert_kmers(3)[:5]
        ['AAA', 'AAT', 'AAC', 'AAG', 'ATA']
    """
    return ["".join(p) for p in itertools.product(DNABERT_BASE_ORDER, repeat=k)]


def build_kmer_tokenizer(k: int) -> PreTrainedTokenizerFast:
    """DNABERT's k-mer tokenizer with DNABERT's ids: specials at 0-4, then the 4^k k-mers in the
    A,T,C,G product order of zhihan1996/DNA_bert_k's vocab.txt (AAA=5, AAT=6, AAC=7, ...).

    It consumes space-separated k-mers (see :func:`kmerize`); a k-mer containing N is [UNK].

        >>> tok = build_kmer_tokenizer(3)
        >>> tok("ACG CGT GTA")["input_ids"]
        [2, 16, 50, 57, 3]
    """
    if not 3 <= k <= 6:
        raise ValueError(f"k-mer length must be in 3..6 (DNABERT), got k={k}")
    kmers = dnabert_kmers(k)
    vocab = {token: i for i, token in enumerate(DNA_SPECIAL_TOKENS + kmers)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # default decoder: k-mers joined by spaces
    return _wrap(tokenizer, "[CLS]", "[SEP]", _DNA_SPECIALS)


def build_nucleotide_tokenizer() -> PreTrainedTokenizerFast:
    """One token per base: [PAD] [UNK] [CLS] [SEP] [MASK] A C G T N.

        >>> build_nucleotide_tokenizer()("ACGTN")["input_ids"]
        [2, 5, 6, 7, 8, 9, 3]
    """
    vocab = {token: i for i, token in enumerate(DNA_SPECIAL_TOKENS + list(DNA_ALPHABET))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = _per_character_pre_tokenizer()
    tokenizer.decoder = decoders.Fuse()
    return _wrap(tokenizer, "[CLS]", "[SEP]", _DNA_SPECIALS)


def build_protein_tokenizer() -> PreTrainedTokenizerFast:
    """The ESM-2 alphabet in ESM order, one token per residue, ``<cls> seq <eos>``.

        >>> build_protein_tokenizer()("MKV")["input_ids"]
        [0, 20, 15, 7, 2]
    """
    vocab = {token: i for i, token in enumerate(ESM_ALPHABET)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = _per_character_pre_tokenizer()
    tokenizer.decoder = decoders.Fuse()
    return _wrap(tokenizer, "<cls>", "<eos>", _ESM_SPECIALS)


def _build_character_tokenizer(characters: str, model_max_length: int) -> PreTrainedTokenizerFast:
    """The HyenaDNA/Caduceus character tokenizer: CHARACTER_SPECIAL_TOKENS at 0-6, characters from 7,
    unknown characters -> [UNK], template ``$A [SEP]`` (no [CLS]), left padding."""
    vocab = {token: i for i, token in enumerate(CHARACTER_SPECIAL_TOKENS + list(characters))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = _per_character_pre_tokenizer()
    tokenizer.decoder = decoders.Fuse()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A [SEP]", pair="$A [SEP] $B:1 [SEP]:1", special_tokens=[("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="[BOS]", eos_token="[SEP]", sep_token="[SEP]", cls_token="[CLS]",
        pad_token="[PAD]", mask_token="[MASK]", unk_token="[UNK]", additional_special_tokens=["[RESERVED]"],
        padding_side="left", model_max_length=model_max_length,
    )


def build_hyena_tokenizer(model_max_length: int = 1_000_002) -> PreTrainedTokenizerFast:
    """HyenaDNA's character tokenizer (its ``tokenization_hyena.py`` is not in public copies).

    Ids as the checkpoints' config fixes them (vocab_size 12, pad_token_id 4): [CLS] [SEP] [BOS]
    [MASK] [PAD] [RESERVED] [UNK] = 0-6, A C G T N = 7-11. Template ``seq [SEP]``: the published
    HyenaDNA classification head pools the last token before the first [PAD].

        >>> build_hyena_tokenizer()("ACGTN")["input_ids"]
        [7, 8, 9, 10, 11, 1]
    """
    return _build_character_tokenizer("ACGTN", model_max_length)


def build_caduceus_tokenizer(model_max_length: int = 131_072) -> PreTrainedTokenizerFast:
    """A fast equivalent of Caduceus' ``CaduceusTokenizer`` (tokenization_caduceus.py): the same ids
    and template as HyenaDNA's (it was adapted from it), upper-casing left to the wrapper.

        >>> build_caduceus_tokenizer()("ACGTN")["input_ids"]
        [7, 8, 9, 10, 11, 1]
    """
    return _build_character_tokenizer("ACGTN", model_max_length)


def _check_dna(sequence: str, where: str) -> str:
    """Upper-case ``sequence`` and check it is over ACGTN; ``where`` names the record in errors."""
    sequence = sequence.strip().upper()
    bad = set(sequence) - set(DNA_ALPHABET)
    if bad:
        char = min(bad, key=sequence.index)
        raise ValueError(
            f"{where}: invalid character {char!r} at position {sequence.index(char) + 1}; "
            f"DNA sequences may contain only {DNA_ALPHABET} (any case). Fix or drop this record"
            f"{alphabet_hint(sequence, 'dna')}"
        )
    return sequence


def _chunk_sequences(sequences: Iterable[str], chunk_bp: int = BPE_TRAIN_CHUNK_BP) -> Iterator[str]:
    """Validate sequences and cut them into pieces of at most ``chunk_bp`` for BPE training."""
    for number, sequence in enumerate(sequences, start=1):
        sequence = _check_dna(sequence, f"sequence {number}")
        for start in range(0, len(sequence), chunk_bp):
            yield sequence[start : start + chunk_bp]


def train_bpe_tokenizer(
    sequences: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a DNABERT-2 style DNA BPE: specials at ids 0-4, alphabet ACGTN, no whitespace merges.

        >>> tok = train_bpe_tokenizer(["ACGTACGTAC"] * 50, vocab_size=20)
        >>> tok.convert_ids_to_tokens(tok("ACGTACGTAC")["input_ids"])[1:-1]
        ['ACGTACGTAC']
    """
    if vocab_size <= len(DNA_SPECIAL_TOKENS) + len(DNA_ALPHABET):
        raise ValueError(f"vocab_size (--vocab-size) must exceed {len(DNA_SPECIAL_TOKENS) + len(DNA_ALPHABET)} (the special "
                         f"tokens and single bases), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=DNA_SPECIAL_TOKENS,
        initial_alphabet=list(DNA_ALPHABET),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_chunk_sequences(sequences), trainer=trainer)
    return _wrap(tokenizer, "[CLS]", "[SEP]", _DNA_SPECIALS)


# ----------------------------------------------------------------------------- reading files
def _file_format(path: Path) -> str:
    """'fasta', 'csv' or 'lines', from the file name (ignoring a trailing .gz)."""
    suffix = Path(path.name.removesuffix(".gz")).suffix.lower()
    if suffix in {".fa", ".fasta", ".fna", ".fas", ".ffn"}:
        return "fasta"
    return "csv" if suffix == ".csv" else "lines"


def _read_csv_sequences(handle: Iterable[str], path: Path) -> Iterator[str]:
    """Yield the ``sequence`` column of a CSV file."""
    reader = csv.DictReader(handle)
    if "sequence" not in (reader.fieldnames or []):
        raise ValueError(f"{path}: CSV has no 'sequence' column (columns: {reader.fieldnames})")
    for row in reader:
        yield row["sequence"]


def read_sequence_file(path: str | Path) -> Iterator[str]:
    """Yield validated, upper-cased DNA sequences from FASTA, CSV (``sequence`` column) or text files.

    Any of them may be gzipped; a text file holds one sequence per line (blank lines skipped).

        >>> seqs = list(read_sequence_file("corpus.fasta.gz"))
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"sequence file {path} does not exist")
    fmt = _file_format(path)
    if fmt == "fasta":
        for number, (_line, _header, sequence) in enumerate(read_fasta_records(path), start=1):
            yield _check_dna(sequence, f"{path}, record {number}")
        return
    with open_text(path) as handle:
        lines = text_lines(handle, path)  # a truncated .gz is an error naming the file
        if fmt == "csv":
            records = _read_csv_sequences(lines, path)
        else:
            records = (line for line in lines if line.strip())
        for number, sequence in enumerate(records, start=1):
            yield _check_dna(sequence, f"{path}, record {number}")


def _save_atomically(tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> Path:
    """Save into a temporary sibling folder, then swap it into place with ``os.replace``."""
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp_dir.chmod(0o755)  # mkdtemp makes it private; the saved folder should be readable like any other
    old_dir = out_dir.with_name(f".{out_dir.name}.old")
    try:
        tokenizer.save_pretrained(tmp_dir)
        if out_dir.exists():
            shutil.rmtree(old_dir, ignore_errors=True)
            os.replace(out_dir, old_dir)  # a directory cannot be os.replace'd onto a non-empty one
        os.replace(tmp_dir, out_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        shutil.rmtree(old_dir, ignore_errors=True)
    return out_dir


def train_bpe_from_files(
    paths: Sequence[str | Path], vocab_size: int, out_dir: str | Path, max_records: int | None = None
) -> Path:
    """Train a DNA BPE tokenizer on sequence files and save it (atomically) to ``out_dir``.

    Every record is validated before training starts; a bad one raises ValueError naming the
    file, the record number and the character.

        >>> train_bpe_from_files(["train.fasta.gz"], 4096, "my_bpe", max_records=50_000)
        PosixPath('.../my_bpe')
    """
    if not paths:
        raise ValueError("no sequence files given")
    check_output_folder(out_dir, "--out")
    records = itertools.chain.from_iterable(read_sequence_file(p) for p in paths)
    sequences = list(itertools.islice(records, max_records))
    if not sequences:
        raise ValueError(f"no sequences found in {[str(p) for p in paths]}")
    logger.info("training BPE (vocab %d) on %d sequences from %s", vocab_size, len(sequences), paths)
    return _save_atomically(train_bpe_tokenizer(sequences, vocab_size=vocab_size), Path(out_dir))


# ----------------------------------------------------------------------------- kinds
def _backend_model_type(hf: PreTrainedTokenizerBase) -> str | None:
    """The ``tokenizers`` model type ("BPE", "WordLevel", ...) behind a fast tokenizer, else None."""
    backend = getattr(hf, "backend_tokenizer", None)
    return None if backend is None else type(backend.model).__name__


def _body_tokens(hf: PreTrainedTokenizerBase) -> list[str]:
    """Vocabulary entries that stand for sequence (not specials), with subword markers stripped."""
    specials = set(hf.all_special_tokens)
    body = []
    for token in hf.get_vocab():
        if token in specials or _SPECIAL_LOOKING.fullmatch(token):
            continue
        marker = next((m for m in _SUBWORD_MARKERS if token.startswith(m) and len(token) > len(m)), "")
        body.append(token[len(marker):])
    return body


def _chunk_k(body: Sequence[str]) -> int | None:
    """k for a Nucleotide-Transformer-style vocabulary (all 4^k k-mers plus single bases), else None."""
    multi = {len(t) for t in body if len(t) > 1}
    if len(multi) != 1 or not all(set(t) <= set(DNA_ALPHABET) for t in body):
        return None
    k = multi.pop()
    kmers = {t for t in body if len(t) == k}
    return k if len(kmers) == 4**k and all("N" not in t for t in kmers) and set("ACGT") <= set(body) else None


def infer_tokenizer_kind(hf: PreTrainedTokenizerBase) -> tuple[str, int | None]:
    """Infer (kind, k) from the vocabulary; kind is one of kmer, nucleotide, protein, bpe, other.

    Subword markers are ignored (ProtT5's ``\u2581A`` counts as residue A). Nucleotide Transformer's
    6-mers + single bases are kind 'other' (see :func:`infer_input_format` for how they are read).

        >>> infer_tokenizer_kind(build_kmer_tokenizer(6))
        ('kmer', 6)
    """
    body = _body_tokens(hf)
    lengths = {len(t) for t in body}
    is_dna = bool(body) and all(set(t) <= set(DNA_ALPHABET) for t in body)
    if is_dna and len(lengths) == 1 and (k := next(iter(lengths))) > 1:
        if len(body) == 4**k and all("N" not in t for t in body):
            return "kmer", k
    if is_dna and lengths == {1}:
        return "nucleotide", 1
    if lengths == {1} and STANDARD_AMINO_ACIDS <= set(body):
        return "protein", 1
    if is_dna and _backend_model_type(hf) == "BPE":
        return "bpe", None
    return "other", None


def _reads_words_whole(hf: PreTrainedTokenizerBase) -> bool:
    """True for WordPiece/SentencePiece tokenizers, which read a run of residues as one word."""
    if _backend_model_type(hf) in {"WordPiece", "Unigram"}:
        return True
    return hasattr(hf, "wordpiece_tokenizer") or hasattr(hf, "sp_model")


def infer_input_format(hf: PreTrainedTokenizerBase) -> tuple[str, int | None]:
    """(input_format, k) a vocabulary expects; the format is one of ``INPUT_FORMATS``.

    DNABERT k-mers -> kmer; NT's 6-mers + single bases -> chunked_kmer; a protein alphabet read by
    WordPiece/SentencePiece (ProtBERT, ProtT5) -> spaced_uzob_to_x, other single-residue WordPiece
    vocabularies -> spaced; other single-character vocabularies -> char; everything else -> raw.

        >>> infer_input_format(build_kmer_tokenizer(6))
        ('kmer', 6)
    """
    kind, k = infer_tokenizer_kind(hf)
    body = _body_tokens(hf)
    if kind == "kmer":
        return "kmer", k
    if (chunk := _chunk_k(body)) is not None:
        return "chunked_kmer", chunk
    if body and {len(t) for t in body} == {1} and _reads_words_whole(hf):
        return ("spaced_uzob_to_x", 1) if kind == "protein" and "X" in body else ("spaced", 1)
    if kind in {"nucleotide", "protein"} or (body and {len(t) for t in body} == {1}):
        return "char", 1
    return "raw", None


def kmerize(sequence: str, k: int) -> str:
    """Overlapping k-mers of ``sequence`` joined by spaces (DNABERT's input format).

        >>> kmerize("ACGTA", 3)
        'ACG CGT GTA'
    """
    return " ".join(sequence[i : i + k] for i in range(len(sequence) - k + 1))


def chunk_kmers(sequence: str, k: int) -> list[tuple[int, int]]:
    """Spans of Nucleotide Transformer's tokens: the sequence is split at every N, each piece is cut
    into non-overlapping k-mers from its left end, leftover bases and each N are single tokens
    (``NucleotidesKmersTokenizer.tokenize`` in instadeepai/nucleotide-transformer).

        >>> [("ACGTACGTNAC"[s:e]) for s, e in chunk_kmers("ACGTACGTNAC", 6)]
        ['ACGTAC', 'G', 'T', 'N', 'A', 'C']
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for piece in sequence.split("N"):
        full = len(piece) // k * k
        spans += [(start + i, start + i + k) for i in range(0, full, k)]
        spans += [(start + i, start + i + 1) for i in range(full, len(piece))]
        start += len(piece)
        if start < len(sequence):  # the N that ended this piece
            spans.append((start, start + 1))
            start += 1
    return spans


# ----------------------------------------------------------------------------- checkpoint vocabularies
def load_checkpoint_vocab(folder: str | os.PathLike) -> dict[str, int] | None:
    """The token -> id map a model folder ships: tokenizer.json, vocab.txt, or a sentencepiece model.

    Returns None when the folder has none of them (e.g. HyenaDNA/Caduceus code-defined vocabularies).

        >>> load_checkpoint_vocab("../shared/models/DNA_bert_6")["AAAAAT"]
        6
    """
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        return _vocab_from_tokenizer_json(folder / "tokenizer.json")
    if (folder / "vocab.txt").is_file():
        lines = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
        return {token: i for i, token in enumerate(line.strip() for line in lines) if token}
    spiece = next((folder / name for name in ("spiece.model", "tokenizer.model") if (folder / name).is_file()), None)
    if spiece is not None:
        return _vocab_from_sentencepiece(spiece)
    return None


def _vocab_from_tokenizer_json(path: Path) -> dict[str, int]:
    """Model vocabulary plus added tokens of a ``tokenizers`` JSON file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = data.get("model", {}).get("vocab", {})
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...] in id order
        vocab = {piece: i for i, (piece, _score) in enumerate(vocab)}
    return {**vocab, **{t["content"]: t["id"] for t in data.get("added_tokens", [])}}


def _vocab_from_sentencepiece(path: Path) -> dict[str, int]:
    """Pieces of a sentencepiece model in id order (needs the ``sentencepiece`` package)."""
    try:
        import sentencepiece
    except ImportError as err:
        raise ValueError(f"{path}: reading a sentencepiece model needs `pip install sentencepiece`") from err
    processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
    return {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}


def check_vocab_matches(
    tokenizer: "SequenceTokenizer", checkpoint_vocab: dict[str, int], checkpoint_name: str
) -> None:
    """Raise ValueError unless every token of ``tokenizer`` has the checkpoint's id for it.

    Compares the token -> id maps, not only their sizes: DNABERT's and an ACGT-ordered 6-mer
    vocabulary have the same size but only 6 of 4,101 ids in common.

        >>> check_vocab_matches(SequenceTokenizer.from_pretrained("kmer6"),
        ...                     load_checkpoint_vocab("../shared/models/DNA_bert_6"), "zhihan1996/DNA_bert_6")
    """
    ours = tokenizer.hf.get_vocab()
    differing = sorted((ours[t], t) for t in ours if checkpoint_vocab.get(t) != ours[t])
    missing_in_ours = [t for t in checkpoint_vocab if t not in ours]
    if not differing and not missing_in_ours:
        return
    examples = "; ".join(
        f"token {t!r}: ours {i}, checkpoint's {checkpoint_vocab.get(t, 'absent')}" for i, t in differing[:3]
    )
    raise ValueError(
        f"tokenizer {tokenizer.name!r} does not match the vocabulary of checkpoint {checkpoint_name!r}: "
        f"{len(differing)} of our {len(ours)} token ids differ from the checkpoint's "
        f"({len(missing_in_ours)} checkpoint tokens are missing from ours; sizes {len(ours)} vs "
        f"{len(checkpoint_vocab)}). Examples: {examples or 'none'}. The weights would read scrambled ids: "
        "leave model.tokenizer empty to use the checkpoint's own tokenizer."
    )


def _missing_shipped_bpe() -> PreTrainedTokenizerFast:
    raise ValueError(
        f"the built-in 'bpe' tokenizer is trained, not built: {SHIPPED_TOKENIZERS_DIR / 'bpe'} is missing. "
        "Use an editable install of gr-ft, or train one with `gr-ft tokenizer train`."
    )


BUILTIN_TOKENIZERS: dict[str, Callable[[], PreTrainedTokenizerFast]] = {
    **{f"kmer{k}": partial(build_kmer_tokenizer, k) for k in range(3, 7)},
    "nucleotide": build_nucleotide_tokenizer,
    "protein": build_protein_tokenizer,
    "hyena": build_hyena_tokenizer,
    "caduceus": build_caduceus_tokenizer,
    "bpe": _missing_shipped_bpe,
}
"""Short names for the shipped tokenizers; each builds its tokenizer when the folder is missing."""


# ----------------------------------------------------------------------------- wrapper
def _load_hf_tokenizer(name_or_path: str, revision: str | None, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    """Resolve a built-in name, a local folder or a Hub id to a Hugging Face tokenizer."""
    if name_or_path in BUILTIN_TOKENIZERS:
        folder = SHIPPED_TOKENIZERS_DIR / name_or_path
        if folder.is_dir():
            return AutoTokenizer.from_pretrained(folder)
        logger.info("shipped folder %s missing; building %r in memory", folder, name_or_path)
        return BUILTIN_TOKENIZERS[name_or_path]()
    if Path(name_or_path).exists():
        return _load_local_tokenizer(Path(name_or_path), trust_remote_code)
    try:
        return AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"unknown tokenizer {name_or_path!r}: not a built-in name (choose one of {sorted(BUILTIN_TOKENIZERS)}), "
            f"the path does not exist, and it could not be loaded as a Hub id ({err})"
        ) from err


Span = tuple[int, int]


def _residue_pieces(sequence: str, input_format: str, k: int | None) -> list[Span]:
    """Spans of the pieces a format cuts ``sequence`` into; each piece must become one token."""
    if input_format == "kmer":
        return [(i, i + k) for i in range(len(sequence) - k + 1)]
    if input_format == "chunked_kmer":
        return chunk_kmers(sequence, k)
    return [(i, i + 1) for i in range(len(sequence))]  # spaced, spaced_uzob_to_x, char


def _load_local_tokenizer(folder: Path, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    """AutoTokenizer on a folder, falling back to BERT WordPiece for a bare BERT-style vocab.txt.

    ProtBERT's published folder (Rostlab/prot_bert) has vocab.txt and a tokenizer_config without
    ``tokenizer_class`` next to a config.json without ``model_type``, which AutoTokenizer cannot place.
    """
    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        vocab = load_checkpoint_vocab(folder) if (folder / "vocab.txt").is_file() else None
        if not vocab or not {"[CLS]", "[SEP]", "[UNK]"} <= set(vocab):
            raise ValueError(f"{folder}: AutoTokenizer could not load this folder ({err})") from err
        from transformers import BertTokenizer

        config_file = folder / "tokenizer_config.json"
        settings = json.loads(config_file.read_text()) if config_file.is_file() else {}
        logger.warning("%s: AutoTokenizer failed (%s); loading vocab.txt as a BERT WordPiece tokenizer", folder,
                       str(err).splitlines()[0])
        return BertTokenizer(str(folder / "vocab.txt"), do_lower_case=bool(settings.get("do_lower_case", False)),
                             name_or_path=str(folder))


class SequenceTokenizer:
    """A Hugging Face tokenizer plus the knowledge of how raw sequences become its tokens.

    ``input_format`` (one of ``INPUT_FORMATS``) is inferred from the vocabulary when None; pass
    it to force one. Every format but ``raw`` cuts a sequence into pieces that must each become
    exactly one token, and ``encode`` raises ValueError when the tokenizer disagrees.

        >>> tok = SequenceTokenizer.from_pretrained("kmer6")
        >>> tok.kind, tok.k, tok.vocab_size, tok.input_format
        ('kmer', 6, 4101, 'kmer')
    """

    def __init__(self, hf: PreTrainedTokenizerBase, input_format: str | None = None):
        self.hf = hf
        self.hf.truncation_side = "right"
        self._kind, self._k = infer_tokenizer_kind(hf)
        self._special_ids = frozenset(hf.all_special_ids)
        self._input_format, self._format_k = self._resolve_input_format(input_format)

    def _resolve_input_format(self, input_format: str | None) -> tuple[str, int | None]:
        """Validate a forced format (it must fit the vocabulary) or infer one."""
        inferred, k = infer_input_format(self.hf)
        if input_format is None:
            return inferred, k
        if input_format not in INPUT_FORMATS:
            raise ValueError(f"unknown input_format {input_format!r}; choose one of {list(INPUT_FORMATS)}")
        if input_format == "kmer" and self._kind != "kmer":
            raise ValueError(f"input_format 'kmer' needs an overlapping k-mer vocabulary; {self.name!r} is {self._kind!r}")
        if input_format == "chunked_kmer":
            k = _chunk_k(_body_tokens(self.hf))
            if k is None:
                raise ValueError(f"input_format 'chunked_kmer' needs k-mers plus single bases; {self.name!r} has neither")
        if input_format == "kmer":
            return input_format, self._k
        return input_format, {"chunked_kmer": k, "raw": None}.get(input_format, 1)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        trust_remote_code: bool = False,
        input_format: str | None = None,
    ) -> "SequenceTokenizer":
        """Load a built-in name (see ``BUILTIN_TOKENIZERS``), a saved folder or a Hub id.

            >>> SequenceTokenizer.from_pretrained("protein").kind
            'protein'
        """
        saved = Path(name_or_path) / INPUT_FORMAT_FILE
        if input_format is None and saved.is_file():  # a folder written by SequenceTokenizer.save_pretrained
            input_format = json.loads(saved.read_text())["input_format"]
        return cls(_load_hf_tokenizer(str(name_or_path), revision, trust_remote_code), input_format=input_format)

    def __repr__(self) -> str:
        return (
            f"SequenceTokenizer(kind={self.kind!r}, k={self.k}, vocab_size={self.vocab_size}, "
            f"input_format={self.input_format!r})"
        )

    @property
    def name(self) -> str:
        """Where the wrapped tokenizer came from (its name_or_path), for messages."""
        return str(getattr(self.hf, "name_or_path", "") or type(self.hf).__name__)

    @property
    def kind(self) -> str:
        """One of kmer, nucleotide, protein, bpe, other."""
        return self._kind

    @property
    def k(self) -> int | None:
        """k-mer length for kind 'kmer', 1 for nucleotide and protein, None otherwise."""
        return self._k

    @property
    def alphabet(self) -> str:
        """The sequence alphabet this tokenizer reads: 'protein' for residue vocabularies, else 'dna'."""
        return "protein" if self.kind == "protein" else "dna"

    @property
    def input_format(self) -> str:
        """How raw sequences become tokenizer text; one of ``INPUT_FORMATS``."""
        return self._input_format

    @property
    def format_k(self) -> int | None:
        """Bases per piece of the input format: k for kmer/chunked_kmer (chunks may be shorter), 1 for
        spaced/char, None for raw."""
        return self._format_k

    @property
    def vocab_size(self) -> int:
        """Number of token ids, including added tokens."""
        return len(self.hf)

    @property
    def pad_token_id(self) -> int | None:
        return self.hf.pad_token_id

    @property
    def mask_token_id(self) -> int | None:
        return self.hf.mask_token_id

    @property
    def cls_token_id(self) -> int | None:
        return self.hf.cls_token_id

    @property
    def special_token_ids(self) -> list[int]:
        """Sorted ids of all special tokens."""
        return sorted(self._special_ids)

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Save the wrapped tokenizer (the folder loads with plain ``AutoTokenizer``); a forced input
        format (one the vocabulary would not infer) goes to ``gr_ft_input_format.json`` beside it."""
        folder = Path(save_directory)
        self.hf.save_pretrained(folder)
        if self.input_format != infer_input_format(self.hf)[0]:
            tmp = folder / f".{INPUT_FORMAT_FILE}.tmp"
            tmp.write_text(json.dumps({"input_format": self.input_format}) + "\n")
            os.replace(tmp, folder / INPUT_FORMAT_FILE)
        return folder

    def _normalise(self, sequence: str) -> str:
        """Strip and upper-case; ``raw`` keeps tokens such as <mask> intact (and the case, for kind 'other')."""
        if self.input_format != "raw":
            return sequence.strip().upper()
        if self.kind == "other":
            return sequence.strip()
        parts = _SPECIAL_LOOKING_SPLIT.split(sequence.strip())
        return "".join(p if _SPECIAL_LOOKING.fullmatch(p) else p.upper() for p in parts)

    def model_text(self, sequence: str) -> str:
        """The text the Hugging Face tokenizer reads for a raw sequence (normalised, then in the input format).

            >>> SequenceTokenizer.from_pretrained("kmer3").model_text("acgta")
            'ACG CGT GTA'
        """
        return self._model_text(self._normalise(sequence))[0]

    def _model_text(self, sequence: str) -> tuple[str, list[Span] | None]:
        """The string handed to the HF tokenizer, and the sequence span of each piece (None for raw)."""
        if self.input_format == "raw":
            return sequence, None
        pieces = _residue_pieces(sequence, self.input_format, self._format_k)
        words = [sequence[s:e] for s, e in pieces]
        if self.input_format == "spaced_uzob_to_x":
            words = [w.translate(RARE_RESIDUES_TO_X) for w in words]
        return ("" if self.input_format == "char" else " ").join(words), pieces

    def encode(self, sequences: Sequence[str], max_length: int | None = None) -> dict:
        """Tokenize raw sequences; ``max_length`` counts specials and truncates from the right.

        Returns ``input_ids``, ``attention_mask`` and ``token_spans``: per token the half-open span
        of the original sequence it stands for (None for specials; the centre base for overlapping
        k-mers; the bases a token covers otherwise).

            >>> SequenceTokenizer.from_pretrained("kmer3").encode(["ACGTA"])["token_spans"]
            [[None, (1, 2), (2, 3), (3, 4), None]]
        """
        if isinstance(sequences, str):
            raise TypeError("encode expects a list of sequences, not a single string")
        normalised = [self._normalise(s) for s in sequences]
        texts, pieces = zip(*(self._model_text(s) for s in normalised)) if normalised else ((), ())
        fast = bool(getattr(self.hf, "is_fast", False))
        batch = self.hf(
            list(texts),
            truncation=max_length is not None,
            max_length=max_length,
            return_attention_mask=True,
            return_offsets_mapping=fast and self.input_format == "raw",
        )
        spans = []
        for row, (ids, sequence, row_pieces) in enumerate(zip(batch["input_ids"], normalised, pieces)):
            is_template = [i in self._special_ids and i != self.hf.unk_token_id for i in ids]
            self._guard_unknowns(ids, is_template, sequence, row)
            if row_pieces is None:
                offsets = batch["offset_mapping"][row] if fast else None
                row_spans = self._raw_spans(ids, is_template, sequence, offsets)
            else:
                row_spans = self._piece_spans(ids, is_template, row_pieces, max_length, row)
            spans.append(row_spans)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "token_spans": spans}

    def _piece_spans(
        self, ids: list[int], is_template: list[bool], pieces: list[Span], max_length: int | None, row: int
    ) -> list[Span | None]:
        """Token j of the body is piece j; a count mismatch means the tokenizer reads the text otherwise."""
        n_body = len(ids) - sum(is_template)
        truncated = max_length is not None and len(ids) >= max_length
        if n_body != len(pieces) and not (truncated and n_body < len(pieces)):
            raise ValueError(
                f"sequence {row + 1}: tokenizer {self.name!r} turned {len(pieces)} {self.input_format!r} pieces into "
                f"{n_body} tokens, so token positions would not match the sequence. Set the right input_format "
                f"(one of {list(INPUT_FORMATS)}) or use the checkpoint's own tokenizer."
            )
        if self.input_format == "kmer":  # report the centre base of each overlapping k-mer
            centre = (self._format_k - 1) // 2
            pieces = [(s + centre, s + centre + 1) for s, _ in pieces]
        body = iter(pieces)
        return [None if template else next(body) for template in is_template]

    def _raw_spans(
        self, ids: list[int], is_template: list[bool], sequence: str, offsets: list[Span] | None
    ) -> list[Span | None]:
        """Spans for the raw format: character offsets when the tokenizer has them, else a string walk."""
        if offsets is not None:
            return [None if t else (s, e) for t, (s, e) in zip(is_template, offsets)]
        return self._walk_token_strings(ids, is_template, sequence.upper())

    def _guard_unknowns(self, ids: list[int], is_template: list[bool], sequence: str, row: int) -> None:
        """Refuse encodings that turn a real sequence into specials/[UNK] (e.g. ProtBERT without spaces)."""
        if len(sequence) < GUARD_MIN_RESIDUES:
            return
        body = [i for i, template in zip(ids, is_template) if not template]
        n_unk = sum(i == self.hf.unk_token_id for i in body) - self._expected_unknowns(sequence, len(body))
        if body and n_unk <= GUARD_MAX_UNK_FRACTION * len(body):
            return
        inferred = infer_input_format(self.hf)[0]
        advice = (
            f"set input_format={inferred!r} (the format this vocabulary expects)"
            if inferred != self.input_format
            else f"check that the sequences use this vocabulary's alphabet (input_format choices {list(INPUT_FORMATS)})"
        )
        raise ValueError(
            f"sequence {row + 1}: tokenizer {self.name!r} with input_format {self.input_format!r} turned "
            f"{len(sequence)} residues into {len(body)} sequence tokens, {n_unk} of them {self.hf.unk_token!r}, "
            f"so the model would read noise; {advice}, or use the checkpoint's own tokenizer."
        )

    def _expected_unknowns(self, sequence: str, n_body: int) -> int:
        """[UNK] tokens that are right: overlapping k-mers containing N (DNABERT has no N k-mers)."""
        if self.input_format != "kmer" or "N" not in sequence:
            return 0
        windows = range(min(n_body, len(sequence) - self._format_k + 1))
        return sum("N" in sequence[i : i + self._format_k] for i in windows)

    def _walk_token_strings(self, ids: list[int], is_template: list[bool], text: str) -> list[Span | None]:
        """Find each token's string in ``text`` from where the previous one ended; None if not found."""
        spans: list[Span | None] = []
        cursor = 0
        for token_id, token, template in zip(ids, self.hf.convert_ids_to_tokens(ids), is_template):
            piece = token.removeprefix(next((p for p in _SUBWORD_MARKERS if token.startswith(p)), "")).upper()
            found = -1 if template or token_id == self.hf.unk_token_id or not piece else text.find(piece, cursor)
            spans.append(None if found < 0 else (found, found + len(piece)))
            cursor = found + len(piece) if found >= 0 else cursor
        return spans

    @staticmethod
    def align_position_labels(labels: Sequence[int], spans: Sequence[tuple[int, int] | None]) -> list[int]:
        """Token-level labels from per-position labels (0 = background).

        Special tokens get -100; a token takes the non-zero label inside its span (the one closest
        to the span centre if several), else 0.

            >>> SequenceTokenizer.align_position_labels([0, 2, 0, 1], [None, (0, 2), (2, 4), None])
            [-100, 2, 1, -100]
        """
        aligned = []
        for span in spans:
            if span is None:
                aligned.append(-100)
                continue
            start, end = span
            centre = (start + end - 1) / 2
            hits = [p for p in range(start, min(end, len(labels))) if labels[p] != 0]
            aligned.append(int(labels[min(hits, key=lambda p: abs(p - centre))]) if hits else 0)
        return aligned

    def decode(self, ids: Sequence[int]) -> str:
        """Decode ids back to a sequence (k-mers are re-joined into one sequence).

            >>> tok = SequenceTokenizer.from_pretrained("kmer3")
            >>> tok.decode(tok.encode(["ACGTA"])["input_ids"][0])
            'ACGTA'
        """
        tokens = [t for i, t in zip(ids, self.hf.convert_ids_to_tokens(list(ids))) if i not in self._special_ids]
        if self.input_format == "kmer":
            return tokens[0] + "".join(t[-1] for t in tokens[1:]) if tokens else ""
        if self.kind in {"nucleotide", "protein", "bpe"} or self.input_format != "raw":
            markers = tuple(_SUBWORD_MARKERS)
            return "".join(t[len(next((m for m in markers if t.startswith(m)), "")):] for t in tokens)
        return self.hf.decode(list(ids), skip_special_tokens=True)


# ----------------------------------------------------------------------------- shipped folders
def _sample_dna_corpus(corpus: Path, max_records: int | None, seed: int = 0) -> list[str]:
    """All sequences of ``corpus``, or a seeded random subsample of ``max_records`` of them."""
    sequences = list(read_sequence_file(corpus))
    if max_records is not None and len(sequences) > max_records:
        sequences = random.Random(seed).sample(sequences, max_records)
    return sequences


_README = """# Built-in tokenizers

Tokenizer files only (no `__init__.py`: this folder must not shadow the `tokenizers` library).
Each folder loads with plain `transformers.AutoTokenizer.from_pretrained(path)`; in gr-ft use the
short name, e.g. `SequenceTokenizer.from_pretrained("kmer6")`.

| folder | vocab | what |
|---|---|---|
{rows}

Layouts:
- `kmer3`..`kmer6`: DNABERT's vocabulary with DNABERT's ids: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4,
  then all 4^k k-mers in **A,T,C,G** product order (`itertools.product("ATCG", repeat=k)`: AAA=5,
  AAT=6, AAC=7, AAG=8, ATA=9, ...). The tokenizer reads space-separated overlapping k-mers
  (`gr_ft.tokenization.kmerize`); k-mers with N map to [UNK]. Template `[CLS] ... [SEP]`.
  Where the rule was checked: line order of the published `vocab.txt` of DNABERT for k=3, 4, 5, 6
  in GitHub `jerryji1993/DNABERT@c9b6ccb8` `src/transformers/dnabert-config/bert-config-{{3,4,5,6}}/vocab.txt`
  (the files the zhihan1996/DNA_bert_k Hub repos ship; k=6 is also `shared/models/DNA_bert_6/vocab.txt`,
  28,703 bytes = the Hub size). All four equal `[PAD] [UNK] [CLS] [SEP] [MASK]` + the ATCG product;
  k=3 and k=6 are compared token by token in tests/test_tokenizer_fidelity.py, k=4 and k=5 were
  compared by reading the files (sizes 1,310 and 6,174 characters = the ATCG layout's). Before
  this, the folders used ACGT order and only 6 of DNABERT-6's 4,101 ids agreed.
- `nucleotide`: [PAD] [UNK] [CLS] [SEP] [MASK] A C G T N, one token per base, `[CLS] ... [SEP]`.
- `protein`: the ESM-2 alphabet in ESM order (<cls>=0 <pad>=1 <eos>=2 <unk>=3 ... <mask>=32), one
  token per residue, `<cls> ... <eos>`; ids match ESM-2 checkpoints.
- `hyena`, `caduceus`: the HyenaDNA / Caduceus character vocabulary: [CLS]=0 [SEP]=1 [BOS]=2
  [MASK]=3 [PAD]=4 [RESERVED]=5 [UNK]=6, A C G T N = 7-11 (Caduceus' `tokenization_caduceus.py`,
  "adapted from" HyenaDNA's `tokenization_hyena.py`; HyenaDNA configs: vocab_size 12, pad_token_id 4).
  Template `... [SEP]` (no [CLS]), left padding, as in `CaduceusTokenizer.build_inputs_with_special_tokens`.
- `bpe`: DNABERT-2 style BPE (`tokenizers` BPE + BpeTrainer, specials at 0-4, initial alphabet
  ACGTN, whitespace pre-split so no merge crosses records, records cut into {chunk_bp} bp pieces
  for training), vocab {bpe_vocab}, min_frequency 2, trained on a seeded random subsample
  (seed 0) of {bpe_records} records (of 209,490) of `shared/data/corpus/indomain_dna_train.fasta.gz`
  (train splits of the shared DNA sets; see that corpus's README for provenance and licences).

All folders but `bpe` are deterministic functions of the code; gr-ft builds them in memory if this
folder is missing (non-editable install).

Rebuild everything (from the repo root), or everything but the trained BPE:

    PYTHONPATH=. python -m gr_ft.tokenization tokenizers
    PYTHONPATH=. python -m gr_ft.tokenization tokenizers --keep-bpe
"""

_WHAT = {
    "nucleotide": "single nucleotides",
    "protein": "ESM-2 residues",
    "hyena": "HyenaDNA characters",
    "caduceus": "Caduceus characters",
    "bpe": "DNABERT-2 style DNA BPE",
}


def _write_readme(root: Path, folders: dict[str, PreTrainedTokenizerBase], bpe_records: int) -> None:
    """Write root/README.md describing each folder."""
    rows = "\n".join(
        f"| `{name}` | {len(tok)} | {_WHAT.get(name, f'DNABERT overlapping {name[4:]}-mers')} |"
        for name, tok in folders.items()
    )
    text = _README.format(
        rows=rows, chunk_bp=BPE_TRAIN_CHUNK_BP, bpe_vocab=len(folders["bpe"]), bpe_records=bpe_records
    )
    (root / "README.md").write_text(text)


def write_builtin_tokenizers(
    root: Path = SHIPPED_TOKENIZERS_DIR,
    corpus: Path = DEFAULT_DNA_CORPUS,
    max_records: int | None = 50_000,
    bpe_vocab_size: int = 4096,
    keep_bpe: bool = False,
) -> dict[str, Path]:
    """Write every built-in folder under ``root``; the BPE is trained on ``corpus`` unless
    ``keep_bpe`` (then the existing ``root/bpe`` stays as it is and only the built folders change).

        >>> write_builtin_tokenizers(Path("tokenizers"), keep_bpe=True)["kmer6"]
        PosixPath('.../tokenizers/kmer6')
    """
    root = Path(root)
    if (root / "__init__.py").exists():
        raise ValueError(f"{root / '__init__.py'} must not exist: it would shadow the tokenizers library")
    folders = {name: build() for name, build in BUILTIN_TOKENIZERS.items() if name != "bpe"}
    written = {name: _save_atomically(tok, root / name) for name, tok in folders.items()}
    if keep_bpe:
        if not (root / "bpe").is_dir():
            raise ValueError(f"keep_bpe: {root / 'bpe'} does not exist; train it (drop --keep-bpe)")
        folders["bpe"], n_records = AutoTokenizer.from_pretrained(root / "bpe"), max_records
    else:
        sequences = _sample_dna_corpus(Path(corpus), max_records)
        logger.info("training the built-in BPE on %d sequences of %s", len(sequences), corpus)
        folders["bpe"], n_records = train_bpe_tokenizer(sequences, vocab_size=bpe_vocab_size), len(sequences)
        written["bpe"] = _save_atomically(folders["bpe"], root / "bpe")
    _write_readme(root, folders, n_records)
    return written


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO)
    args = [a for a in sys.argv[1:] if a != "--keep-bpe"]
    root = Path(args[0]) if args else SHIPPED_TOKENIZERS_DIR
    for name, folder in write_builtin_tokenizers(root, keep_bpe="--keep-bpe" in sys.argv).items():
        logger.info("wrote %s -> %s", name, folder)
