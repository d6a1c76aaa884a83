"""``gr-ft adapt``: a few labelled examples of a new task (cell type, mark, TF) -> an adapted run folder.

From any finished run folder (meta-trained or not) and a small support CSV (``sequence,label``):

* ``finetune`` (Reptile and plain runs): a few optimiser steps on the support set, starting from
  the run's LoRA factors and head (the meta-learned initialisation for Reptile);
* ``protonet`` (ProtoNet runs): class prototypes from the support set become the head. With the
  squared euclidean distance, ``-||q - mu_c||^2 = 2 mu_c.q - ||mu_c||^2 - ||q||^2`` and the last
  term is the same for every class, so a linear head ``W_c = 2 mu_c``, ``b_c = -||mu_c||^2``
  (over the temperature) gives exactly the prototype classifier's softmax: ``gr_ft.load_run``
  then predicts with the prototypes like with any head. ``--steps`` > 0 fine-tunes from there;
  on a Reptile run, ``--method protonet --steps N`` is Proto-MAML's initialisation (meta-learned
  adapter, prototype head), which suits a new task whose classes mean something else.

The adapted folder is a normal run folder (``metrics.json`` holds the score on ``--eval-data``,
the support counts and the adaptation settings). Every input is checked before anything is
written, and the folder appears in one rename.

Example:
    >>> metrics = adapt_run("runs/meta_reptile_yeast", "h3_support.csv", "runs/h3_adapted",
    ...                     eval_data="../shared/data/fewshot/gue_emp_yeast/H3", k_shot=16)
    >>> metrics["eval"]["mcc"]
    0.41
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
import torch
from peft import PeftModel
from torch import nn

from ..evaluation import MetricAccumulator
from ..io import SPLIT_ALIASES, read_table, validate_sequences
from ..labels import LabelSpec, check_no_empty_labels
from ..backbones.record import BaseModelRecord
from ..run_folder import load_model_for_run, resolve_run_dir, write_run
from .episodes import encode_labeled_sequences, split_batch
from .distributed import device_of
from .prototype_head import embed_sequences, init_prototype_head, prototype_head_weights, set_prototype_head
from .reptile import INNER_OPTIMIZERS, inner_loop
from .recipe import META_FILE, MetaRecord, read_meta_record

__all__ = [
    "ADAPT_METHODS",
    "adapt_run",
    "adapt_main",
    "read_support",
    "read_eval_data",
    "make_adapter_trainable",
    "finetune_on_support",
    "prototype_head_weights",
    "set_prototype_head",
    "init_prototype_head",
    "embed_sequences",
    "score_sequences",
]

logger = logging.getLogger(__name__)

ADAPT_METHODS = ("auto", "finetune", "protonet")
DEFAULT_STEPS = 30
"""Fine-tuning steps when neither --steps nor the run's meta.json gives them."""


# ---------------------------------------------------------------- inputs


def _read_labelled(path: Path, alphabet: str, sequence_column: str, label_column: str) -> pd.DataFrame:
    frame = read_table(path, label_column)
    if label_column not in frame.columns:
        columns = [c for c in frame.columns if c != "_line"]
        raise ValueError(f"{path}: no {label_column!r} column; found {columns}. Give a CSV with columns "
                         f"{sequence_column},{label_column}")
    frame = validate_sequences(frame, alphabet, str(path), sequence_column)
    frame[label_column] = frame[label_column].astype(str).str.strip()
    check_no_empty_labels(frame[label_column], [f"{path}:{line}" for line in frame["_line"]])
    return frame


def _check_known_labels(frame: pd.DataFrame, names: Sequence[str], source: Path, label_column: str) -> None:
    for label, line in zip(frame[label_column], frame["_line"]):
        if label not in names:
            raise ValueError(f"{source}:{line}: unknown label {label!r}; this run knows {list(names)}. "
                             f"Fix the label, or pass --new-labels if the new task names its classes differently")


