"""Typed run configuration: dataclasses validated once, loaded from YAML plus ``key=value`` overrides.

A config file mirrors the dataclass tree::

    # recipes/configs/promoter_lora.yaml
    data:
      path: ../shared/data/promoter/gue_prom_core_all
    train:
      lr: 1.0e-3

and any field can be overridden from the command line as ``train.lr=3e-4 adapter.r=16``.
Unknown keys are errors that name the key and list the valid ones.

Example:
    >>> cfg = load_config(FinetuneConfig, None, ["train.epochs=1", "adapter.r=4"])
    >>> cfg.train.epochs, cfg.adapter.r
    (1, 4)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

import yaml

__all__ = [
    "DataConfig",
    "ModelConfig",
    "AdapterConfig",
    "LoraConfig",
    "OptimizationConfig",
    "RunConfig",
    "TrainConfig",
    "FinetuneConfig",
    "load_config",
    "current_key",
    "config_to_dict",
    "parse_overrides",
    "RECIPE_CONFIGS",
    "recipe_config_class",
]

logger = logging.getLogger(__name__)

PROBLEM_TYPES = ("auto", "binary", "multiclass", "multilabel", "regression", "token_classification")
ALPHABETS = ("auto", "dna", "protein")
ARCHITECTURES = ("bert", "esm")
"""Families gr-ft builds fresh from a config (gr_ft.backbones.buildable_architectures(); a test keeps them equal)."""
POOLINGS = ("mean", "cls")
ADAPTER_METHODS = ("lora", "dora", "ia3", "full")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def _check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{flag} must be one of {list(choices)}, got {value!r}")


def _check_positive(flag: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{flag} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


@dataclass
class DataConfig:
    """Where the labelled sequences come from and how labels are read."""

    path: str = "synthetic:promoter"
    """A dataset folder with train/dev/test files, one file (split by `dev_fraction`/`test_fraction`),
    a Hugging Face Hub dataset id, or `synthetic:<task>` for the built-in generator."""
    sequence_column: str = "sequence"
    """Column holding the sequence (CSV/TSV/parquet/JSONL)."""
    label_column: str = "label"
    """Column holding the label; for FASTA, the header field `label=<value>`."""
    labels_file: Optional[str] = None
    """For FASTA input: a CSV/TSV with columns `id,label` giving each record's label by its id."""
    problem_type: str = "auto"
    """auto, binary, multiclass, multilabel, regression or token_classification (per-position labels)."""
    alphabet: str = "auto"
    """dna (ACGTN), protein (20 amino acids plus X B Z U O) or auto (from the tokenizer)."""
    max_length: int = 512
    """Maximum tokens per sequence, special tokens included; longer sequences are cut (see `crop`)."""
    crop: str = "start"
    """Which part of an over-long sequence to keep: start, end, center, ends (the first and last halves
    joined, as DeepLoc does, keeping both N- and C-terminal signals), or random (training sees a new random
    window each epoch; dev and test use the centre window; k-mer, nucleotide and residue tokenizers)."""
    multilabel_separator: str = ";"
    """Separator between label names in a multilabel label cell (e.g. `Nucleus;Cytoplasm`)."""
    dev_fraction: float = 0.1
    """Fraction of train held out as dev when no dev split exists."""
    test_fraction: float = 0.1
    """Fraction of train held out as test when no test split exists."""
    synthetic_size: int = 3000
    """Training examples drawn for `synthetic:<task>` data (dev and test get a quarter each)."""
    max_train_rows: Optional[int] = None
    """Use at most this many train rows (a sample seeded by `train.seed`, drawn after any dev/test carving);
    empty: all. For quick sweeps on large sets; dev and test are never capped."""
    folds: int = 0
    """K >= 2: K-fold cross-validation instead of one run. train and dev are pooled and split into K folds of
    whole similarity clusters (gr_ft.folds); run N uses fold N as dev, writes output_dir/fold_N, and
    output_dir/folds_summary.json gets the mean ± sd over folds. 0: the given train/dev split."""
    check: bool = True
    """Run the cheap data checks (counts, duplicates on both strands, shortcut AUROCs on <= 5000 rows per split)
    before training and store them in metrics.json under `data_checks` (full report: `gr-ft check-data`)."""
    cache: bool = True
    """Keep encoded (tokenized) splits on disk, keyed by a fingerprint of the rows, the tokenizer, `max_length`,
    `crop` and the labels, so a re-run skips tokenization (`encoded/` under `$GRFT_CACHE_DIR`, default
    `~/.cache/gr-ft`; numpy .npz, no pickle). A damaged entry is rebuilt. false: tokenize every time, write nothing."""

    def __post_init__(self):
        _check_choice("data.problem_type", self.problem_type, PROBLEM_TYPES)
        _check_choice("data.alphabet", self.alphabet, ALPHABETS)
        _check_choice("data.crop", self.crop, ("start", "end", "center", "ends", "random"))
        if self.crop == "ends" and self.problem_type == "token_classification":
            raise ValueError("data.crop=ends splices two segments together; per-position labels need start, end or center")
        _check_positive("data.max_length", self.max_length)
        _check_positive("data.synthetic_size", self.synthetic_size)
        if self.folds == 1 or self.folds < 0:
            raise ValueError(f"data.folds must be 0 (no cross-validation) or >= 2, got {self.folds}")
        if self.max_train_rows is not None:
            _check_positive("data.max_train_rows", self.max_train_rows)
        for flag in ("dev_fraction", "test_fraction"):
            value = getattr(self, flag)
            if not 0 <= value < 0.5:
                raise ValueError(f"data.{flag} must be in [0, 0.5), got {value}")


