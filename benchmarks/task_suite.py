"""Every gene-regulation task x model x seed on the real data sets: one command writes docs/benchmarks.{md,json,png}.

    # the default budget (train capped at 2,000 rows, dev/test at 1,000, 3 LM epochs, seeds 0 1 2):
    OMP_NUM_THREADS=1 python benchmarks/task_suite.py
    # <= 10 minutes: seed 0, 500 train / 300 dev+test rows, 1 LM epoch; writes runs/task_suite_quick/benchmarks.*
    OMP_NUM_THREADS=1 python benchmarks/task_suite.py --quick
    # a subset, or MLM-pretrained backbones (folders written by `gr-ft pretrain`) as a fifth model:
    OMP_NUM_THREADS=1 python benchmarks/task_suite.py --tasks prom_core_all ptm_y --models kmer_logreg lm_lora --seeds 0
    OMP_NUM_THREADS=1 python benchmarks/task_suite.py \
        --pretrained-dna runs/pretrain_dna_kmer --pretrained-protein runs/pretrain_protein
    # re-write the report from the results JSON without training anything:
    python benchmarks/task_suite.py --render-only

Tasks (data under ../shared/data, settings from recipes/configs): prom_core_all, prom_300_tata, tf0..tf4 (GUE
human TF), splice (3 classes), ptm_st and ptm_y (MusiteDeep phosphosites, imbalanced), deeploc1 (10 classes).
Models: kmer_logreg and cnn (gr_ft.baselines), lm_lora (the task config's backbone, built from config, LoRA),
lm_full (same backbone, adapter.method=full), lm_pretrained and lm_pretrained_full (LoRA, or every weight trained, on
--pretrained-dna / --pretrained-protein: with a backbone pretrained in the task config's shape, as the
pretrain_* configs do, lm_lora/lm_pretrained and lm_full/lm_pretrained_full differ only in initialisation).

Budget: train is a seeded, label-stratified sample of --max-train-rows rows (dev and test: --max-eval-rows), the
same rows for every model and seed (written once under --work-dir/data/); LMs train --epochs epochs (best dev
epoch kept), the CNN up to --cnn-epochs with early stopping. Runs are sequential, one torch thread each.
Estimated wall time (ESTIMATE below): default ~45 min on 2 free CPU cores in two processes (~1.5 h with
--pretrained-* backbones); --quick 4-8 min.

Resumable and deterministic: each (task, model, seed) is written to the results JSON as soon as it finishes and
skipped on a re-run with the same budget (a different budget is refused); a failed run is recorded with its
error, reported, and retried on the next invocation. Same seed + budget -> same numbers. Processes with
different --tasks can share one results file (updates are locked), e.g. one per CPU core:
    OMP_NUM_THREADS=1 python benchmarks/task_suite.py --tasks deeploc1 ptm_st ptm_y splice &
    OMP_NUM_THREADS=1 python benchmarks/task_suite.py --tasks prom_core_all prom_300_tata tf0 tf1 tf2 tf3 tf4
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from gr_ft.baselines import BaselineConfig, CnnConfig, run_baseline
from harness import (
    ResultsFile,
    call_outcome,
    Verdict,
    aggregate_runs,
    cap_splits,
    compare_to_baselines,
    load_task_splits,
    write_splits,
)
from gr_ft.config import FinetuneConfig, load_config
from gr_ft.data import LabeledSplit
from gr_ft.evaluation import PRIMARY_METRIC, metric_direction
from gr_ft.labels import LabelSpec, infer_label_spec
from gr_ft.leakage import format_leakage_report, leakage_report
from gr_ft.modeling import fresh_dropout

try:
    from gr_ft.recipes import finetune_lora
except ImportError:  # run with the repo root first on sys.path (PYTHONPATH=.): gr_ft resolves to the source folder
    from recipes import finetune_lora

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "recipes" / "configs"
LEAKAGE_THRESHOLD = 0.8
"""k-mer Jaccard at or above which two sequences count as near duplicates (gr_ft.leakage)."""
MIN_MARGIN = 0.01
"""Smallest difference of means (in metric units) that counts as a win or a loss."""
ESTIMATE = (
    "measured on 2026-11-24 on this 2-core machine, the suite split into two processes (DNA tasks / protein tasks) "
    "next to a third job, so each run had ~2/3 of a core. Seconds per run, mean over seeds, lm_lora (lm_pretrained "
    "the same within 15%): deeploc1 540, splice ~450, prom_300_tata 185, tf0-tf4 60-75 each, prom_core_all 40, "
    "ptm_st/ptm_y 27; lm_full about the same where run (tf, prom_core_all, PTM); kmer_logreg 1-9 s and cnn 4-40 s. "
    "One seed of kmer_logreg + cnn + lm_lora + lm_pretrained over all 11 tasks took ~45 min of such run time, "
    "~30 min of CPU. Hence the default with --pretrained-* (3 seeds, 4 LM variants) is ~3 h of CPU, ~1.5 h on 2 "
    "free cores in two processes; without them (lm_lora + lm_full) about half of that. --quick: 4-8 min."
)


# ---------------------------------------------------------------- tasks, models, published numbers


@dataclass(frozen=True)
class SuiteTask:
    """One benchmark task: a fine-tuning config, its data, and the metrics that fit the problem."""

    name: str
    config: Path
    """recipes/configs YAML giving the LM settings (backbone, max_length, lr, class weighting)."""
    headline: str
    """Metric used for the win/tie/lose call and the bar chart."""
    metrics: tuple[str, ...]
    """Test metrics shown in the table, in order."""
    data: Optional[str] = None
    """Dataset folder; empty: the config's data.path."""
    overrides: tuple[str, ...] = ()
    """Extra config overrides for every LM run of the task."""