def read_support(path: str | Path, names: Sequence[str], alphabet: str = "dna", k_shot: Optional[int] = None,
                 seed: int = 0, *, sequence_column: str = "sequence", label_column: str = "label") -> pd.DataFrame:
    """The support set: validated rows of every class in ``names``, ``k_shot`` per class if given (seeded).

    Errors name the file: a label the run does not know, a class with no example, fewer than
    ``k_shot`` examples of a class.

    Example:
        >>> read_support("h3_support.csv", ["0", "1"], k_shot=4)["label"].value_counts().tolist()
        [4, 4]
    """
    path = Path(path)
    frame = _read_labelled(path, alphabet, sequence_column, label_column)
    _check_known_labels(frame, names, path, label_column)
    frame = frame.drop_duplicates(sequence_column).reset_index(drop=True)
    counts = frame[label_column].value_counts().to_dict()
    empty = [name for name in names if counts.get(name, 0) == 0]
    if empty:
        raise ValueError(f"{path}: class(es) {empty} have no support example (found {counts}); every class of the "
                         f"run {list(names)} needs at least one labelled sequence")
    if k_shot is not None:
        if k_shot < 1:
            raise ValueError(f"--k-shot must be >= 1, got {k_shot}")
        short = {name: counts[name] for name in names if counts[name] < k_shot}
        if short:
            raise ValueError(f"{path}: too few examples for --k-shot {k_shot}: {short}; give more examples or "
                             f"lower --k-shot")
        frame = pd.concat([frame[frame[label_column] == name].sample(n=k_shot, random_state=seed) for name in names])
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # mix classes within mini-batches


def read_eval_data(path: str | Path, names: Sequence[str], alphabet: str = "dna", split: str = "test",
                   exclude: Sequence[str] = (), *, max_rows: Optional[int] = None, seed: int = 0,
                   sequence_column: str = "sequence", label_column: str = "label") -> pd.DataFrame:
    """Labelled rows to score: a file, or one split of a task folder; support sequences are dropped.

    Example:
        >>> read_eval_data("../shared/data/fewshot/gue_emp_yeast/H3", ["0", "1"], max_rows=500).shape
        (500, 3)
    """
    path = Path(path)
    if path.is_dir():
        aliases = SPLIT_ALIASES.get(split, (split,))
        matches = sorted(p for alias in aliases for p in path.glob(f"{alias}.*") if p.is_file())
        if not matches:
            found = sorted(p.name for p in path.iterdir() if p.is_file())
            raise ValueError(f"--eval-data {path} has no {split} split (a file such as {split}.csv.gz); found {found}")
        path = matches[0]
    elif not path.is_file():
        raise ValueError(f"--eval-data {path} does not exist; give a labelled file or a task folder")
    frame = _read_labelled(path, alphabet, sequence_column, label_column)
    _check_known_labels(frame, names, path, label_column)
    overlap = frame[sequence_column].isin(set(exclude))
    if overlap.any():
        logger.info("%s: %d rows are support examples; not scored", path, int(overlap.sum()))
    frame = frame[~overlap]
    if frame.empty:
        raise ValueError(f"--eval-data {path} has no rows left to score once the support examples are removed")
    if max_rows is not None and len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed)
    return frame.reset_index(drop=True)


# ---------------------------------------------------------------- adapting a model in memory


def make_adapter_trainable(model: nn.Module) -> list[str]:
    """Let the adapter and head of a reloaded run train again (peft reloads adapters frozen); returns their names.

    A full fine-tuning run (no adapter) trains every weight.

    Example:
        >>> model, tokenizer, spec, cfg = load_model_for_run("runs/demo")
        >>> any("lora_" in name for name in make_adapter_trainable(model))
        True
    """
    if isinstance(model, PeftModel):
        prefix = model.base_model.prefix  # "lora_", "ia3_"
        for name, param in model.named_parameters():
            param.requires_grad_(prefix in name or ".modules_to_save." in name)
    else:
        model.requires_grad_(True)
    return [name for name, param in model.named_parameters() if param.requires_grad]


def finetune_on_support(model: nn.Module, tokenizer, sequences: Sequence[str], labels: Sequence[int], steps: int,
                        lr: float, *, max_length: int, crop: str = "start", batch_size: int = 32,
                        optimizer: str = "adam") -> list[float]:
    """``steps`` optimiser steps on the support set (mini-batches cycled); returns the losses.

    ``optimizer`` is Reptile's inner optimiser (``adam`` has beta1 = 0), so a Reptile run adapts as
    it was meta-trained to. The model is left in eval mode.

    Example:
        >>> finetune_on_support(model, tokenizer, ["ACGT" * 25] * 2, [0, 1], steps=5, lr=1e-3, max_length=128)[-1]
        0.52
    """
    if steps < 1:
        return []
    if optimizer not in INNER_OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {sorted(INNER_OPTIMIZERS)}")
    support = encode_labeled_sequences(tokenizer, list(sequences), list(labels), max_length, crop)
    batches = split_batch(support, batch_size)
    build = INNER_OPTIMIZERS[optimizer]
    losses = inner_loop(model, lambda params: build(params, lr), batches, steps)
    model.eval()
    return losses