@dataclass
class ModelConfig:
    """The backbone: a pretrained masked LM (Hub id or local folder) or one built from a config."""

    name_or_path: Optional[str] = None
    """Hub id (`InstaDeepAI/nucleotide-transformer-v2-50m-multi-species`) or local folder; empty builds
    a fresh backbone of `arch` from the size fields below."""
    revision: Optional[str] = None
    """Hub revision (branch, tag or commit) to pin."""
    tokenizer: Optional[str] = None
    """Tokenizer: a built-in name (kmer3..kmer6, nucleotide, protein, bpe), a folder or a Hub id.
    Defaults to the model's own tokenizer, or `kmer6` for a fresh DNA backbone."""
    trust_remote_code: bool = False
    """Run model code downloaded with the checkpoint (DNABERT-2, NT v2). Only enable for sources you trust."""
    arch: str = "bert"
    """Architecture of a fresh backbone: bert (DNABERT-style) or esm (ESM-2 / Nucleotide Transformer)."""
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    max_position_embeddings: int = 1026
    dropout: Optional[float] = None
    """Hidden-state dropout inside the backbone. Empty: 0.1 for a fresh backbone, and a loaded checkpoint keeps its
    own value (set it to compare a pretrained and a fresh backbone at the same dropout)."""
    attention_dropout: float = 0.0
    """Dropout on attention probabilities (fresh and loaded backbones). Keep it 0: any attention dropout forces
    PyTorch's SDPA off its fused kernels onto the math path, which materialises every attention matrix
    (measured on CPU, ESM 6x320, 4 x 1002 tokens: 5.9x slower and 7.2 vs 1.3 GB)."""
    pooling: str = "mean"
    """How a sequence embedding is pooled from token states: mean (over real tokens) or cls."""
    head_dropout: float = 0.1

    def __post_init__(self):
        _check_choice("model.arch", self.arch, ARCHITECTURES)
        _check_choice("model.pooling", self.pooling, POOLINGS)
        for flag in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings"):
            _check_positive(f"model.{flag}", getattr(self, flag))
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"model.hidden_size ({self.hidden_size}) must be divisible by model.num_heads ({self.num_heads})"
            )
        for flag in ("dropout", "head_dropout", "attention_dropout"):
            if getattr(self, flag) is not None and not 0 <= getattr(self, flag) < 1:
                raise ValueError(f"model.{flag} must be in [0, 1), got {getattr(self, flag)}")


@dataclass
class AdapterConfig:
    """How the backbone is fine-tuned (the config section ``adapter``, formerly ``lora``): LoRA, DoRA, IA3 through
    peft, or every weight.

    Named for what it selects; not to be confused with ``peft.LoraConfig``, which gr_ft.adapters builds from it.
    """

    method: str = "lora"
    """lora, dora (weight-decomposed LoRA), ia3, or full (train every weight)."""
    r: int = 8
    """LoRA rank."""
    alpha: int = 16
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.05
    target_modules: Optional[list[str]] = None
    """Module names to adapt; empty picks them per architecture (query/key/value projections)."""

    def __post_init__(self):
        _check_choice("adapter.method", self.method, ADAPTER_METHODS)
        _check_positive("adapter.r", self.r)
        _check_positive("adapter.alpha", self.alpha)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"adapter.dropout must be in [0, 1), got {self.dropout}")