BINARY = ("mcc", "auroc", "auprc")
IMBALANCED = ("auprc", "auroc", "mcc")
MULTICLASS = ("accuracy", "macro_f1", "mcc")

TASKS: dict[str, SuiteTask] = {
    "prom_core_all": SuiteTask("prom_core_all", CONFIGS / "promoter_lora.yaml", "mcc", BINARY),
    "prom_300_tata": SuiteTask("prom_300_tata", CONFIGS / "promoter_300_tata_lora.yaml", "mcc", BINARY),
    **{f"tf{i}": SuiteTask(f"tf{i}", CONFIGS / "tf_lora.yaml", "mcc", BINARY,
                           data=f"../shared/data/tf/gue_human_tf/tf{i}") for i in range(5)},
    "splice": SuiteTask("splice", CONFIGS / "splice_lora.yaml", "mcc", MULTICLASS),
    "ptm_st": SuiteTask("ptm_st", CONFIGS / "ptm_phospho_st_lora.yaml", "auprc", IMBALANCED),
    "ptm_y": SuiteTask("ptm_y", CONFIGS / "ptm_phospho_y_lora.yaml", "auprc", IMBALANCED),
    "deeploc1": SuiteTask("deeploc1", CONFIGS / "localization_lora.yaml", "accuracy", MULTICLASS),
}

BASELINE_MODELS = ("kmer_logreg", "cnn")
LM_MODELS = ("lm_lora", "lm_full", "lm_pretrained", "lm_pretrained_full")
PRETRAINED_MODELS = ("lm_pretrained", "lm_pretrained_full")
"""Models that start from --pretrained-dna / --pretrained-protein (LoRA, and every weight trained)."""
MODELS = BASELINE_MODELS + LM_MODELS


@dataclass(frozen=True)
class Published:
    """A published result on the same data set, with the compute behind it."""

    model: str
    metric: str
    value: float
    source: str
    compute: str
    note: str = ""


UNCHECKED = ("quoted from the paper as remembered; not re-checked against the PDF here (no network): "
             "verify before citing")
DNABERT2_SOURCE = "Zhou et al., DNABERT-2, ICLR 2024 (arXiv:2306.15006), GUE results table"
DNABERT2_COMPUTE = ("117M-parameter BPE transformer pretrained on 32.5 B bases of 135 genomes (multi-GPU); "
                    "fine-tuned on the full GUE train split, evaluated on the full test split")
PUBLISHED: dict[str, list[Published]] = {
    "prom_core_all": [Published("DNABERT-2", "mcc", 0.6937, DNABERT2_SOURCE + ", Core Promoter Detection (all)",
                                DNABERT2_COMPUTE, UNCHECKED)],
    **{f"tf{i}": [Published("DNABERT-2", "mcc", value,
                            DNABERT2_SOURCE + f", Transcription Factor Prediction (Human) {i}", DNABERT2_COMPUTE,
                            UNCHECKED)]
       for i, value in enumerate((0.7199, 0.7606, 0.6652, 0.5854, 0.7743))},
    "deeploc1": [Published("DeepLoc 1.0", "accuracy", 0.7797,
                           "Almagro Armenteros et al., Bioinformatics 33:3387 (2017), full DeepLoc model, test set",
                           "BLSTM + attention on evolutionary profiles (PSSMs), all 11,085 training proteins, GPU",
                           UNCHECKED + "; their test set has 2,773 proteins, ours 2,768")],
}
"""Task -> published numbers on the same splits. Left out on purpose: prom_300_tata (we could not confirm the
DNABERT-2 value), splice (our train split is re-cut from GUE dev, ~4k rows instead of ~36k: not comparable),
ptm_st (re-split from the MusiteDeep test proteins) and ptm_y (MusiteDeep reports no AUPRC on this split)."""


# ---------------------------------------------------------------- budget


@dataclass
class SuiteBudget:
    """Every setting that changes a run's numbers; results of different budgets are never mixed."""

    max_train_rows: Optional[int] = 2000
    """Seeded, label-stratified sample of train (None: all rows)."""
    max_eval_rows: Optional[int] = 1000
    """The same for dev and for test."""
    epochs: Optional[int] = 3
    """LM epochs (the best dev epoch is kept); None: each task config's train.epochs."""
    cnn_epochs: int = 10
    """Upper bound on CNN epochs (it stops after 2 epochs without a dev gain)."""
    data_seed: int = 0
    """Seed of the row sample; fixed, so seeds vary only the training."""

    def __post_init__(self):
        for flag in ("max_train_rows", "max_eval_rows", "epochs"):
            value = getattr(self, flag)
            if value is not None and value < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
        if self.cnn_epochs < 1:
            raise ValueError(f"--cnn-epochs must be >= 1, got {self.cnn_epochs}")