@torch.no_grad()
def score_sequences(model: nn.Module, tokenizer, sequences: Sequence[str], labels: Sequence[int], problem_type: str,
                    num_labels: int, *, max_length: int, crop: str = "start", batch_size: int = 64) -> dict[str, float]:
    """Metrics (mcc, accuracy, auroc, ...) of the model's head on labelled sequences, in eval mode.

    Example:
        >>> score_sequences(model, tokenizer, seqs, [0, 1, 1], "binary", 2, max_length=128)["mcc"]
        0.5
    """
    model.eval()
    accumulator = MetricAccumulator(problem_type, num_labels)
    device = device_of(model)
    for start in range(0, len(sequences), batch_size):
        batch = encode_labeled_sequences(tokenizer, list(sequences[start:start + batch_size]),
                                         list(labels[start:start + batch_size]), max_length, crop)
        logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
        accumulator.add_batch(logits["logits"].float().cpu(), batch["labels"])
    return accumulator.compute()


# ---------------------------------------------------------------- a run folder in, an adapted run folder out


def _resolve_method(method: str, record: Optional[MetaRecord]) -> str:
    if method not in ADAPT_METHODS:
        raise ValueError(f"--method must be one of {list(ADAPT_METHODS)}, got {method!r}")
    if method != "auto":
        return method
    return "protonet" if record is not None and record.method == "protonet" else "finetune"


def _adapted_spec(spec: LabelSpec, record: Optional[MetaRecord], support_labels: Sequence[str],
                  new_labels: bool = False) -> LabelSpec:
    """The run's label map, or the support's sorted classes for a task with labels of its own.

    The support's classes take the head's outputs in sorted order when the meta run was trained on
    tasks with different labels (its outputs are episode classes), or when ``new_labels`` says the
    new task names its classes differently (e.g. ``HepG2``/``K562`` after meta-training on ``0``/``1``).
    """
    if spec.problem_type not in ("binary", "multiclass"):
        raise ValueError(f"gr-ft adapt handles classification runs; this run is {spec.problem_type}")
    episode_classes = record is not None and record.classes is None
    if not (episode_classes or new_labels):
        return spec
    names = sorted(set(support_labels))
    if len(names) != spec.num_labels:
        raise ValueError(f"this run's head has {spec.num_labels} outputs; the support set has {len(names)} classes "
                         f"{names}. Give a support set with {spec.num_labels} classes")
    return LabelSpec(spec.problem_type, names, spec.separator)


@dataclass
class AdaptRequest:
    """What ``gr-ft adapt`` was asked to do (the flags of :func:`adapt_run`)."""

    run_dir: str
    support_csv: str
    out_dir: str
    eval_data: Optional[str] = None
    k_shot: Optional[int] = None
    steps: Optional[int] = None
    lr: Optional[float] = None
    method: str = "auto"
    batch_size: int = 32
    eval_split: str = "test"
    max_eval: Optional[int] = None
    seed: int = 0
    new_labels: bool = False
    overwrite: bool = False
    trust_remote_code: bool = False


@dataclass
class SourceRun:
    """The run being adapted, reloaded: its model, tokenizer, label map, config and meta-training record."""

    path: Path
    model: nn.Module
    tokenizer: object
    spec: LabelSpec
    cfg: object
    record: Optional[MetaRecord]


def _read_inputs(request: AdaptRequest, source: SourceRun):
    """(label map, support rows, evaluation rows or None), every input checked before anything is written."""
    cfg, alphabet = source.cfg, source.tokenizer.alphabet
    columns = {"sequence_column": cfg.data.sequence_column, "label_column": cfg.data.label_column}
    raw = _read_labelled(Path(request.support_csv), alphabet, **columns)
    spec = _adapted_spec(source.spec, source.record, raw[cfg.data.label_column].tolist(), request.new_labels)
    support = read_support(request.support_csv, spec.names, alphabet, request.k_shot, request.seed, **columns)
    evaluation = None
    if request.eval_data is not None:
        evaluation = read_eval_data(request.eval_data, spec.names, alphabet, request.eval_split,
                                    support[cfg.data.sequence_column], max_rows=request.max_eval, seed=request.seed,
                                    **columns)
    return spec, support, evaluation


