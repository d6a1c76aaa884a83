"""Streaming pretraining corpora: FASTA records -> hold-out units -> windows -> token ids -> batches.

Nothing is loaded whole: records are read one at a time, windows pass through a bounded shuffle
buffer, and batches are cut from bounded pools sorted by length (so memory stays flat as the
corpus grows, and batches carry almost no padding).

DNA records are cut into hold-out units (the record, or ``holdout_block_bp`` blocks of a long
one); a hash of ``record_id:block`` sends a unit to validation or training, never both. Units are
split at runs of N, then tiled with ``window_bp`` windows at a random phase each pass (a shorter
piece is taken whole); half of the windows are reverse-complemented. Proteins are taken whole or
randomly cropped to ``crop_aa`` residues.

Example:
    >>> stream = WindowStream(CorpusConfig(train_files=["corpus.fa.gz"]), tokenizer, batch_size=32)
    >>> batch = next(iter(stream))          # TokenBatch(index=0, sequences=[32 int64 arrays])
    >>> held_out = validation_windows(CorpusConfig(train_files=["corpus.fa.gz"]), tokenizer)
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Optional

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from ..io import alphabet_hint, read_fasta_records
from .config import CorpusConfig

__all__ = [
    "TokenBatch",
    "WindowStream",
    "validation_windows",
    "build_window_encoder",
    "resolve_alphabet",
    "is_held_out",
    "reverse_complement",
    "dna_windows",
    "protein_crop",
    "corpus_units",
    "tokens_per_window",
]

logger = logging.getLogger(__name__)

_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
_NOT_ACGTN = re.compile(r"[^ACGTN]")
_NOT_DNA_LETTER = re.compile(r"[^ACGTNRYKMSWBDHV]")
VALIDATION_SEED = 1234
"""The validation set depends on the corpus and this seed only, so runs with any train.seed compare."""


class TokenBatch(NamedTuple):
    """One batch of unpadded token-id arrays; ``index`` counts batches of this shard's stream."""

    index: int
    sequences: list[np.ndarray]


# ----------------------------------------------------------------------------- windows


def reverse_complement(sequence: str) -> str:
    """The reverse complement of an upper-case ACGTN sequence.

    Example:
        >>> reverse_complement("AACGN")
        'NCGTT'
    """
    return sequence.translate(_COMPLEMENT)[::-1]


