"""Tokenizers for DNA and protein language models, and how raw sequences become tokens.

Four vocabularies match the models gr-ft fine-tunes:

- ``kmer3`` .. ``kmer6``: DNABERT's overlapping k-mers ([PAD] [UNK] [CLS] [SEP] [MASK], then the
  4^k k-mers in lexicographic order); the HF tokenizer consumes space-separated k-mers.
- ``nucleotide``: one token per base (A C G T N).
- ``protein``: the ESM-2 alphabet in ESM order, so ids match ESM checkpoints.
- ``bpe``: DNA byte-pair encoding in the DNABERT-2 manner, trained on the in-domain corpus.

:class:`SequenceTokenizer` wraps any Hugging Face tokenizer, infers which of these it is, and
reports for every token the span of the original sequence it stands for, so per-position
labels can be aligned to tokens::

    tok = SequenceTokenizer.from_pretrained("kmer3")
    enc = tok.encode(["ACGTA"])   # enc["input_ids"] == [[2, 11, 32, 49, 3]]
    tok.align_position_labels([0, 0, 1, 0, 0], enc["token_spans"][0])  # [-100, 0, 1, 0, -100]
"""

from __future__ import annotations

import csv
import itertools
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

from .io import open_text, read_fasta_records

__all__ = [
    "BUILTIN_TOKENIZERS",
    "DNA_SPECIAL_TOKENS",
    "ESM_ALPHABET",
    "SHIPPED_TOKENIZERS_DIR",
    "SequenceTokenizer",
    "build_kmer_tokenizer",
    "build_nucleotide_tokenizer",
    "build_protein_tokenizer",
    "infer_tokenizer_kind",
    "kmerize",
    "read_sequence_file",
    "train_bpe_from_files",
    "train_bpe_tokenizer",
    "write_builtin_tokenizers",
]

logger = logging.getLogger(__name__)

DNA_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
"""DNABERT / DNABERT-2 special tokens, at ids 0-4 in every DNA vocabulary built here."""

DNA_ALPHABET = "ACGTN"
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


def build_kmer_tokenizer(k: int) -> PreTrainedTokenizerFast:
    """DNABERT's k-mer tokenizer: specials at 0-4, then all 4^k k-mers in lexicographic order.

    It consumes space-separated k-mers (see :func:`kmerize`); a k-mer containing N is [UNK].

        >>> tok = build_kmer_tokenizer(3)
        >>> tok("ACG CGT GTA")["input_ids"]
        [2, 11, 32, 49, 3]
    """
    if not 3 <= k <= 6:
        raise ValueError(f"k-mer length must be in 3..6 (DNABERT), got k={k}")
    kmers = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
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