def _adapt_model(source: SourceRun, spec: LabelSpec, method: str, support: pd.DataFrame, steps: int, *, lr: float,
                 batch_size: int) -> list[float]:
    """Prototypes into the head (protonet), then ``steps`` fine-tuning steps; returns the losses.

    A ProtoNet run's prototypes use its meta-learned distance and temperature; on any other run
    (Reptile, plain fine-tuning) the temperature is calibrated on the support set.
    """
    model, tokenizer, cfg, record = source.model, source.tokenizer, source.cfg, source.record
    sequences = support[cfg.data.sequence_column].tolist()
    labels = [spec.id_of[label] for label in support[cfg.data.label_column]]
    if method == "protonet":
        meta_learned = record is not None and record.method == "protonet"
        init_prototype_head(model, tokenizer, sequences, labels, spec.num_labels, max_length=cfg.data.max_length,
                            crop=cfg.data.crop, distance=record.distance if meta_learned else "euclidean",
                            temperature=record.temperature if meta_learned else None)
    make_adapter_trainable(model)
    return finetune_on_support(model, tokenizer, sequences, labels, steps, lr, max_length=cfg.data.max_length,
                               crop=cfg.data.crop, batch_size=batch_size)


def adapt_run(run_dir: str | Path, support_csv: str | Path, out_dir: str | Path, **options) -> dict:
    """Adapt a run folder to a new task from its support CSV; write the adapted run and its metrics.

    ``steps``/``lr`` default to the run's ``meta.json`` (Reptile: its adaptation steps and inner
    learning rate; ProtoNet: 0 steps) or to 30 steps at the run's ``train.lr``. ``new_labels``: the
    support's classes (sorted) take over the head's outputs, for a task that names its classes differently.
    ``options`` are the fields of :class:`AdaptRequest` (eval_data, k_shot, steps, lr, method, batch_size,
    eval_split, max_eval, seed, new_labels, overwrite, trust_remote_code).

    Example:
        >>> adapt_run("runs/meta_protonet_yeast", "h4_support.csv", "runs/h4", eval_data="data/yeast/H4")["eval"]["mcc"]
        0.38
    """
    started = time.time()
    request = AdaptRequest(str(run_dir), str(support_csv), str(out_dir), **options)
    path, out = resolve_run_dir(request.run_dir), Path(request.out_dir)
    if out.resolve() == Path(path).resolve():
        raise ValueError(f"out_dir {out} is the source run; choose a new folder")
    if (out / "metrics.json").exists() and not request.overwrite:
        raise ValueError(f"out_dir {out} already holds a finished run; choose another folder or pass --overwrite")
    source = SourceRun(Path(path), *load_model_for_run(path, trust_remote_code=request.trust_remote_code),
                       record=read_meta_record(path))
    record, cfg = source.record, source.cfg
    method = _resolve_method(request.method, record)
    spec, support, evaluation = _read_inputs(request, source)
    steps = request.steps if request.steps is not None else (record.adapt_steps if record else DEFAULT_STEPS)
    lr = request.lr if request.lr is not None else (record.adapt_lr if record else cfg.train.lr)
    batch_size = request.batch_size
    if steps < 0 or lr <= 0 or batch_size < 1:
        raise ValueError(f"need --steps >= 0, --lr > 0 and --batch-size >= 1; got {steps}, {lr}, {batch_size}")

    torch.manual_seed(request.seed)
    losses = _adapt_model(source, spec, method, support, steps, lr=lr, batch_size=batch_size)
    metrics = {"adaptation": {
        "source_run": str(path), "method": method, "support": str(request.support_csv),
        "support_counts": support[cfg.data.label_column].value_counts().sort_index().to_dict(),
        "k_shot": request.k_shot, "steps": steps, "lr": lr, "batch_size": batch_size, "seed": request.seed,
        "final_loss": losses[-1] if losses else None, "classes": spec.names,
    }}
    if evaluation is not None:
        metrics["eval"] = score_sequences(
            source.model, source.tokenizer, evaluation[cfg.data.sequence_column].tolist(),
            [spec.id_of[label] for label in evaluation[cfg.data.label_column]], spec.problem_type, spec.num_labels,
            max_length=cfg.data.max_length, crop=cfg.data.crop)
        metrics["eval_data"] = str(request.eval_data)
    metrics["wall_time_s"] = round(time.time() - started, 1)
    _write_adapted(request, source, spec, metrics)
    return metrics