def is_held_out(unit_id: str, fraction: float) -> bool:
    """Whether a hold-out unit goes to validation: a stable hash of its id, independent of seeds.

    Example:
        >>> is_held_out("chr1:0", 0.0), is_held_out("chr1:0", 0.999999)
        (False, True)
    """
    digest = hashlib.blake2b(unit_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def _n_free_pieces(sequence: str, n_run_bp: int, min_length: int) -> Iterator[str]:
    """Pieces of ``sequence`` between runs of >= ``n_run_bp`` N, dropping pieces under ``min_length``."""
    start = 0
    for run in re.finditer(f"N{{{n_run_bp},}}", sequence):
        if run.start() - start >= min_length:
            yield sequence[start : run.start()]
        start = run.end()
    if len(sequence) - start >= min_length:
        yield sequence[start:]


def dna_windows(piece: str, window_bp: int, rng: np.random.Generator) -> list[str]:
    """Tile ``piece`` with ``window_bp`` windows from a random phase; a short piece is one window.

    Example:
        >>> [len(w) for w in dna_windows("A" * 250, 100, np.random.default_rng(0))]
        [100, 100]
    """
    if len(piece) <= window_bp:
        return [piece]
    phase = int(rng.integers(0, min(window_bp, len(piece) - window_bp) + 1))
    return [piece[s : s + window_bp] for s in range(phase, len(piece) - window_bp + 1, window_bp)]


def protein_crop(sequence: str, crop_aa: int, rng: np.random.Generator) -> str:
    """The whole protein, or a random stretch of ``crop_aa`` residues of a longer one.

    Example:
        >>> len(protein_crop("M" * 2000, 1022, np.random.default_rng(0)))
        1022
    """
    if len(sequence) <= crop_aa:
        return sequence
    start = int(rng.integers(0, len(sequence) - crop_aa + 1))
    return sequence[start : start + crop_aa]


def corpus_units(paths: Iterable[str | Path], block_bp: int, alphabet: Optional[str] = None) -> Iterator[tuple[str, str]]:
    """Yield ``(unit_id, sequence)`` hold-out units, reading the files interleaved.

    Records of several files alternate (so one pass mixes them); a record longer than ``block_bp``
    is cut into blocks, and unit ids are ``record_id:block``. With ``alphabet="dna"`` every record is checked
    (:func:`check_corpus_record`); a missing file is an error naming it.

    Example:
        >>> next(corpus_units(["genome.fa.gz"], 100_000))[0]
        'chr1:0'
    """
    paths = list(paths)
    for path in paths:
        if not Path(path).is_file():
            raise ValueError(f"corpus.train_files: {path} does not exist; give existing FASTA / FASTA.gz files")
    readers = [((path, *record) for record in read_fasta_records(path)) for path in paths]
    records = (r for group in itertools.zip_longest(*readers) for r in group if r is not None)
    for number, (path, line, header, sequence) in enumerate(records):
        if alphabet == "dna":
            check_corpus_record(sequence, f"{path}:{line}")
        record_id = header.split(maxsplit=1)[0] if header else f"record{number}"
        for block, start in enumerate(range(0, max(len(sequence), 1), block_bp)):
            yield f"{record_id}:{block}", sequence[start : start + block_bp]


def check_corpus_record(sequence: str, where: str) -> None:
    """Refuse a DNA record with characters that are not bases: ACGTN and the IUPAC codes (read as N) pass.

    Example:
        >>> check_corpus_record("ACGTRYN", "genome.fa:1")   # passes; "ACGT-1" raises naming the file and line
    """
    bad = set(_NOT_DNA_LETTER.findall(sequence.upper()))
    if bad:
        raise ValueError(f"{where}: invalid dna character(s) {sorted(bad)} in a corpus record; a DNA corpus holds "
                         f"ACGTN and IUPAC codes (read as N): fix or drop the record{alphabet_hint(sequence, 'dna')}")


def _unit_windows(sequence: str, cfg: CorpusConfig, alphabet: str, rng: np.random.Generator) -> list[str]:
    """The windows one pass takes from one hold-out unit (upper-cased; DNA filtered and strand-flipped)."""
    sequence = sequence.upper()
    if alphabet == "protein":
        return [protein_crop(sequence, cfg.crop_aa, rng)] if len(sequence) >= cfg.min_length else []
    if _NOT_ACGTN.search(sequence):
        sequence = _NOT_ACGTN.sub("N", sequence)  # IUPAC codes count as unknown bases (check_corpus_record)
    windows = []
    for piece in _n_free_pieces(sequence, cfg.n_run_bp, cfg.min_length):
        for window in dna_windows(piece, cfg.window_bp, rng):
            if window.count("N") > cfg.max_n_fraction * len(window):
                continue
            flip = rng.random() < cfg.reverse_complement_fraction
            windows.append(reverse_complement(window) if flip else window)
    return windows


def _pass_windows(cfg: CorpusConfig, alphabet: str, split: str, rng: np.random.Generator,
                  shard: int = 0, num_shards: int = 1) -> Iterator[str]:
    """Windows of one pass over the corpus for ``split`` (train or validation), restricted to a shard of the
    hold-out units (so even a single-record genome is spread over processes, block by block)."""
    want_validation = split == "validation"
    for number, (unit_id, sequence) in enumerate(corpus_units(cfg.train_files, cfg.holdout_block_bp, alphabet)):
        if number % num_shards != shard:
            continue
        if is_held_out(unit_id, cfg.validation_fraction) != want_validation:
            continue
        yield from _unit_windows(sequence, cfg, alphabet, rng)


# ----------------------------------------------------------------------------- token ids


def resolve_alphabet(cfg: CorpusConfig, tokenizer) -> str:
    """``corpus.alphabet``, with auto meaning protein for a protein tokenizer and dna otherwise."""
    if cfg.alphabet != "auto":
        return cfg.alphabet
    return tokenizer.alphabet


def _template_ids(tokenizer, probe: str) -> tuple[list[int], list[int]]:
    """Special ids the tokenizer puts before and after a sequence (e.g. [CLS] ... [SEP])."""
    ids = tokenizer.encode([probe])["input_ids"][0]
    special = set(tokenizer.special_token_ids) - {tokenizer.hf.unk_token_id}
    body = [i for i, token in enumerate(ids) if token not in special]
    return ids[: body[0]], ids[body[-1] + 1 :]


class LookupEncoder:
    """Vectorised encoder for k-mer, nucleotide and protein vocabularies (no per-token Python).

    Characters become codes through a 256-entry table; a k-mer's id is read from a table indexed by
    its base-4 number. Ids come from the tokenizer's own vocabulary, so any layout works. Plain
    arrays only, so it pickles into DataLoader workers.
    """

    def __init__(self, tokenizer, max_tokens: int):
        vocab, self.unk = tokenizer.hf.get_vocab(), tokenizer.hf.unk_token_id
        self.k = k = tokenizer.k if tokenizer.kind == "kmer" else 1
        probe = ("ACGT" * k)[:k] if tokenizer.kind == "kmer" else ("M" if tokenizer.kind == "protein" else "A")
        self.prefix, self.suffix = (np.asarray(part, dtype=np.int64) for part in _template_ids(tokenizer, probe))
        self.max_body = max_tokens - len(self.prefix) - len(self.suffix)
        if k == 1:
            self.table = np.full(256, self.unk, dtype=np.int64)
            for token, token_id in vocab.items():
                if len(token) == 1 and token.isalpha():
                    self.table[ord(token)] = token_id
        else:
            self.table = np.full(256, -1, dtype=np.int64)  # base code; -1 marks N and anything else
            self.table[[ord(b) for b in "ACGT"]] = np.arange(4)
            self.kmer_ids = np.array([vocab["".join(p)] for p in itertools.product("ACGT", repeat=k)], dtype=np.int64)
            self.powers = 4 ** np.arange(k - 1, -1, -1)

    def body_ids(self, window: str) -> np.ndarray:
        """Token ids of one window without specials."""
        codes = self.table[np.frombuffer(window.encode("ascii", "replace"), dtype=np.uint8)]
        if self.k == 1:
            return codes
        if len(codes) < self.k:
            return codes[:0]
        grams = np.lib.stride_tricks.sliding_window_view(codes, self.k)  # L-k+1 overlapping k-mers
        return np.where((grams < 0).any(1), self.unk, self.kmer_ids[(np.maximum(grams, 0) * self.powers).sum(1)])

    def __call__(self, windows: list[str]) -> list[np.ndarray]:
        return [np.concatenate([self.prefix, self.body_ids(w)[: self.max_body], self.suffix]) for w in windows]


class TokenizerEncoder:
    """Encoder through the (Rust) Hugging Face tokenizer, for BPE and other variable-rate vocabularies."""

    def __init__(self, tokenizer, max_tokens: int):
        self.tokenizer, self.max_tokens = tokenizer, max_tokens

    def __call__(self, windows: list[str]) -> list[np.ndarray]:
        ids = self.tokenizer.encode(windows, max_length=self.max_tokens)["input_ids"]
        return [np.asarray(row, dtype=np.int64) for row in ids]


def build_window_encoder(tokenizer, max_tokens: int) -> Callable[[list[str]], list[np.ndarray]]:
    """A callable from window strings to int64 token-id arrays (special tokens included, <= max_tokens).

    Fixed-rate vocabularies (k-mer, nucleotide, protein) use a vectorised table lookup that matches
    ``tokenizer.encode``; BPE and other tokenizers go through the Hugging Face tokenizer.

    Example:
        >>> build_window_encoder(SequenceTokenizer.from_pretrained("kmer3"), 512)(["ACGTA"])[0].tolist()
        [2, 16, 50, 57, 3]
    """
    # the lookup is exact only where one character (or one overlapping k-mer) is one vocabulary entry; spaced
    # residues (ProtBERT/ProtT5 pieces such as "▁M", U Z O B -> X) and chunked k-mers go through the tokenizer
    if tokenizer.input_format in ("kmer", "char") and tokenizer.kind in ("kmer", "nucleotide", "protein"):
        return LookupEncoder(tokenizer, max_tokens)
    return TokenizerEncoder(tokenizer, max_tokens)


def tokens_per_window(tokenizer, cfg: CorpusConfig, alphabet: str) -> Optional[int]:
    """Tokens in a full-length window for fixed-rate tokenizers (None for BPE/other)."""
    if tokenizer.kind not in ("kmer", "nucleotide", "protein"):
        return None
    length = cfg.crop_aa if alphabet == "protein" else cfg.window_bp
    probe = ("M" if alphabet == "protein" else "A") * length
    return len(build_window_encoder(tokenizer, 10**9)([probe])[0])


# ----------------------------------------------------------------------------- streams


def _shuffled(items: Iterable, buffer_size: int, rng: np.random.Generator) -> Iterator:
    """Streaming shuffle through a bounded buffer (each arriving item swaps out a random resident)."""
    buffer = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        j = int(rng.integers(buffer_size))
        buffer[j], item = item, buffer[j]
        yield item
    rng.shuffle(buffer)
    yield from buffer


def _cut_by_tokens(encoded: list[np.ndarray], batch_tokens: int) -> list[list[np.ndarray]]:
    """Cut length-sorted arrays into batches whose padded size (windows x longest) fits ``batch_tokens``."""
    batches, start = [], 0
    for end in range(1, len(encoded) + 1):
        if (end - start) * len(encoded[end - 1]) > batch_tokens and end - 1 > start:
            batches.append(encoded[start : end - 1])
            start = end - 1
    return batches + [encoded[start:]]


def _bucketed_batches(windows: Iterator[str], encode, batch_size: int, pool_batches: int,
                      rng: np.random.Generator, batch_tokens: Optional[int] = None) -> Iterator[list[np.ndarray]]:
    """Pools of ``batch_size * pool_batches`` windows, encoded, sorted by length, cut into batches, shuffled.

    Batches hold ``batch_size`` windows, or with ``batch_tokens`` as many as fit that padded token
    budget (so short windows come in bigger batches and every step does a similar amount of work).
    """
    while True:
        pool = list(itertools.islice(windows, batch_size * pool_batches))
        if len(pool) < batch_size:
            return
        encoded = sorted(encode(pool), key=len)
        if batch_tokens:
            batches = _cut_by_tokens(encoded, batch_tokens)
        else:
            batches = [encoded[i : i + batch_size] for i in range(0, len(encoded) - batch_size + 1, batch_size)]
        for j in rng.permutation(len(batches)):
            yield batches[j]


class WindowStream(IterableDataset):
    """An endless, shuffled, length-bucketed stream of training batches from FASTA files.

    Hold-out units (records, or blocks of long records) are sharded across DDP processes
    (``rank``/``world_size``) and DataLoader workers, so every process trains on its own part; pass it to ``DataLoader(stream, batch_size=None, ...)``
    with a collator such as :class:`~gr_ft.pretraining.masking.MaskedLMCollator`. Batches hold
    ``batch_size`` windows, or as many as fit ``batch_tokens`` padded tokens when that is given.
    The stream is a deterministic function of ``seed`` and the shard, so ``skip_batches`` resumes
    it exactly.

    Example:
        >>> stream = WindowStream(cfg.corpus, tokenizer, batch_size=32, seed=0, rank=0, world_size=1)
        >>> stream.skip_batches = 1000          # resume after 1000 consumed batches
    """

    def __init__(self, cfg: CorpusConfig, tokenizer, batch_size: int, seed: int = 0, *, rank: int = 0,
                 world_size: int = 1, skip_batches: int = 0, batch_tokens: Optional[int] = None):
        self.cfg, self.batch_size, self.batch_tokens, self.seed = cfg, batch_size, batch_tokens, seed
        self.rank, self.world_size, self.skip_batches = rank, world_size, skip_batches
        self.alphabet = resolve_alphabet(cfg, tokenizer)
        self.encode = build_window_encoder(tokenizer, cfg.max_tokens)

    def _shard(self) -> tuple[int, int, int, int]:
        """(shard, num_shards, worker, num_workers) of the current process and DataLoader worker."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return self.rank * workers + worker, self.world_size * workers, worker, workers

    def _endless_windows(self, shard: int, num_shards: int, rng: np.random.Generator) -> Iterator[str]:
        """Pass after pass over this shard's training records; a pass without any window is an error."""
        for _ in itertools.count():
            empty = True
            for window in _pass_windows(self.cfg, self.alphabet, "train", rng, shard, num_shards):
                empty = False
                yield window
            if empty:
                raise ValueError(
                    f"no training windows in {self.cfg.train_files} for shard {shard} of {num_shards}: every record "
                    f"is shorter than corpus.min_length={self.cfg.min_length}, held out for validation, or rejected "
                    f"for its N content"
                )

    def __iter__(self) -> Iterator[TokenBatch]:
        shard, num_shards, worker, workers = self._shard()
        rng = np.random.default_rng([self.seed, shard])
        windows = _shuffled(self._endless_windows(shard, num_shards, rng), self.cfg.shuffle_buffer, rng)
        batches = _bucketed_batches(windows, self.encode, self.batch_size, self.cfg.bucket_batches, rng,
                                    self.batch_tokens)
        # DataLoader workers take turns, so worker w has served every `workers`-th of the consumed batches
        skip = self.skip_batches // workers + (1 if worker < self.skip_batches % workers else 0)
        for index, sequences in enumerate(batches):
            if index >= skip:
                yield TokenBatch(index * workers + worker, sequences)


def validation_windows(cfg: CorpusConfig, tokenizer, seed: int = VALIDATION_SEED) -> list[np.ndarray]:
    """The fixed validation set: ``cfg.validation_windows`` windows reservoir-sampled from held-out units.

    One pass over the corpus with a fixed seed; only held-out units are windowed, and at most
    ``validation_windows`` of them are kept. Returned sorted by length (cheap evaluation batches).

    Example:
        >>> windows = validation_windows(CorpusConfig(train_files=["corpus.fa.gz"]), tokenizer)
    """
    rng = np.random.default_rng(seed)
    reservoir: list[str] = []
    for seen, window in enumerate(_pass_windows(cfg, resolve_alphabet(cfg, tokenizer), "validation", rng)):
        if len(reservoir) < cfg.validation_windows:
            reservoir.append(window)
        elif (j := int(rng.integers(seen + 1))) < cfg.validation_windows:
            reservoir[j] = window
    if not reservoir:
        raise ValueError(
            f"no validation windows: corpus.validation_fraction={cfg.validation_fraction} held out no usable record "
            f"of {cfg.train_files}; raise it (or lower corpus.holdout_block_bp for a single long genome)"
        )
    return sorted(build_window_encoder(tokenizer, cfg.max_tokens)(reservoir), key=len)