DEFAULT_BUDGET = SuiteBudget()
QUICK_BUDGET = SuiteBudget(max_train_rows=500, max_eval_rows=300, epochs=1, cnn_epochs=3)
DEFAULT_SEEDS = (0, 1, 2)
QUICK_SEEDS = (0,)


# ---------------------------------------------------------------- task data


@dataclass
class TaskData:
    """The rows every model of one task sees, written once to ``data_dir``."""

    task: SuiteTask
    data_dir: Path
    splits: dict[str, LabeledSplit]
    spec: LabelSpec
    alphabet: str
    class_weighting: str
    source: str


def _resolve(path: str | Path) -> Path:
    """Relative paths (configs, ../shared/data) are read from the repo root, wherever the script runs."""
    path = Path(path)
    return path if path.is_absolute() else REPO / path


def task_config(task: SuiteTask) -> FinetuneConfig:
    """The task's fine-tuning config as written, with the task's own overrides."""
    return load_config(FinetuneConfig, _resolve(task.config), list(task.overrides))


def prepare_task_data(task: SuiteTask, budget: SuiteBudget, work_dir: Path) -> tuple[TaskData, dict]:
    """Load the task's splits, cap them, write the capped rows; returns them and the full splits' leakage source."""
    cfg = task_config(task)
    source = str(_resolve(task.data or cfg.data.path))
    full, alphabet = load_task_splits(source)
    capped = cap_splits(full, budget.max_train_rows, budget.max_eval_rows, budget.data_seed)
    data_dir = write_splits(capped, work_dir / "data" / task.name)
    spec = infer_label_spec(capped["train"].frame["label"], cfg.data.problem_type)
    data = TaskData(task, data_dir, capped, spec, alphabet, cfg.train.class_weighting, source)
    return data, full


def leakage_summary(report: dict) -> dict:
    """The numbers the report table needs from a :func:`gr_ft.leakage.leakage_report`."""
    summary = {"rows": {name: s["rows"] for name, s in report["splits"].items()},
               "duplicate_rows": {name: s["duplicate_rows"] for name, s in report["splits"].items()}}
    for pair, entry in report["pairs"].items():
        later = pair.split("-", 1)[1]
        summary[pair] = {"exact_shared_sequences": entry["exact_shared_sequences"], "near_pairs": entry["near_pairs"],
                         "leaked_rows": entry["leaked_rows"][later], "leaked_fraction": entry["leaked_fraction"][later]}
    return summary


def check_leakage(data: TaskData, full: dict, store: ResultsFile) -> None:
    """Print the leakage report of the full splits (cached in the results file) and of the rows used."""
    info = store.tasks.get(data.task.name, {})
    if "leakage_full" not in info:
        report = leakage_report(full, threshold=LEAKAGE_THRESHOLD)
        print(f"leakage, full splits of {data.source}:\n{format_leakage_report(report)}", flush=True)
        info["leakage_full"] = leakage_summary(report)
    used = leakage_report(data.splits, threshold=LEAKAGE_THRESHOLD)
    print(f"leakage, rows used:\n{format_leakage_report(used)}", flush=True)
    info.update(source=data.source, alphabet=data.alphabet, problem_type=data.spec.problem_type,
                labels=data.spec.names, leakage_used=leakage_summary(used))
    store.set_task(data.task.name, info)


# ---------------------------------------------------------------- one run per model


def run_baseline_model(data: TaskData, model: str, seed: int, budget: SuiteBudget, backbone: Optional[str],
                       work_dir: Path) -> dict:
    """k-mer logistic regression or CNN on the task's rows (class weighting as in the task config)."""
    cfg = BaselineConfig(alphabet=data.alphabet, class_weighting=data.class_weighting,
                         cnn=CnnConfig(epochs=budget.cnn_epochs))
    result = run_baseline(model, data.splits, data.spec, cfg, seed)
    primary = PRIMARY_METRIC[data.spec.problem_type]
    return {"test": result["test"], f"dev_{primary}": result["dev"][primary], "best_epoch": result.get("best_epoch"),
            "num_parameters": result["num_parameters"]}


def lm_overrides(data: TaskData, model: str, seed: int, budget: SuiteBudget, backbone: Optional[str],
                 work_dir: Path) -> list[str]:
    """Config overrides of one LM run: the capped data, its own run folder, the seed and the model variant."""
    run_dir = work_dir / "runs" / data.task.name / model / f"seed{seed}"
    overrides = [*data.task.overrides, f"data.path={data.data_dir}", f"output_dir={run_dir}", "overwrite=true",
                 f"train.seed={seed}"]
    if budget.epochs is not None:
        overrides.append(f"train.epochs={budget.epochs}")
    if model in ("lm_full", "lm_pretrained_full"):
        overrides.append("adapter.method=full")
    if model in PRETRAINED_MODELS:  # the backbone's own tokenizer; the dropout a fresh backbone of the task gets
        dropout = fresh_dropout(task_config(data.task).model)
        overrides += [f"model.name_or_path={backbone}", "model.tokenizer=null", f"model.dropout={dropout}"]
    return overrides


