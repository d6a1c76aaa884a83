"""Typed configuration of a masked-LM pretraining run, loaded like the fine-tuning config.

A YAML file mirrors the dataclass tree (``corpus``, ``model``, ``masking``, ``train``) and any
field can be overridden as ``train.max_steps=500 corpus.window_bp=256``:

    >>> from gr_ft.config import load_config
    >>> cfg = load_config(PretrainConfig, None, ["corpus.train_files=a.fa.gz,b.fa.gz", "train.max_steps=10"])
    >>> cfg.corpus.train_files, cfg.train.max_steps
    (['a.fa.gz', 'b.fa.gz'], 10)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..config import ModelConfig, OptimizationConfig, RunConfig, _check_choice, _check_positive

__all__ = ["CorpusConfig", "MaskingConfig", "PretrainTrainConfig", "PretrainConfig"]

CORPUS_ALPHABETS = ("auto", "dna", "protein")


def _check_fraction(flag: str, value: float, upper_inclusive: bool = True) -> None:
    if not (0 <= value <= 1 if upper_inclusive else 0 <= value < 1):
        raise ValueError(f"{flag} must be in [0, 1{']' if upper_inclusive else ')'}, got {value}")


@dataclass
class CorpusConfig:
    """Unlabelled FASTA files and how they are cut into training and validation windows."""

    train_files: list[str] = field(default_factory=list)
    """FASTA / FASTA.gz files, streamed record by record (comma-separated on the command line)."""
    alphabet: str = "auto"
    """dna, protein, or auto (protein for a protein tokenizer, else dna)."""
    window_bp: int = 510
    """DNA: window length in bases; each pass tiles a record with windows at a random phase, and a
    record (or N-free piece) shorter than a window is taken whole."""
    crop_aa: int = 510
    """Proteins: a longer sequence is cropped to a random stretch of this many residues (ESM-2 style)."""
    max_tokens: int = 512
    """Token cap per window, special tokens included. BPE windows are cut to it; for k-mer, nucleotide and
    protein vocabularies a full window must fit (the recipe checks)."""
    reverse_complement_fraction: float = 0.5
    """DNA: fraction of windows replaced by their reverse complement (both strands are seen)."""
    n_run_bp: int = 10
    """DNA: records are split at runs of at least this many N (assembly gaps never enter a window)."""
    max_n_fraction: float = 0.05
    """DNA: windows with a larger fraction of scattered N are rejected."""
    min_length: int = 16
    """Records or N-free pieces shorter than this many characters are skipped."""
    validation_fraction: float = 0.01
    """Fraction of hold-out units (a record, or one `holdout_block_bp` block of a long record), chosen
    by a hash of the record id, kept out of training and used for validation perplexity."""
    holdout_block_bp: int = 100_000
    """Long records (chromosomes) are held out block by block, so one genome still yields a validation set."""
    validation_windows: int = 512
    """Size of the fixed, seeded validation set (reservoir-sampled over all held-out windows)."""
    shuffle_buffer: int = 50_000
    """Windows kept in the streaming shuffle buffer; memory is bounded by this, not by the corpus size."""
    bucket_batches: int = 50
    """Batches pooled and sorted by length before batching, so a batch carries (almost) no padding."""
    num_workers: int = 0
    """DataLoader worker processes reading the corpus (each reads its own shard of the records)."""

    def __post_init__(self):
        _check_choice("corpus.alphabet", self.alphabet, CORPUS_ALPHABETS)
        for flag in ("window_bp", "crop_aa", "max_tokens", "n_run_bp", "min_length", "holdout_block_bp",
                     "validation_windows", "shuffle_buffer", "bucket_batches"):
            _check_positive(f"corpus.{flag}", getattr(self, flag))
        _check_positive("corpus.num_workers", self.num_workers, allow_zero=True)
        _check_fraction("corpus.reverse_complement_fraction", self.reverse_complement_fraction)
        _check_fraction("corpus.max_n_fraction", self.max_n_fraction)
        _check_fraction("corpus.validation_fraction", self.validation_fraction, upper_inclusive=False)
        if self.max_tokens < 3:
            raise ValueError(f"corpus.max_tokens must leave room for special tokens (>= 3), got {self.max_tokens}")


@dataclass
class MaskingConfig:
    """BERT-style masking: which tokens are predicted and what the model sees in their place."""

    mlm_probability: float = 0.15
    """Fraction of (non-special) tokens the model must predict."""
    mask_replace_prob: float = 0.8
    """Of the selected tokens, the fraction shown as the mask token."""
    random_replace_prob: float = 0.1
    """Of the selected tokens, the fraction shown as a random non-special token (the rest stay unchanged)."""
    span_length: int = 0
    """Tokens masked together around each chosen centre. 0 picks k for overlapping k-mer vocabularies
    (DNABERT: otherwise a masked k-mer is spelled out by its neighbours) and 1 for everything else."""

    def __post_init__(self):
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"masking.mlm_probability must be in (0, 1), got {self.mlm_probability}")
        _check_fraction("masking.mask_replace_prob", self.mask_replace_prob)
        _check_fraction("masking.random_replace_prob", self.random_replace_prob)
        if self.mask_replace_prob + self.random_replace_prob > 1:
            raise ValueError(
                f"masking.mask_replace_prob + masking.random_replace_prob must be <= 1, got "
                f"{self.mask_replace_prob} + {self.random_replace_prob}"
            )
        _check_positive("masking.span_length", self.span_length, allow_zero=True)


@dataclass
class PretrainTrainConfig(OptimizationConfig):
    """Optimisation and budget of a pretraining run (steps and/or wall-clock minutes)."""

    max_steps: int = 1000
    """Optimiser steps; also the length of the linear learning-rate schedule."""
    max_minutes: Optional[float] = None
    """Stop earlier, and still save the model, once this invocation has trained this long."""
    batch_size: int = 64
    """Global windows per forward pass (split across processes); with `batch_tokens`, the average
    batch the length-bucketing pools are sized for."""
    batch_tokens: Optional[int] = None
    """Global token budget per forward pass, padding included (split across processes): each
    length-bucketed batch takes as many windows as fit, so short windows come in bigger batches and
    every step does a similar amount of work. Empty: fixed `batch_size` windows."""
    eval_batch_size: int = 128
    lr: float = 5e-4
    warmup_fraction: float = 0.05
    """Fraction of `max_steps` spent in linear warm-up."""
    eval_every_steps: int = 250
    """Validation perplexity every N steps (0: only at the end)."""
    checkpoint_every_steps: int = 250
    """accelerate checkpoint every N steps for resume (0: never)."""

    def __post_init__(self):
        super().__post_init__()
        for flag in ("max_steps", "batch_size", "eval_batch_size"):
            _check_positive(f"train.{flag}", getattr(self, flag))
        _check_positive("train.lr", self.lr)
        if self.max_minutes is not None:
            _check_positive("train.max_minutes", self.max_minutes)
        if self.batch_tokens is not None:
            _check_positive("train.batch_tokens", self.batch_tokens)
        _check_fraction("train.warmup_fraction", self.warmup_fraction, upper_inclusive=False)
        for flag in ("eval_every_steps", "checkpoint_every_steps"):
            _check_positive(f"train.{flag}", getattr(self, flag), allow_zero=True)


@dataclass
class PretrainConfig(RunConfig):
    """Everything one masked-LM pretraining run needs.

    ``model.name_or_path`` empty builds a fresh backbone of ``model.arch`` (plus MLM head) from the
    size fields; a Hub id or folder continues pretraining from those weights.
    """

    output_dir: str = "runs/pretrain"
    """Run folder: checkpoints while training, then a `save_pretrained` model + tokenizer, metrics.json."""
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    train: PretrainTrainConfig = field(default_factory=PretrainTrainConfig)

    def __post_init__(self):
        if not self.corpus.train_files:
            raise ValueError("corpus.train_files is empty; give FASTA files, e.g. corpus.train_files=genome.fa.gz")