LoraConfig = AdapterConfig
"""Old name of :class:`AdapterConfig` (kept so existing imports work)."""


@dataclass
class OptimizationConfig:
    """The ``train.*`` knobs fine-tuning and pretraining share (one definition each): seed, optimiser, precision,
    logging."""

    seed: int = 0
    weight_decay: float = 0.01
    grad_accum_steps: int = 1
    max_grad_norm: float = 1.0
    precision: str = "auto"
    """auto, bf16, fp16 (GPU only) or fp32. auto is bf16 where it is faster: CUDA with bf16 (fp16 on older
    GPUs), CPUs with AMX, or a CPU whose cached bf16 matmul probe beats fp32; else fp32. The run folder records
    what ran."""
    log_every_steps: int = 20
    """Optimiser steps between logged training losses."""
    tracker: Optional[str] = None
    """accelerate tracker for logs (tensorboard, wandb, ...); none by default."""

    def __post_init__(self):
        _check_choice("train.precision", self.precision, PRECISIONS)
        for flag in ("grad_accum_steps", "log_every_steps"):
            _check_positive(f"train.{flag}", getattr(self, flag))
        for flag in ("weight_decay", "max_grad_norm"):
            _check_positive(f"train.{flag}", getattr(self, flag), allow_zero=True)


@dataclass
class TrainConfig(OptimizationConfig):
    """Optimisation, batching, precision and checkpointing of a fine-tuning run."""

    epochs: int = 5
    max_steps: Optional[int] = None
    """Stop after this many optimiser steps (overrides epochs when set)."""
    batch_size: int = 32
    """Global batch size (split across processes, so 1 and N processes see the same batches)."""
    eval_batch_size: int = 64
    lr: float = 3e-3
    """Peak learning rate. The default suits LoRA. For adapter.method=full: ~5e-5 on a pretrained backbone (the usual
    BERT-size value); a small backbone trained from random init wants more (measured here: 5e-4 in
    docs/results.md, 3.8e-3 best of a sweep on a 2 x 64 model in docs/rigor.md)."""
    warmup_fraction: float = 0.06
    """Fraction of the optimiser steps spent in linear warm-up."""
    bucket_by_length: bool = True
    """Batch sequences of similar length together to cut padding."""
    batch_tokens: Optional[int] = None
    """Cap each training batch at this many padded tokens (rows x longest row) instead of a fixed row count:
    batches of long sequences get fewer rows, batches of short ones more, up to batch_size rows. Batches are
    formed once from length-sorted rows and served in a new seeded order every epoch (as fairseq does)."""
    packing: bool = False
    """Pack each training batch's sequences into one row with no padding: attention stays within each sequence,
    positions restart per sequence, pooling and loss are per sequence (gr_ft/packing.py). batch_size still counts
    sequences; with batch_tokens, each batch holds at most that many real tokens. Packed batches come in a random
    order (no length grouping needed). For backbones whose attention runs through transformers' attention
    interface with position ids: esm (ESM-2/1b, NT v1), nucleotide_transformer_v2, bert (DNABERT), protbert;
    another family is refused when the model loads, naming these. Dev and test batches stay unpacked."""
    gradient_checkpointing: bool = False
    """Recompute the backbone's activations in the backward pass instead of storing them: less memory for
    long sequences, about a third more compute per step."""
    class_weighting: str = "none"
    """none or balanced (inverse class frequency) for imbalanced classification."""
    eval_every_epochs: int = 1
    checkpoint_every_steps: int = 0
    """Also checkpoint every N optimiser steps (0: only at epoch ends)."""
    patience: int = 0
    """Stop after this many evaluations without a dev improvement (0: never stop early)."""

    def __post_init__(self):
        super().__post_init__()
        _check_choice("train.class_weighting", self.class_weighting, ("none", "balanced"))
        for flag in ("epochs", "batch_size", "eval_batch_size", "eval_every_epochs"):
            _check_positive(f"train.{flag}", getattr(self, flag))
        _check_positive("train.lr", self.lr)
        if self.max_steps is not None:
            _check_positive("train.max_steps", self.max_steps)
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"train.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        for flag in ("checkpoint_every_steps", "patience"):
            _check_positive(f"train.{flag}", getattr(self, flag), allow_zero=True)
        if self.batch_tokens is not None:
            _check_positive("train.batch_tokens", self.batch_tokens)