def run_lm_model(data: TaskData, model: str, seed: int, budget: SuiteBudget, backbone: Optional[str],
                 work_dir: Path) -> dict:
    """Fine-tune through the recipe (``finetune_lora.finetune``); the run folder stays under work_dir/runs."""
    overrides = lm_overrides(data, model, seed, budget, backbone, work_dir)
    cfg = load_config(FinetuneConfig, _resolve(data.task.config), overrides)
    metrics = finetune_lora.finetune(cfg)
    primary = PRIMARY_METRIC[data.spec.problem_type]
    return {"test": metrics["test"], f"dev_{primary}": metrics[f"dev_{primary}"], "best_epoch": metrics["best_epoch"],
            "run_dir": cfg.output_dir}


RUNNERS: dict[str, Callable[..., dict]] = {
    "kmer_logreg": run_baseline_model,
    "cnn": run_baseline_model,
    "lm_lora": run_lm_model,
    "lm_full": run_lm_model,
    "lm_pretrained": run_lm_model,
    "lm_pretrained_full": run_lm_model,
}


def run_one(data: TaskData, model: str, seed: int, budget: SuiteBudget, backbone: Optional[str],
            work_dir: Path) -> dict:
    """One (task, model, seed) as a results record; an exception becomes a failed record, not a crash."""
    record: dict[str, Any] = {"task": data.task.name, "model": model, "seed": seed, "backbone": backbone}
    started = time.perf_counter()
    try:
        record.update(RUNNERS[model](data, model, seed, budget, backbone, work_dir), status="ok")
    except Exception as err:  # noqa: BLE001 - one bad run must not cost the rest of a two-hour suite
        traceback.print_exc()
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
    record["wall_time_s"] = round(time.perf_counter() - started, 1)
    return record


# ---------------------------------------------------------------- the suite


def backbone_for(model: str, alphabet: str, pretrained: dict[str, Optional[str]]) -> Optional[str]:
    """The pretrained backbone folder an lm_pretrained(_full) run of this alphabet uses (None for other models)."""
    return pretrained.get(alphabet) if model in PRETRAINED_MODELS else None


def planned_models(models: list[str], alphabet: str, pretrained: dict[str, Optional[str]]) -> list[str]:
    """The models to run on a task: lm_pretrained(_full) only where a backbone of the task's alphabet was given."""
    return [m for m in models if m not in PRETRAINED_MODELS or pretrained.get(alphabet)]


def run_task(task: SuiteTask, models: list[str], seeds: list[int], budget: SuiteBudget, *, store: ResultsFile,
             work_dir: Path, pretrained: dict[str, Optional[str]]) -> None:
    """Prepare one task's data, print its leakage, then every pending (model, seed)."""
    print(f"\n=== {task.name}", flush=True)
    data, full = prepare_task_data(task, budget, work_dir)
    check_leakage(data, full, store)
    for model in planned_models(models, data.alphabet, pretrained):
        backbone = backbone_for(model, data.alphabet, pretrained)
        for seed in seeds:
            done = store.finished(task.name, model, seed)
            if done is not None and done.get("backbone") == backbone:
                print(f"{task.name} {model} seed {seed}: done earlier, skipped", flush=True)
                continue
            print(f"--- {task.name} {model} seed {seed}", flush=True)
            record = run_one(data, model, seed, budget, backbone, work_dir)
            store.record(record)
            print(describe_record(record, task), flush=True)


def describe_record(record: dict, task: SuiteTask) -> str:
    """One line: the task's metrics of a finished run, or its error."""
    head = f"{record['task']} {record['model']} seed {record['seed']}"
    if record["status"] != "ok":
        return f"{head}: FAILED after {record['wall_time_s']} s: {record['error']}"
    metrics = " ".join(f"{m} {record['test'][m]:.4f}" for m in task.metrics)
    return f"{head}: test {metrics} in {record['wall_time_s']} s"


def run_suite(tasks: list[SuiteTask], models: list[str], seeds: list[int], budget: SuiteBudget,
              results_path: Path, *, work_dir: Path, pretrained: Optional[dict[str, Optional[str]]] = None,
              command: str = "") -> ResultsFile:
    """Run every pending task x model x seed, recording each as it finishes; returns the results file.

    Example:
        >>> store = run_suite([TASKS["ptm_y"]], ["kmer_logreg", "cnn"], [0, 1], QUICK_BUDGET,
        ...                   Path("runs/suite.json"), Path("runs/task_suite"))
        >>> len(store.runs)
        4
    """
    pretrained = pretrained or {}
    store = ResultsFile(results_path, asdict(budget))
    machine = machine_info()

    def note_command(data: dict) -> None:
        data["machine"] = machine
        data.setdefault("commands", []).append(command)

    store.update(note_command)
    for task in tasks:
        run_task(task, models, seeds, budget, store=store, work_dir=work_dir, pretrained=pretrained)
    return store