def _check_dna(sequence: str, where: str) -> str:
    """Upper-case ``sequence`` and check it is over ACGTN; ``where`` names the record in errors."""
    sequence = sequence.strip().upper()
    bad = set(sequence) - set(DNA_ALPHABET)
    if bad:
        char = min(bad, key=sequence.index)
        raise ValueError(
            f"{where}: invalid character {char!r} at position {sequence.index(char) + 1}; "
            f"DNA sequences may contain only {DNA_ALPHABET} (any case). Fix or drop this record."
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
        raise ValueError(f"vocab_size must exceed {len(DNA_SPECIAL_TOKENS) + len(DNA_ALPHABET)}, got {vocab_size}")
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
        if fmt == "csv":
            records = _read_csv_sequences(handle, path)
        else:
            records = (line for line in handle if line.strip())
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


def infer_tokenizer_kind(hf: PreTrainedTokenizerBase) -> tuple[str, int | None]:
    """Infer (kind, k) from the vocabulary; kind is one of kmer, nucleotide, protein, bpe, other.

        >>> infer_tokenizer_kind(build_kmer_tokenizer(6))
        ('kmer', 6)
    """
    specials = set(hf.all_special_tokens)
    body = [t for t in hf.get_vocab() if t not in specials and not _SPECIAL_LOOKING.fullmatch(t)]
    lengths = {len(t) for t in body}
    is_dna = bool(body) and all(set(t) <= set(DNA_ALPHABET) for t in body)
    if is_dna and len(lengths) == 1 and (k := lengths.pop()) > 1:
        if len(body) == 4**k and all("N" not in t for t in body):
            return "kmer", k
    if is_dna and {len(t) for t in body} == {1}:
        return "nucleotide", 1
    if {len(t) for t in body} == {1} and STANDARD_AMINO_ACIDS <= set(body):
        return "protein", 1
    if is_dna and _backend_model_type(hf) == "BPE":
        return "bpe", None
    return "other", None


def kmerize(sequence: str, k: int) -> str:
    """Overlapping k-mers of ``sequence`` joined by spaces (DNABERT's input format).

        >>> kmerize("ACGTA", 3)
        'ACG CGT GTA'
    """
    return " ".join(sequence[i : i + k] for i in range(len(sequence) - k + 1))


def _missing_shipped_bpe() -> PreTrainedTokenizerFast:
    raise ValueError(
        f"the built-in 'bpe' tokenizer is trained, not built: {SHIPPED_TOKENIZERS_DIR / 'bpe'} is missing. "
        "Use an editable install of gr-ft, or train one with `gr-ft tokenizer train`."
    )


BUILTIN_TOKENIZERS: dict[str, Callable[[], PreTrainedTokenizerFast]] = {
    **{f"kmer{k}": partial(build_kmer_tokenizer, k) for k in range(3, 7)},
    "nucleotide": build_nucleotide_tokenizer,
    "protein": build_protein_tokenizer,
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
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    try:
        return AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"unknown tokenizer {name_or_path!r}: not a built-in name (choose one of {sorted(BUILTIN_TOKENIZERS)}), "
            f"the path does not exist, and it could not be loaded as a Hub id ({err})"
        ) from err


class SequenceTokenizer:
    """A Hugging Face tokenizer plus the knowledge of how raw sequences become its tokens.

        >>> tok = SequenceTokenizer.from_pretrained("kmer6")
        >>> tok.kind, tok.k, tok.vocab_size
        ('kmer', 6, 4101)
    """

    def __init__(self, hf: PreTrainedTokenizerBase):
        self.hf = hf
        self.hf.truncation_side = "right"
        self._kind, self._k = infer_tokenizer_kind(hf)
        self._special_ids = frozenset(hf.all_special_ids)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, *, revision: str | None = None, trust_remote_code: bool = False
    ) -> "SequenceTokenizer":
        """Load a built-in name (see ``BUILTIN_TOKENIZERS``), a saved folder or a Hub id.

            >>> SequenceTokenizer.from_pretrained("protein").kind
            'protein'
        """
        return cls(_load_hf_tokenizer(str(name_or_path), revision, trust_remote_code))

    def __repr__(self) -> str:
        return f"SequenceTokenizer(kind={self.kind!r}, k={self.k}, vocab_size={self.vocab_size})"

    @property
    def kind(self) -> str:
        """One of kmer, nucleotide, protein, bpe, other."""
        return self._kind

    @property
    def k(self) -> int | None:
        """k-mer length for kind 'kmer', 1 for nucleotide and protein, None otherwise."""
        return self._k

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
        """Save the wrapped tokenizer; the folder loads with plain ``AutoTokenizer``."""
        self.hf.save_pretrained(save_directory)
        return Path(save_directory)

    def _model_text(self, sequence: str) -> str:
        """The string handed to the HF tokenizer: upper-cased, k-merized for k-mer vocabularies."""
        if self.kind != "other":  # upper-case residues but keep tokens such as <mask> intact
            parts = _SPECIAL_LOOKING_SPLIT.split(sequence.strip())
            sequence = "".join(p if _SPECIAL_LOOKING.fullmatch(p) else p.upper() for p in parts)
        return kmerize(sequence, self.k) if self.kind == "kmer" else sequence

    def encode(self, sequences: Sequence[str], max_length: int | None = None) -> dict:
        """Tokenize raw sequences; ``max_length`` counts specials and truncates from the right.

        Returns ``input_ids``, ``attention_mask`` and ``token_spans``: per token the half-open span
        of the original sequence it stands for (None for specials; the centre base for k-mers).

            >>> SequenceTokenizer.from_pretrained("kmer3").encode(["ACGTA"])["token_spans"]
            [[None, (1, 2), (2, 3), (3, 4), None]]
        """
        if isinstance(sequences, str):
            raise TypeError("encode expects a list of sequences, not a single string")
        texts = [self._model_text(s) for s in sequences]
        fast = bool(getattr(self.hf, "is_fast", False))
        batch = self.hf(
            texts,
            truncation=max_length is not None,
            max_length=max_length,
            return_attention_mask=True,
            return_offsets_mapping=fast,
            return_special_tokens_mask=fast,
        )
        if fast:  # the special-tokens mask marks template tokens only, so [UNK] k-mers keep a span
            spans = [
                self._spans_from_offsets(*row)
                for row in zip(batch["special_tokens_mask"], batch["offset_mapping"])
            ]
        else:
            spans = [self._spans_from_tokens(ids, text) for ids, text in zip(batch["input_ids"], texts)]
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "token_spans": spans}

    def _spans_from_offsets(
        self, special_mask: list[int], offsets: list[tuple[int, int]]
    ) -> list[tuple[int, int] | None]:
        """Map character offsets in the model text back to sequence coordinates."""
        if self.kind != "kmer":
            return [None if special else (s, e) for special, (s, e) in zip(special_mask, offsets)]
        centre = (self.k - 1) // 2
        # k-mer j starts at character j * (k + 1) of the space-joined text; report its centre base
        return [
            None if special else (s // (self.k + 1) + centre, s // (self.k + 1) + centre + 1)
            for special, (s, _) in zip(special_mask, offsets)
        ]

    def _spans_from_tokens(self, ids: list[int], text: str) -> list[tuple[int, int] | None]:
        """Spans for tokenizers without offsets (e.g. ESM's Python tokenizer)."""
        is_template = [i in self._special_ids and i != self.hf.unk_token_id for i in ids]
        if self.kind in {"kmer", "nucleotide", "protein"}:  # the j-th token covers window j, in order
            centre = (self.k - 1) // 2
            positions = itertools.accumulate((not t for t in is_template), initial=0)
            return [None if t else (j + centre, j + centre + 1) for t, j in zip(is_template, positions)]
        return self._walk_token_strings(ids, is_template, text.upper())

    def _walk_token_strings(self, ids: list[int], is_template: list[bool], text: str) -> list[tuple[int, int] | None]:
        """Find each token's string in ``text`` from where the previous one ended; None if not found."""
        spans: list[tuple[int, int] | None] = []
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
        if self.kind == "kmer":
            return tokens[0] + "".join(t[-1] for t in tokens[1:]) if tokens else ""
        if self.kind in {"nucleotide", "protein", "bpe"}:
            return "".join(tokens)
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
- `kmer3`..`kmer6`: DNABERT's vocabulary: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, then all 4^k
  k-mers over ACGT in lexicographic order (`itertools.product("ACGT")`). The tokenizer reads
  space-separated overlapping k-mers (`gr_ft.tokenization.kmerize`); k-mers with N map to [UNK].
  Template `[CLS] ... [SEP]`.
- `nucleotide`: [PAD] [UNK] [CLS] [SEP] [MASK] A C G T N, one token per base, `[CLS] ... [SEP]`.
- `protein`: the ESM-2 alphabet in ESM order (<cls>=0 <pad>=1 <eos>=2 <unk>=3 ... <mask>=32), one
  token per residue, `<cls> ... <eos>`; ids match ESM-2 checkpoints.
- `bpe`: DNABERT-2 style BPE (`tokenizers` BPE + BpeTrainer, specials at 0-4, initial alphabet
  ACGTN, whitespace pre-split so no merge crosses records, records cut into {chunk_bp} bp pieces
  for training), vocab {bpe_vocab}, min_frequency 2, trained on a seeded random subsample
  (seed 0) of {bpe_records} records (of 209,490) of `shared/data/corpus/indomain_dna_train.fasta.gz`
  (train splits of the shared DNA sets; see that corpus's README for provenance and licences).

The k-mer, nucleotide and protein folders are deterministic functions of the code; gr-ft builds
them in memory if this folder is missing (non-editable install).

Rebuild everything (from the repo root):

    PYTHONPATH=. python -m gr_ft.tokenization tokenizers
"""


def _write_readme(root: Path, folders: dict[str, PreTrainedTokenizerBase], bpe_records: int) -> None:
    """Write root/README.md describing each folder."""
    what = {"nucleotide": "single nucleotides", "protein": "ESM-2 residues", "bpe": "DNABERT-2 style DNA BPE"}
    rows = "\n".join(
        f"| `{name}` | {len(tok)} | {what.get(name, f'DNABERT overlapping {name[4:]}-mers')} |"
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
) -> dict[str, Path]:
    """Write kmer3..kmer6, nucleotide, protein and bpe (trained on ``corpus``) under ``root``.

        >>> write_builtin_tokenizers(Path("tokenizers"))["kmer6"]
        PosixPath('.../tokenizers/kmer6')
    """
    root = Path(root)
    if (root / "__init__.py").exists():
        raise ValueError(f"{root / '__init__.py'} must not exist: it would shadow the tokenizers library")
    folders = {name: build() for name, build in BUILTIN_TOKENIZERS.items() if name != "bpe"}
    sequences = _sample_dna_corpus(Path(corpus), max_records)
    logger.info("training the built-in BPE on %d sequences of %s", len(sequences), corpus)
    folders["bpe"] = train_bpe_tokenizer(sequences, vocab_size=bpe_vocab_size)
    written = {name: _save_atomically(tok, root / name) for name, tok in folders.items()}
    _write_readme(root, folders, len(sequences))
    return written


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO)
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else SHIPPED_TOKENIZERS_DIR
    for name, folder in write_builtin_tokenizers(root).items():
        logger.info("wrote %s -> %s", name, folder)