@dataclass
class RunConfig:
    """Where a recipe writes its run folder and what it does with one that is already there (every recipe's
    config derives from this; each sets its own default folder)."""

    output_dir: Optional[str] = None
    """Run folder: checkpoints while training, then the finished run."""
    overwrite: bool = False
    """Replace a finished run in output_dir (never done silently)."""
    resume: bool = True
    """Resume from output_dir/checkpoints/last when a previous run of this config was interrupted."""


@dataclass
class FinetuneConfig(RunConfig):
    """Everything one fine-tuning run needs. The defaults are the built-in demo job."""

    RENAMED: ClassVar[dict[str, str]] = {"lora": "adapter"}
    """The adapter section was called ``lora`` although it also selects DoRA, IA3 and full fine-tuning."""

    output_dir: str = "runs/demo"
    """Run folder: checkpoints while training, then metrics.json, adapter/, tokenizer/, label_map.json."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    push_to_hub: bool = False
    hub_repo_id: Optional[str] = None

    def __post_init__(self):
        if self.push_to_hub and not self.hub_repo_id:
            raise ValueError("push_to_hub=true needs hub_repo_id=<user>/<repo>")


# ---------------------------------------------------------------- loading


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["train.lr=3e-4", "adapter.r=16"]`` into a nested dict; values are parsed as YAML scalars.

    Example:
        >>> parse_overrides(["train.lr=3e-4", "model.name_or_path=null"])
        {'train': {'lr': 0.0003}, 'model': {'name_or_path': None}}
    """
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value (e.g. train.lr=3e-4)")
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is a value, not a section")
        node[leaf] = _parse_scalar(raw)
    return nested


def _parse_scalar(raw: str) -> Any:
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    # "1e-3" is a string to YAML 1.1; users mean a float.
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            return value
    return value


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(cls: type, path: Optional[str | Path], overrides: Optional[list[str]] = None):
    """Build a validated config of dataclass ``cls`` from a YAML file (or the defaults) and overrides.

    Example:
        >>> load_config(FinetuneConfig, "recipes/configs/demo.yaml", ["train.seed=1"]).train.seed
        1
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {path} does not exist")
        raw = load_yaml_file(path) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"config file {path} must hold a mapping of sections, got {type(raw).__name__}")
    # old key names are mapped in each source before merging, so `adapter.r=4` on the command line still
    # overrides an `adapter:` section of the file
    raw = _merge(_renamed_tree(cls, raw, ""), _renamed_tree(cls, parse_overrides(list(overrides or [])), ""))
    return _from_dict(cls, raw, prefix="")


def recipe_arg_parser(prog: str, doc: str, examples: str, config_help: str,
                      overrides_example: str) -> argparse.ArgumentParser:
    """The command line every recipe shares: ``--config FILE`` and ``key=value`` overrides.

    Parse with ``parser.parse_intermixed_args(argv)``, so that overrides may come before or after ``--config``.

    Example:
        >>> parser = recipe_arg_parser("gr-ft pretrain", __doc__, EXAMPLES, "YAML config", "train.max_steps=500")
        >>> parser.parse_intermixed_args(["train.seed=1", "--config", "a.yaml"]).overrides
        ['train.seed=1']
    """
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0], epilog=examples,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help=config_help)
    parser.add_argument("overrides", nargs="*", help=f"key=value overrides, e.g. {overrides_example}")
    return parser


def load_yaml_file(path: str | Path) -> Any:
    """Parse a YAML file; a syntax error names the file and line and says what to fix (not a yaml traceback).

    Example:
        >>> load_yaml_file("recipes/configs/demo.yaml")["train"]["epochs"]
        5
    """
    try:
        with open(path) as handle:
            return yaml.safe_load(handle)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{path} does not parse as YAML{where}: {problem}; check the brackets, quotes and "
                         f"indentation there (sections are `name:` lines, fields are indented under them)") from None


def _from_dict(cls: type, raw: dict[str, Any], prefix: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    raw = _renamed_keys(cls, raw, prefix)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f" in section {prefix.rstrip('.')!r}" if prefix else ""
        raise ValueError(f"unknown config key(s) {[prefix + k for k in unknown]}{where}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"config section {prefix + name!r} must be a mapping, got {value!r}")
            kwargs[name] = _from_dict(hint, value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(prefix + name, value, hint)
    return cls(**kwargs)


def _renamed_tree(cls: type, raw: Any, prefix: str) -> Any:
    """``raw`` with the old key names of ``cls`` and of its sections mapped to the new ones."""
    if not isinstance(raw, dict):
        return raw
    raw = _renamed_keys(cls, raw, prefix)
    hints = typing.get_type_hints(cls)
    return {key: _renamed_tree(hints[key], value, f"{prefix}{key}.") if dataclasses.is_dataclass(hints.get(key))
            else value for key, value in raw.items()}


def current_key(cls: type, dotted: str) -> str:
    """A dotted key with any old names in it replaced by the current ones.

    Example:
        >>> current_key(FinetuneConfig, "lora.r")
        'adapter.r'
    """
    parts, node = [], cls
    for part in dotted.split("."):
        part = getattr(node, "RENAMED", {}).get(part, part) if dataclasses.is_dataclass(node) else part
        parts.append(part)
        node = typing.get_type_hints(node).get(part) if dataclasses.is_dataclass(node) else None
    return ".".join(parts)


def _renamed_keys(cls: type, raw: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Old key names a config class still accepts (its ``RENAMED`` map, old -> new), with a deprecation warning."""
    renamed: dict[str, str] = getattr(cls, "RENAMED", {})
    if not any(old in raw for old in renamed):
        return raw
    raw = dict(raw)
    for old, new in renamed.items():
        if old not in raw:
            continue
        if new in raw:
            raise ValueError(f"{prefix}{old} and {prefix}{new} are the same setting ({prefix}{old} is its old name); "
                             f"give only {prefix}{new}")
        logger.warning("config key %s%s is now %s%s; the old name still works but will go", prefix, old, prefix, new)
        raw[new] = raw.pop(old)
    return raw