def machine_info() -> dict:
    """What the numbers were measured on."""
    return {"cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
            "torch": torch.__version__, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


# ---------------------------------------------------------------- the report


METRIC_LABELS = {"mcc": "MCC", "auroc": "AUROC", "auprc": "AUPRC", "accuracy": "accuracy", "macro_f1": "macro-F1"}


def verdicts(store: ResultsFile, tasks: list[SuiteTask]) -> list[Verdict]:
    """Win/tie/lose of every LM model against the best baseline, per task, on the headline metric."""
    summary = aggregate_runs(store.runs)
    found = []
    for task in tasks:
        for model in LM_MODELS:
            verdict = compare_to_baselines(summary, task.name, model, BASELINE_MODELS, task.headline, MIN_MARGIN)
            if verdict is not None:
                found.append(verdict)
    return found


def render_verdicts(found: list[Verdict]) -> list[str]:
    """Plain sentences, computed from the numbers: per LM model a tally, then one line per task."""
    lines = []
    for model in LM_MODELS:
        mine = [v for v in found if v.model == model]
        if not mine:
            continue
        tally = {o: [v.task for v in mine if v.outcome == o] for o in ("wins", "ties", "loses")}
        lines.append(f"- **{model}** against the better baseline on each task's headline metric: "
                     + "; ".join(f"{o} on {len(t)} ({', '.join(t) or 'none'})" for o, t in tally.items()) + ".")
        for v in mine:
            lines.append(f"  - {v.task}: {v.outcome} vs {v.opponent} ({METRIC_LABELS[v.metric]} "
                         f"{v.model_stats[0]:.3f} vs {v.opponent_stats[0]:.3f}, difference {v.delta:+.3f}, "
                         f"tie margin ±{v.margin:.3f})")
    return lines or ["- no task has both an LM and a baseline result yet."]


PRETRAINING_PAIRS = (("LoRA", "lm_lora", "lm_pretrained"), ("all weights", "lm_full", "lm_pretrained_full"))
"""(label, random-init model, pretrained model): the same architecture and fine-tuning budget, two initialisations."""


def render_pretraining_effect(store: ResultsFile, tasks: list[SuiteTask], summary: dict) -> list[str]:
    """Per task and tuning mode: random init vs MLM-pretrained init of the same backbone, and the call."""
    lines = ["| task | metric | tuning | random init | pretrained | difference | call |", "|---|---|---|---|---|---|---|"]
    tally: dict[str, list[str]] = {"wins": [], "ties": [], "loses": []}
    for task in tasks:
        for label, scratch, pretrained in PRETRAINING_PAIRS:
            a, b = summary.get((task.name, scratch), {}), summary.get((task.name, pretrained), {})
            if task.headline not in a or task.headline not in b:
                continue
            outcome = call_outcome(b[task.headline], a[task.headline], MIN_MARGIN, metric_direction(task.headline))
            tally[outcome].append(f"{task.name} ({label})")
            lines.append(f"| {task.name} | {METRIC_LABELS[task.headline]} | {label} | {_cell(a[task.headline])} | "
                         f"{_cell(b[task.headline])} | {b[task.headline][0] - a[task.headline][0]:+.3f} | "
                         f"pretrained {outcome} |")
    if len(lines) == 2:
        return ["- no task has both a random-init and a pretrained run yet."]
    counts = "; ".join(f"{outcome} on {len(names)}" for outcome, names in tally.items())
    return [f"Pretrained init against random init of the same backbone: {counts} (same tie rule as above).", "",
            *lines, "", *render_backbones(store)]


def count_parameters(folder: Path) -> int:
    """Parameters in a backbone folder's safetensors weights (read from the header, nothing loaded)."""
    from safetensors import safe_open

    total = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as weights:
            total += sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    return total


def render_backbones(store: ResultsFile) -> list[str]:
    """What each pretrained backbone used in the runs is: its pretraining record (metrics.json of gr-ft pretrain)."""
    lines = []
    for folder in sorted({r["backbone"] for r in store.runs if r.get("backbone")}):
        record_path = Path(folder) / "metrics.json"
        if not record_path.is_file():
            lines.append(f"- backbone `{folder}`: no gr-ft pretraining record found.")
            continue
        record = json.loads(record_path.read_text())
        lines.append(
            f"- backbone `{display_path(folder)}`: {count_parameters(Path(folder)):,} parameters, "
            f"{record.get('steps', '?')} steps in {record.get('wall_time_s', 0) / 60:.1f} min "
            f"({record.get('train_tokens_per_s', 0):,.0f} tokens/s), validation perplexity "
            f"{record.get('val_perplexity', float('nan')):.3f}, masked-token accuracy "
            f"{record.get('val_accuracy', float('nan')):.3f}.")
    return lines


def _cell(stats: Optional[tuple[float, float]]) -> str:
    if stats is None:
        return "-"
    mean, sd = stats
    return f"{mean:.3f}" if math.isnan(sd) else f"{mean:.3f} ± {sd:.3f}"


def render_task_table(task: SuiteTask, store: ResultsFile, summary: dict) -> list[str]:
    """One markdown table: models (and published numbers) by the task's metrics, seeds and wall time."""
    header = ["model", *[("**" + METRIC_LABELS[m] + "**" if m == task.headline else METRIC_LABELS[m])
                         for m in task.metrics], "seeds", "wall time / run (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in MODELS:
        stats = summary.get((task.name, model))
        if stats is None:
            continue
        cells = [_cell(stats.get(m)) for m in task.metrics]
        wall = stats["wall_time_s"]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {len(stats['seeds'])} | "
                     f"{wall[0]:.1f}" + ("" if math.isnan(wall[1]) else f" ± {wall[1]:.1f}") + " |")
    for item in PUBLISHED.get(task.name, []):
        cells = [f"{item.value:.3f}" if m == item.metric else "" for m in task.metrics]
        lines.append(f"| *published: {item.model}* | " + " | ".join(cells) + " | | see below |")
    failed = [r for r in store.runs if r["task"] == task.name and r["status"] != "ok"]
    for run in failed:
        lines.append(f"\nFAILED: {run['model']} seed {run['seed']}: {run.get('error', 'no error recorded')}")
    return lines


def _leaked(summary: dict, pair: str) -> str:
    """'rows (percent)' of the later split of ``pair`` with an exact or near copy in the earlier one."""
    entry = summary[pair]
    return f"{entry['leaked_rows']} ({100 * entry['leaked_fraction']:.1f}%)"


def render_leakage(store: ResultsFile, tasks: list[SuiteTask]) -> list[str]:
    """Leakage table: rows with an exact or near (k-mer Jaccard >= 0.8) copy in train, full splits and rows used."""
    lines = ["| task | rows used (train/dev/test) | duplicate train rows (full) | test rows with an exact copy in "
             "train (full) | test rows with an exact or near copy in train: full / rows used | dev rows with an "
             "exact or near copy in train: full / rows used |", "|---|---|---|---|---|---|"]
    for task in tasks:
        info = store.tasks.get(task.name)
        if not info:
            continue
        full, used = info["leakage_full"], info["leakage_used"]
        rows = "/".join(str(used["rows"][s]) for s in ("train", "dev", "test"))
        exact = full["train-test"]["exact_shared_sequences"]
        lines.append(f"| {task.name} | {rows} | {full['duplicate_rows']['train']} | {exact} sequences | "
                     f"{_leaked(full, 'train-test')} / {_leaked(used, 'train-test')} | "
                     f"{_leaked(full, 'train-dev')} / {_leaked(used, 'train-dev')} |")
    return lines


def render_published(tasks: list[SuiteTask]) -> list[str]:
    """The published numbers shown in the tables, with source, compute and caveats."""
    lines = []
    for task in tasks:
        for item in PUBLISHED.get(task.name, []):
            lines.append(f"- **{task.name}**, {item.model}: {METRIC_LABELS[item.metric]} {item.value:.4f}. "
                         f"Source: {item.source}. Compute: {item.compute}. Note: {item.note}.")
    lines.append("- Not listed on purpose: " + " ".join(PUBLISHED_OMISSIONS))
    return lines


PUBLISHED_OMISSIONS = (
    "prom_300_tata (the DNABERT-2 value could not be confirmed here);",
    "splice (our train split is re-cut from GUE dev, ~4k rows instead of ~36k, so GUE numbers do not apply);",
    "ptm_st (our split is a protein-level re-split of the MusiteDeep test proteins) and ptm_y (no AUPRC on this "
    "split is known to us).",
)


def render_budget(store: ResultsFile, tasks: list[SuiteTask]) -> list[str]:
    """What produced the numbers: budget, seeds, machine, total wall time, commands."""
    budget, machine = store.data["budget"], store.data.get("machine", {})
    ok = [r for r in store.runs if r["status"] == "ok" and r["task"] in {t.name for t in tasks}]
    seeds = sorted({r["seed"] for r in ok})
    total = sum(r["wall_time_s"] for r in ok)
    return [
        f"- Rows: train capped at {budget['max_train_rows'] or 'all'} rows, dev and test at "
        f"{budget['max_eval_rows'] or 'all'} (seeded, label-stratified sample, seed {budget['data_seed']}; the same "
        f"rows for every model and seed). Published numbers use the full splits.",
        f"- Epochs: LMs {budget['epochs'] or 'as in each task config'} (best dev epoch kept); CNN up to "
        f"{budget['cnn_epochs']} with early stopping (patience 2); k-mer logistic regression picks C on dev.",
        f"- Seeds: {seeds} (seeds vary initialisation, dropout and batch order; the k-mer logistic regression is "
        f"deterministic, so its sd is 0).",
        f"- Machine: {machine.get('cpu_cores', '?')} CPU cores ({machine.get('processor', '?')}), "
        f"{machine.get('torch_threads', '?')} torch thread(s) per run, torch {machine.get('torch', '?')}, "
        f"{machine.get('date', '?')}; the machine may have been shared with other jobs.",
        f"- Wall time: {len(ok)} runs, {total / 60:.1f} min in total (sum of run times; leakage reports and "
        f"data loading add a few seconds per task).",
        f"- Time estimates (not measurements of this report's runs): {ESTIMATE}",
        "- Commands: " + "; ".join(f"`{c}`" for c in dict.fromkeys(store.data.get("commands", [])) if c),
    ]


def display_path(path: str) -> str:
    """A data path as seen from the repo root (../shared/data/...), else as given."""
    return os.path.relpath(path, REPO) if Path(path).is_absolute() else path


def render_markdown(store: ResultsFile, tasks: list[SuiteTask], plot_name: Optional[str] = None) -> str:
    """The whole report as markdown."""
    summary = aggregate_runs(store.runs)
    tasks = [t for t in tasks if t.name in store.tasks]
    lines = ["# gr-ft benchmarks: regulatory tasks on real data", "",
             "Written by `benchmarks/task_suite.py` from its results JSON; do not edit by hand.", "",
             "## Budget", "", *render_budget(store, tasks), "",
             "## Where the LM wins, ties and loses", "",
             f"Each LM variant against the better of kmer_logreg and cnn on the task's headline metric (bold in the "
             f"tables). A difference within ± max({MIN_MARGIN}, sqrt(sd_LM² + sd_baseline²)) is a tie.", "",
             *render_verdicts(verdicts(store, tasks)), "",
             "lm_lora and lm_full start from a backbone built from config (random weights, no pretraining); "
             "lm_pretrained (LoRA) and lm_pretrained_full (all weights) start from an MLM-pretrained gr-ft backbone when "
             "one was given.", ""]
    if plot_name:
        lines += [f"![headline metric per task, mean ± sd over seeds]({plot_name})", ""]
    lines += ["## Results (test split, mean ± sd over seeds)", ""]
    for task in tasks:
        info = store.tasks[task.name]
        lines += [f"### {task.name}", "", f"{info['problem_type']} {info['alphabet']} task, labels {info['labels']}; "
                  f"data `{display_path(info['source'])}`.", "", *render_task_table(task, store, summary), ""]
    lines += ["## MLM pretraining: pretrained vs random initialisation", "",
              "lm_lora vs lm_pretrained (LoRA) and lm_full vs lm_pretrained_full (all weights trained), same "
              "fine-tuning budget and seeds; the difference is pretrained minus random init.", "",
              *render_pretraining_effect(store, tasks, summary), ""]
    lines += ["## Published numbers", "", *render_published(tasks), "",
              "## Train/test leakage", "",
              f"From `gr_ft.leakage.leakage_report` (near duplicate: k-mer Jaccard >= {LEAKAGE_THRESHOLD}, k=6 "
              "for DNA, 3 for protein), on the full published splits and on the rows the models used.", "",
              *render_leakage(store, tasks), ""]
    return "\n".join(lines)


def plot_results(store: ResultsFile, tasks: list[SuiteTask], path: Path) -> Optional[Path]:
    """Bar chart: the headline metric per task and model, error bars = sd over seeds, published as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = aggregate_runs(store.runs)
    tasks = [t for t in tasks if any((t.name, m) in summary for m in MODELS)]
    if not tasks:
        return None
    cols = min(4, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        models = [m for m in MODELS if (task.name, m) in summary]
        stats = [summary[(task.name, m)].get(task.headline, (math.nan, math.nan)) for m in models]
        errors = [0.0 if math.isnan(sd) else sd for _, sd in stats]
        ax.bar(range(len(models)), [mean for mean, _ in stats], yerr=errors, capsize=3,
               color=["#999999" if m in BASELINE_MODELS else "#3b75af" for m in models])
        for item in PUBLISHED.get(task.name, []):
            if item.metric == task.headline:
                ax.axhline(item.value, color="#c44e52", linestyle="--", linewidth=1, label=f"{item.model} (published)")
                ax.legend(fontsize=6, loc="best")
        ax.set_xticks(range(len(models)), models, rotation=35, ha="right", fontsize=7)
        ax.set_title(f"{task.name}: {METRIC_LABELS[task.headline]}", fontsize=9)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(store: ResultsFile, tasks: list[SuiteTask], doc_path: Path, plot_path: Path) -> None:
    """docs/benchmarks.md and the bar chart next to it."""
    plot = plot_results(store, tasks, plot_path)
    plot_name = os.path.relpath(plot, doc_path.parent) if plot else None
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    doc_path.write_text(render_markdown(store, tasks, plot_name))
    print(f"wrote {doc_path}, {plot_path if plot else '(no plot: no results)'} and {store.path}")


# ---------------------------------------------------------------- command line


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS), help="default: all")
    parser.add_argument("--models", nargs="+", choices=MODELS, help="default: all but lm_pretrained and "
                        "lm_pretrained_full, which are added when --pretrained-dna/--pretrained-protein is given")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help=f"default {list(DEFAULT_SEEDS)} ({list(QUICK_SEEDS)} with --quick)")
    parser.add_argument("--quick", action="store_true", help="~10-minute budget: " + _budget_text(QUICK_BUDGET))
    parser.add_argument("--max-train-rows", type=int, help=f"default {DEFAULT_BUDGET.max_train_rows}; 0: all rows")
    parser.add_argument("--max-eval-rows", type=int,
                        help=f"dev and test; default {DEFAULT_BUDGET.max_eval_rows}; 0: all")
    parser.add_argument("--epochs", type=int, help=f"LM epochs; default {DEFAULT_BUDGET.epochs}; 0: each config's")
    parser.add_argument("--cnn-epochs", type=int, help=f"CNN epoch cap; default {DEFAULT_BUDGET.cnn_epochs}")
    parser.add_argument("--pretrained-dna", help="gr-ft pretrain output folder: lm_pretrained on the DNA tasks")
    parser.add_argument("--pretrained-protein", help="gr-ft pretrain output folder: lm_pretrained on the protein tasks")
    parser.add_argument("--results", type=Path, help="results JSON (default docs/benchmarks.json; "
                        "runs/task_suite_quick/benchmarks.json with --quick)")
    parser.add_argument("--doc", type=Path, help="markdown report (default: beside --results, benchmarks.md)")
    parser.add_argument("--plot", type=Path, help="bar chart PNG (default: beside --results, benchmarks.png)")
    parser.add_argument("--work-dir", type=Path, help="capped data and LM run folders (default runs/task_suite"
                        ", or runs/task_suite_quick with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: fastest on a busy CPU)")
    parser.add_argument("--render-only", action="store_true", help="re-write the report from --results; no training")
    return parser.parse_args(argv)


def _budget_text(budget: SuiteBudget) -> str:
    return (f"train {budget.max_train_rows} rows, dev/test {budget.max_eval_rows}, {budget.epochs} LM epoch(s), "
            f"CNN <= {budget.cnn_epochs} epochs, seeds {list(QUICK_SEEDS)}")


def budget_from_args(args: argparse.Namespace) -> SuiteBudget:
    """The quick or default budget with any flag given on the command line in place (0 means no cap)."""
    base = QUICK_BUDGET if args.quick else DEFAULT_BUDGET
    values = asdict(base)
    for flag in ("max_train_rows", "max_eval_rows", "epochs", "cnn_epochs"):
        given = getattr(args, flag)
        if given is not None:
            values[flag] = None if given == 0 and flag != "cnn_epochs" else given
    return SuiteBudget(**values)


def resolve_paths(args: argparse.Namespace) -> tuple[Path, Path, Path, Path]:
    """(results, doc, plot, work_dir) with the quick/default locations filled in."""
    default = "runs/task_suite_quick/benchmarks.json" if args.quick else "docs/benchmarks.json"
    results = args.results or REPO / default
    work_dir = args.work_dir or REPO / ("runs/task_suite_quick" if args.quick else "runs/task_suite")
    return results, args.doc or results.with_suffix(".md"), args.plot or results.with_suffix(".png"), work_dir


def models_from_args(args: argparse.Namespace) -> list[str]:
    """Requested models; lm_pretrained(_full) need a backbone folder and are added by default when one is given."""
    given = bool(args.pretrained_dna or args.pretrained_protein)
    models = args.models or [m for m in MODELS if m not in PRETRAINED_MODELS or given]
    asked = [m for m in models if m in PRETRAINED_MODELS]
    if asked and not given:
        raise ValueError(f"--models {' '.join(asked)} needs --pretrained-dna DIR and/or --pretrained-protein DIR "
                         "(folders written by gr-ft pretrain)")
    for flag in ("pretrained_dna", "pretrained_protein"):
        folder = getattr(args, flag)
        if folder and not Path(folder).is_dir():
            raise ValueError(f"--{flag.replace('_', '-')} {folder} is not a folder")
    return models


def main(argv: Optional[list[str]] = None) -> ResultsFile:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    results, doc, plot, work_dir = resolve_paths(args)
    tasks = [TASKS[name] for name in args.tasks]
    if args.render_only:
        store = ResultsFile.load(results)
    else:
        torch.set_num_threads(args.threads)
        budget = budget_from_args(args)
        models = models_from_args(args)
        seeds = args.seeds or list(QUICK_SEEDS if args.quick else DEFAULT_SEEDS)
        pretrained = {"dna": args.pretrained_dna and str(Path(args.pretrained_dna).resolve()),
                      "protein": args.pretrained_protein and str(Path(args.pretrained_protein).resolve())}
        flags = shlex.join(sys.argv[1:] if argv is None else argv)
        command = f"OMP_NUM_THREADS=1 python benchmarks/task_suite.py {flags}".strip()
        print(f"budget: {asdict(budget)}; models {models}; seeds {seeds}; results {results}", flush=True)
        started = time.time()
        store = run_suite(tasks, models, seeds, budget, results, work_dir=work_dir, pretrained=pretrained,
                          command=command)
        print(f"\nsuite finished in {(time.time() - started) / 60:.1f} min", flush=True)
        store.reload()  # other suite processes may have recorded tasks into the same file meanwhile
    write_report(store, list(TASKS.values()), doc, plot)
    return store


if __name__ == "__main__":
    try:
        failed = [r for r in main().runs if r["status"] != "ok"]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if failed:
        print(f"{len(failed)} run(s) failed (see the report); re-run the same command to retry them", file=sys.stderr)
        sys.exit(1)