def _write_adapted(request: AdaptRequest, source: SourceRun, spec: LabelSpec, metrics: dict) -> None:
    from ..hub.publish import staged_folder  # stage beside out_dir, then one rename

    out, run_dir = Path(request.out_dir), source.path
    base = BaseModelRecord.load(run_dir / "base_model.json")
    adapted_cfg = replace(source.cfg, output_dir=str(out), data=replace(source.cfg.data, path=str(request.support_csv)))
    with staged_folder(out, request.overwrite) as staging:
        write_run(staging, source.model, source.tokenizer, spec, adapted_cfg, base=base, metrics=metrics,
                  backbone_dir=run_dir / "backbone" if base.built_from_config else None)
        if source.record is not None:
            shutil.copy2(run_dir / META_FILE, staging / META_FILE)


# ---------------------------------------------------------------- command line


EXAMPLES = """examples:
  gr-ft adapt runs/meta_reptile_yeast h3_support.csv runs/h3_adapted \\
      --eval-data ../shared/data/fewshot/gue_emp_yeast/H3
  gr-ft adapt runs/meta_protonet_yeast h4_support.csv runs/h4_protonet --k-shot 8 --eval-data h4_test.csv
  gr-ft adapt runs/demo new_cells.csv runs/demo_new_cells --steps 50 --lr 1e-3 --seed 1
  gr-ft adapt runs/meta_protonet_human_tf hepg2_k562_support.csv runs/hepg2_k562 --new-labels \\
      --eval-data ../shared/data/fewshot/dnadiffusion_celltype_dhs/hepg2_vs_k562
  gr-ft predict runs/h3_adapted --input candidates.fa --output -     # the adapted run predicts like any run
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gr-ft adapt", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Adapt a run folder (meta-trained by recipes/meta_reptile.py or meta_protonet.py, or any "
                    "fine-tuning run) to a new task from a few labelled examples, write the adapted run folder and "
                    "score it on the task's other labelled data.",
    )
    parser.add_argument("run_dir", help="finished run folder (or Hub repo id)")
    parser.add_argument("support", help="CSV (or any labelled table) with columns sequence,label: the k examples")
    parser.add_argument("out_dir", help="adapted run folder to write")
    parser.add_argument("--eval-data", help="labelled file, or task folder whose --eval-split is scored")
    parser.add_argument("--eval-split", default="test", help="split of an --eval-data folder (default: test)")
    parser.add_argument("--max-eval", type=int, help="score at most this many rows (seeded sample)")
    parser.add_argument("--k-shot", type=int, help="use this many support examples per class (seeded sample)")
    parser.add_argument("--method", choices=ADAPT_METHODS, default="auto",
                        help="auto: protonet for ProtoNet runs, else finetune. protonet on a Reptile run with "
                             "--steps N: prototype head, then fine-tuning (Proto-MAML's start)")
    parser.add_argument("--steps", type=int, help="fine-tuning steps (default: from meta.json, else 30)")
    parser.add_argument("--lr", type=float, help="fine-tuning learning rate (default: from meta.json, else train.lr)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="seeds the k-shot sample and the fine-tuning")
    parser.add_argument("--new-labels", action="store_true",
                        help="the new task names its classes differently from the run (e.g. HepG2/K562 after "
                             "meta-training on 0/1): its sorted classes take the head's outputs")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished OUT_DIR")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run model code shipped with the run's backbone (DNABERT-2, HyenaDNA): only if you trust it")
    return parser


def adapt_main(argv: list[str]) -> int:
    """``gr-ft adapt``: returns the exit code; bad input raises ValueError before anything is written (the CLI
    prints it and exits 2, gr_ft.errors)."""
    args = _parser().parse_args(argv)
    metrics = adapt_run(args.run_dir, args.support, args.out_dir, eval_data=args.eval_data, k_shot=args.k_shot,
                        steps=args.steps, lr=args.lr, method=args.method, batch_size=args.batch_size,
                        eval_split=args.eval_split, max_eval=args.max_eval, seed=args.seed,
                        new_labels=args.new_labels, overwrite=args.overwrite,
                        trust_remote_code=args.trust_remote_code)
    adaptation = metrics["adaptation"]
    print(f"adapted {args.run_dir} ({adaptation['method']}, support {adaptation['support_counts']}, "
          f"{adaptation['steps']} steps) -> {args.out_dir}")
    if "eval" in metrics:
        print(json.dumps({k: round(v, 4) for k, v in metrics["eval"].items() if not math.isnan(v)}))
    return 0