def _coerce(flag: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(flag, value, args[0])
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ValueError(f"{flag} must be a list, got {value!r}")
        return [str(v) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{flag} must be true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{flag} must be a number, got {value!r}")
        if not math.isfinite(value):  # YAML reads .nan / .inf as floats; no field means them
            raise ValueError(f"{flag} must be a finite number, got {value!r}")
        if hint is int and float(value) != int(value):
            raise ValueError(f"{flag} must be a whole number, got {value!r}")
        return hint(value)
    if hint is str:
        if value is None or isinstance(value, (dict, list)):
            raise ValueError(f"{flag} must be a string, got {value!r}")
        return str(value)
    return value


def config_to_dict(cfg) -> dict[str, Any]:
    """The config as plain nested dicts (for YAML/JSON)."""
    return dataclasses.asdict(cfg)


def save_config(cfg, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    with open(path, "w") as handle:
        yaml.safe_dump(config_to_dict(cfg), handle, sort_keys=False)


# ---------------------------------------------------------------- which config class a recipe reads

RECIPE_CONFIGS: dict[str, str] = {
    "finetune_lora": "gr_ft.config:FinetuneConfig",
    "meta_reptile": "gr_ft.meta.config:MetaTrainConfig",
    "meta_protonet": "gr_ft.meta.config:MetaTrainConfig",
    "pretrain_mlm": "gr_ft.pretraining.config:PretrainConfig",
}
"""Recipe script (``recipes/<name>.py``) -> its config dataclass, as ``module:Class`` (imported on use)."""
_RECIPE_IN_HEADER = re.compile(r"recipes/(\w+)\.py")


def recipe_config_class(config_path: str | Path) -> type:
    """The config dataclass of a recipe config file, found from the command in its header comment.

    A header naming no recipe script (e.g. ``gr-ft finetune --config ...``) means the fine-tuning recipe.

    Example:
        >>> recipe_config_class("recipes/configs/meta_reptile_yeast.yaml").__name__
        'MetaTrainConfig'
    """
    header = [line for line in Path(config_path).read_text().splitlines()[:20] if line.startswith("#")]
    found = next((m.group(1) for line in header for m in [_RECIPE_IN_HEADER.search(line)] if m), "finetune_lora")
    if found not in RECIPE_CONFIGS:
        raise ValueError(f"{config_path}: its header runs recipes/{found}.py, which has no registered config class; "
                         f"register it in gr_ft.config.RECIPE_CONFIGS (known: {sorted(RECIPE_CONFIGS)})")
    module, name = RECIPE_CONFIGS[found].split(":")
    return getattr(importlib.import_module(module), name)
