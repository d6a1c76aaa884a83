"""k-shot learning curves on held-out tasks: plain LoRA fine-tuning vs Reptile vs prototypical networks.

    # default: the synthetic cell types, HeLa and HepG2 held out (~20 min on 2 busy CPU cores):
    python benchmarks/fewshot_curves.py
    # a panel of 20 synthetic cell types over 16 shared TF motifs, cell16-cell20 held out:
    python benchmarks/fewshot_curves.py --data synthetic:cell_type_panel --shots 4 8 16 --set meta.synthetic_size=8000
    # yeast histone marks (GUE EMP), three marks held out:
    python benchmarks/fewshot_curves.py --data ../shared/data/fewshot/gue_emp_yeast --meta-test H3 H4 H3K4me3
    python benchmarks/fewshot_curves.py --data ../shared/data/fewshot/gue_mouse_tf --meta-test mouse0 mouse3
    python benchmarks/fewshot_curves.py --data ../shared/data/tf/gue_human_tf --meta-test tf0 tf1
    # a new cell type from another collection: meta-train on all human TF tasks, meta-test on HepG2 vs K562
    python benchmarks/fewshot_curves.py --data ../shared/data/tf/gue_human_tf \\
        --meta-test-data ../shared/data/fewshot/dnadiffusion_celltype_dhs --name hepg2_vs_k562_from_human_tf
    # a pretrained backbone instead of a random one built from config (e.g. from gr-ft pretrain):
    ... --backbone runs/pretrain_dna_bpe
    # any MetaTrainConfig field, for both meta-learners:  ... --set meta.meta_steps=400 adapter.r=16
    # re-render docs/fewshot.md and docs/fewshot_curves.png from the saved results only:
    python benchmarks/fewshot_curves.py --render-only

For every meta-test task, k labelled examples per class (k = 4, 8, 16, 32, 64; the seed picks
them, nested across k) are drawn from the task's train split, and MCC is measured on a capped,
fixed sample of its test split. Methods, all on the same backbone:

* plain LoRA fine-tuning: a fresh adapter and head, ``--adapt-steps`` steps on the support set;
* Reptile: meta-trained on the meta-train tasks (recipes/meta_reptile.py), then the same fine-tuning;
* ProtoNet: meta-trained (recipes/meta_protonet.py), prototypes of the support set, no gradient step;
* ProtoNet on the frozen backbone: prototypes of the untouched backbone's embeddings, no training at all;
* plain / Reptile from a prototype head: the same fine-tuning, but the head starts as the support set's
  prototype classifier (temperature calibrated on the support) instead of the saved head. With Reptile's
  adapter this is Proto-MAML's initialisation; it gives a head that means the new task's classes.

The adaptation learning rate of the two fine-tuning methods is picked, per method, from
``--adapt-lrs`` on the meta-train tasks (k = 16, dev split), never on a meta-test task. Meta-test
tasks are loaded only after meta-training. Labels become class ids per task (sorted), so a meta-test
task may name its classes differently (HepG2/K562 after meta-training on 0/1). Results go to
``docs/fewshot_<data>.json`` (every task x method x k x seed), and ``docs/fewshot.md`` +
``docs/fewshot_curves.png`` are re-rendered from all such files (text between ``<!-- notes -->``
and ``<!-- /notes -->`` is kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
from transformers import AutoConfig

from gr_ft.adapters import apply_adapter
from gr_ft.config import load_config
from gr_ft.evaluation import MetricAccumulator
from gr_ft.meta import compute_prototypes, prototype_logits, snapshot_trainable, restore_trainable
from gr_ft.meta.adapt import finetune_on_support, make_adapter_trainable, score_sequences
from gr_ft.meta.prototype_head import embed_sequences, init_prototype_head
from gr_ft.meta.config import MetaTrainConfig
from gr_ft.meta.recipe import load_tasks, prepare_meta_tasks, read_meta_record
from gr_ft.meta.tasks import TaskCollection
from gr_ft.modeling import build_backbone, build_task_model, default_tokenizer_name, load_backbone
from gr_ft.recipes import meta_protonet, meta_reptile
from gr_ft.run_folder import load_model_for_run
from gr_ft.tokenization import SequenceTokenizer

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
METHODS = {
    "plain": "plain LoRA fine-tuning (no meta-training)",
    "reptile": "Reptile init + fine-tuning",
    "protonet": "ProtoNet (meta-trained)",
    "protonet_frozen": "ProtoNet, frozen backbone (no training)",
    "plain_protohead": "plain LoRA fine-tuning from a prototype head",
    "reptile_protohead": "Reptile + prototype head, fine-tuned (Proto-MAML init)",
}
SYNTHETIC_META_TEST = {  # held-out cell types of the built-in collections (their TFs all occur in meta-training)
    "synthetic:cell_type": ["HeLa", "HepG2"],
    "synthetic:cell_type_panel": ["cell16", "cell17", "cell18", "cell19", "cell20"],
}
# sizes that fit the CPU budget; any of them can be overridden with key=value
PRESETS = {
    # overlapping 4-mers: over a random backbone, mean-pooled states stay a projection of the k-mer composition
    # (frozen prototypes reach MCC ~0.5 on yeast H3 at k=64; BPE tokens ~0.1, 6-mers ~0.3)
    "synthetic": ["model.tokenizer=kmer4", "max_length=256", "model.hidden_size=64", "model.num_layers=2",
                  "model.num_heads=4", "model.intermediate_size=128"],
    "real": ["model.tokenizer=kmer4", "max_length=256", "crop=center", "model.hidden_size=64", "model.num_layers=2",
             "model.num_heads=4", "model.intermediate_size=128"],
}
META_DEFAULTS = ["train.precision=fp32", "meta.k_shot=8", "meta.query_per_class=8", "meta.meta_batch_tasks=2",
                 "meta.eval_every_steps=50", "meta.checkpoint_every_steps=1000", "meta.val_episodes=8", "meta.test_episodes=0"]
REPTILE_DEFAULTS = ["meta.meta_steps=100", "meta.inner_steps=4", "meta.inner_lr=1e-3", "meta.eval_inner_steps=8"]
PROTONET_DEFAULTS = ["meta.meta_steps=200", "meta.meta_lr=1e-3"]
NOTES_BEGIN, NOTES_END = "<!-- notes -->", "<!-- /notes -->"


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="synthetic:cell_type",
                        help="task collection: synthetic:cell_type (default), synthetic:cell_type_panel or a "
                             "folder of task folders")
    parser.add_argument("--meta-test", nargs="+", help="held-out task names (default for synthetic: SYNTHETIC_META_TEST; "
                                                       "with --meta-test-data: all of its tasks)")
    parser.add_argument("--meta-test-data", help="take the meta-test tasks from this collection instead; every task "
                                                 "of --data is then meta-trained on")
    parser.add_argument("--name", help="name of the results (default: the data folder's name)")
    parser.add_argument("--backbone", help="pretrained backbone folder or Hub id (default: a small one built from "
                                           "config, random weights, shared by every method)")
    parser.add_argument("--shots", type=int, nargs="+", default=[4, 8, 16, 32, 64], help="k per class")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="support-sample seeds")
    parser.add_argument("--max-query", type=int, default=500, help="test rows scored per meta-test task")
    parser.add_argument("--adapt-steps", type=int, default=20, help="fine-tuning steps on the support set")
    parser.add_argument("--adapt-lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2],
                        help="fine-tuning learning rates to choose from on the meta-train tasks")
    parser.add_argument("--batch-size", type=int, default=32, help="support examples per fine-tuning step")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a shared CPU more threads can be far slower)")
    parser.add_argument("--work-dir", help="keep the meta-trained runs here (default: a temporary folder)")
    parser.add_argument("--render-only", action="store_true", help="only re-render the doc and plot from docs/*.json")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="MetaTrainConfig overrides for both meta-learners, e.g. --set meta.meta_steps=400 adapter.r=16")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- setup


def base_overrides(args) -> list[str]:
    synthetic = args.data.startswith("synthetic:")
    preset = PRESETS["synthetic" if synthetic else "real"]
    if args.backbone:  # a given backbone brings its own size and tokenizer; keep only the input settings
        preset = [item for item in preset if not item.startswith("model.")] + ["model.tokenizer=null"]
    if args.meta_test_data:  # meta-test tasks from elsewhere: meta-train on every task of --data
        check_task_folders(Path(args.meta_test_data), args.meta_test)
        return [*preset, *META_DEFAULTS, f"meta.tasks={args.data}", "meta.meta_test_fraction=0"]
    meta_test = args.meta_test or SYNTHETIC_META_TEST.get(args.data)
    if not meta_test:
        raise SystemExit("--meta-test is required for real data (e.g. --meta-test H3 H4 H3K4me3)")
    return [*preset, *META_DEFAULTS, f"meta.tasks={args.data}", f"meta.meta_test=[{','.join(meta_test)}]"]


def check_task_folders(folder: Path, names: Optional[list[str]]) -> None:
    """Fail before meta-training when --meta-test names a task folder --meta-test-data does not have."""
    if not folder.is_dir():
        raise SystemExit(f"--meta-test-data {folder} is not a folder of task folders")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    unknown = sorted(set(names or []) - set(found))
    if unknown:
        raise SystemExit(f"--meta-test {unknown} not in {folder}; its tasks are {found}")


def load_meta_test_collection(cfg: MetaTrainConfig, args, names: list[str], split: str) -> TaskCollection:
    """The meta-test tasks' rows (named tasks of --data, or of --meta-test-data); read after meta-training."""
    if not args.meta_test_data:
        return load_tasks(cfg, split).subset(names)
    collection = load_tasks(replace(cfg, meta=replace(cfg.meta, tasks=args.meta_test_data)), split)
    return collection.subset(args.meta_test or collection.names)


def task_classes(frame: pd.DataFrame, n_way: int, source: str) -> list[str]:
    """A task's class names in class-id order (sorted), so tasks may name their classes differently."""
    classes = sorted(frame["label"].unique())
    if len(classes) != n_way:
        raise SystemExit(f"task {source} has {len(classes)} classes {classes}; the curves need {n_way} in every task")
    return classes


def prepare_backbone(cfg: MetaTrainConfig, args, work: Path) -> tuple[str, str]:
    """(backbone folder, tokenizer name): the --backbone, or a random one built from config once and saved."""
    if args.backbone:
        return args.backbone, cfg.model.tokenizer or args.backbone
    tokenizer_name = default_tokenizer_name(cfg.model, cfg.alphabet)
    tokenizer = SequenceTokenizer.from_pretrained(tokenizer_name)
    torch.manual_seed(0)
    folder = work / "backbone"
    build_backbone(cfg.model, tokenizer).save_pretrained(str(folder))
    return str(folder), tokenizer_name


def backbone_shape(folder: str) -> dict:
    """Layers and width of the backbone actually used (built from config or given with --backbone)."""
    config = AutoConfig.from_pretrained(folder)
    return {"arch": config.model_type, "num_layers": config.num_hidden_layers, "hidden_size": config.hidden_size}


def meta_train(recipe, cfg: MetaTrainConfig) -> tuple[Path, float]:
    started = time.time()
    recipe.meta_train(cfg)
    return Path(cfg.output_dir), time.time() - started


def support_index(pool: pd.DataFrame, classes: list[str], k: int, seed: int) -> np.ndarray:
    """Row positions of k examples per class; the seed fixes a per-class order, so supports nest across k."""
    rows = []
    for class_id, label in enumerate(classes):
        members = np.flatnonzero(pool["label"].to_numpy() == label)
        rows.append(np.random.default_rng([seed, class_id]).permutation(members)[:k])
    return np.concatenate(rows)


def query_sample(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    return frame.sample(n=min(max_rows, len(frame)), random_state=0).reset_index(drop=True)


# ---------------------------------------------------------------- the four methods


class FineTuner:
    """A model whose trainable weights are reset to one initialisation before every support set.

    ``prototype_head``: the head then starts as the support set's prototype classifier.
    """

    def __init__(self, model, tokenizer, cfg: MetaTrainConfig, steps: int, batch_size: int,
                 prototype_head: bool = False):
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.steps, self.batch_size, self.prototype_head = steps, batch_size, prototype_head
        make_adapter_trainable(model)
        self.init = snapshot_trainable(model)

    def score(self, support: pd.DataFrame, query: pd.DataFrame, classes: list[str], lr: float,
              seed: int) -> dict[str, float]:
        restore_trainable(self.model, self.init)
        torch.manual_seed(seed)
        ids = [classes.index(label) for label in support["label"]]
        if self.prototype_head:
            init_prototype_head(self.model, self.tokenizer, support["sequence"].tolist(), ids, len(classes),
                                max_length=self.cfg.max_length, crop=self.cfg.crop)
        order = np.random.default_rng(seed).permutation(len(support))  # mix classes within mini-batches
        finetune_on_support(self.model, self.tokenizer, support["sequence"].to_numpy()[order].tolist(),
                            [ids[i] for i in order], self.steps, lr, max_length=self.cfg.max_length,
                            crop=self.cfg.crop, batch_size=self.batch_size)
        return score_sequences(self.model, self.tokenizer, query["sequence"].tolist(),
                               [classes.index(label) for label in query["label"]], self.cfg.problem_type,
                               len(classes), max_length=self.cfg.max_length, crop=self.cfg.crop)


class PrototypeScorer:
    """Prototype classification from cached embeddings (pool and query embedded once per task)."""

    def __init__(self, model, tokenizer, cfg: MetaTrainConfig, distance: str = "euclidean", temperature: float = 1.0):
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.distance, self.temperature = distance, temperature
        self.cache: dict[tuple[str, str], torch.Tensor] = {}

    def embed(self, task: str, kind: str, sequences: list[str]) -> torch.Tensor:
        if (task, kind) not in self.cache:
            self.cache[task, kind] = embed_sequences(self.model, self.tokenizer, sequences, self.cfg.max_length,
                                                     self.cfg.crop)
        return self.cache[task, kind]

    def score(self, pool_embeddings: torch.Tensor, support_rows: np.ndarray, support_labels: list[str],
              query_embeddings: torch.Tensor, query_labels: list[str], classes: list[str]) -> dict[str, float]:
        ids = torch.tensor([classes.index(label) for label in support_labels])
        prototypes = compute_prototypes(pool_embeddings[torch.as_tensor(support_rows)], ids, len(classes))
        logits = prototype_logits(query_embeddings, prototypes, self.distance, self.temperature)
        accumulator = MetricAccumulator(self.cfg.problem_type, len(classes))
        accumulator.add_batch(logits, torch.tensor([classes.index(label) for label in query_labels]))
        return accumulator.compute()


def choose_lr(tuner: FineTuner, cfg: MetaTrainConfig, lrs: list[float], label: str) -> tuple[float, dict]:
    """The fine-tuning learning rate with the best mean MCC on meta-train tasks (k = 16, dev split, 2 tasks)."""
    data = prepare_meta_tasks(cfg)
    tasks = data.split.meta_train[:2]
    scores = {}
    for lr in lrs:
        mccs = []
        for task in tasks:
            pool, query = data.train[task], query_sample(data.val[task], 200)
            classes = task_classes(pool, cfg.meta.n_way, task)
            for seed in (0,):
                support = pool.iloc[support_index(pool, classes, 16, 100 + seed)]
                mccs.append(tuner.score(support, query, classes, lr, seed)["mcc"])
        scores[lr] = float(np.mean(mccs))
        print(f"  {label}: lr {lr:g} -> mean MCC {scores[lr]:.3f} on meta-train tasks {tasks} (dev)", flush=True)
    return max(scores, key=scores.get), scores


# ---------------------------------------------------------------- the benchmark


def run(args) -> dict:
    started = time.time()
    torch.set_num_threads(args.threads)
    name = args.name or (args.data.replace(":", "_") if args.data.startswith("synthetic:") else Path(args.data).name)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="fewshot_"))
    work.mkdir(parents=True, exist_ok=True)
    common = base_overrides(args) + list(args.overrides)
    cfg = load_config(MetaTrainConfig, None, common)
    backbone, tokenizer_name = prepare_backbone(cfg, args, work)
    common += [f"model.name_or_path={backbone}", f"model.tokenizer={tokenizer_name}"]
    configs = {
        "reptile": load_config(MetaTrainConfig, None, ["meta.method=reptile", *REPTILE_DEFAULTS, *common,
                                                       f"output_dir={work / 'reptile'}", "overwrite=true"]),
        "protonet": load_config(MetaTrainConfig, None, ["meta.method=protonet", *PROTONET_DEFAULTS, *common,
                                                        f"output_dir={work / 'protonet'}", "overwrite=true"]),
    }
    cfg = configs["reptile"]
    timings = {}
    print(f"[{name}] meta-training Reptile and ProtoNet on {backbone}", flush=True)
    runs = {}
    for method, recipe in (("reptile", meta_reptile), ("protonet", meta_protonet)):
        runs[method], timings[f"meta_train_{method}_s"] = meta_train(recipe, configs[method])
    record = read_meta_record(runs["reptile"])

    tokenizer = SequenceTokenizer.from_pretrained(tokenizer_name)
    plain_model, _ = build_task_model(cfg.model, tokenizer, cfg.problem_type, cfg.meta.n_way)
    torch.manual_seed(0)
    models = {"plain": apply_adapter(plain_model, cfg.adapter), "reptile": load_model_for_run(runs["reptile"])[0]}
    tuners = {  # the two variants of a method share its model: every score() restores the initialisation first
        f"{method}{suffix}": FineTuner(model, tokenizer, cfg, args.adapt_steps, args.batch_size, bool(suffix))
        for method, model in models.items() for suffix in ("", "_protohead")
    }
    lr_choice, t = {}, time.time()
    for method, tuner in tuners.items():
        lr_choice[method] = choose_lr(tuner, cfg, args.adapt_lrs, method)
    timings["lr_selection_s"] = time.time() - t
    protonet_record = read_meta_record(runs["protonet"])
    scorers = {
        "protonet": PrototypeScorer(load_model_for_run(runs["protonet"])[0], tokenizer, cfg,
                                    protonet_record.distance, protonet_record.temperature),
        "protonet_frozen": PrototypeScorer(load_backbone(backbone), tokenizer, cfg),
    }

    # meta-test tasks: read only now, after meta-training and learning-rate selection
    pools = load_meta_test_collection(cfg, args, record.meta_test_tasks, "train")
    meta_test = pools.names
    queries = load_meta_test_collection(cfg, args, meta_test, "test")
    classes = {task: task_classes(pools[task], cfg.meta.n_way, task) for task in meta_test}
    results, t = [], time.time()
    for task in meta_test:
        pool, query = pools[task], query_sample(queries[task], args.max_query)
        for method, scorer in scorers.items():
            pool_embeddings = scorer.embed(task, "pool", pool["sequence"].tolist())
            query_embeddings = scorer.embed(task, "query", query["sequence"].tolist())
            for k in args.shots:
                for seed in args.seeds:
                    rows = support_index(pool, classes[task], k, seed)
                    metrics = scorer.score(pool_embeddings, rows, pool["label"].iloc[rows].tolist(),
                                           query_embeddings, query["label"].tolist(), classes[task])
                    results.append(result_row(task, method, k, seed, metrics))
        for method, tuner in tuners.items():
            for k in args.shots:
                for seed in args.seeds:
                    support = pool.iloc[support_index(pool, classes[task], k, seed)]
                    metrics = tuner.score(support, query, classes[task], lr_choice[method][0], seed)
                    results.append(result_row(task, method, k, seed, metrics))
                print(f"  {task} {method} k={k}: MCC {np.mean([r['mcc'] for r in results[-len(args.seeds):]]):.3f}"
                      f" ({time.time() - started:.0f} s so far)", flush=True)
    timings["adaptation_s"] = time.time() - t
    timings["total_s"] = time.time() - started
    report = {
        "name": name, "data": args.data, "meta_test_data": args.meta_test_data or args.data,
        "meta_test": meta_test, "meta_train": record.meta_train_tasks,
        "classes": classes, "backbone": args.backbone or "built from config (random weights)",
        "tokenizer": tokenizer_name, "shots": args.shots, "seeds": args.seeds, "max_query": args.max_query,
        "query_rows": {task: min(args.max_query, len(queries[task])) for task in meta_test},
        "adapt_steps": args.adapt_steps, "batch_size": args.batch_size,
        "adapt_lr": {m: {"chosen": lr, "mean_mcc_by_lr": scores} for m, (lr, scores) in lr_choice.items()},
        "configs": {m: json.loads((runs[m] / "meta.json").read_text())["meta_config"] for m in runs},
        "model": backbone_shape(backbone), "max_length": cfg.max_length,
        "lora_r": cfg.adapter.r, "meta_val": {m: json.loads((runs[m] / "metrics.json").read_text())["history"]
                                           for m in runs},
        "threads": args.threads, "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "timings_s": {k: round(v, 1) for k, v in timings.items()}, "command": " ".join(sys.argv),
        "results": results,
    }
    return report


def result_row(task: str, method: str, k: int, seed: int, metrics: dict) -> dict:
    return {"task": task, "method": method, "k": k, "seed": seed,
            **{key: metrics[key] for key in ("mcc", "accuracy", "auroc", "n") if key in metrics}}


# ---------------------------------------------------------------- the write-up


def curve_table(report: dict) -> pd.DataFrame:
    """Mean and sd over seeds of the task-averaged MCC, per method and k."""
    frame = pd.DataFrame(report["results"])
    per_seed = frame.groupby(["method", "k", "seed"])["mcc"].mean().reset_index()  # average over meta-test tasks
    return per_seed.groupby(["method", "k"])["mcc"].agg(["mean", "std"]).reset_index()


def markdown_section(report: dict) -> str:
    table = curve_table(report)
    shots = report["shots"]
    lines = [f"## {report['name']}: meta-test tasks {', '.join(report['meta_test'])}", ""]
    source = report.get("meta_test_data", report["data"])
    if source != report["data"]:
        lines.append(f"Meta-test tasks from `{source}`, a collection never seen in meta-training.")
    lines.append(f"Meta-train tasks: {', '.join(report['meta_train'])}. MCC on {report['max_query']} (or all) test "
                 f"rows per meta-test task, averaged over the meta-test tasks; mean ± sd over "
                 f"{len(report['seeds'])} support samples (seeds {report['seeds'][0]}-{report['seeds'][-1]}).")
    lines += ["", "| method | " + " | ".join(f"k={k}" for k in shots) + " |",
              "|---|" + "---|" * len(shots)]
    cell = {(r.method, r.k): f"{r['mean']:.3f} ± {r['std']:.3f}" for _, r in table.iterrows()}
    for method, label in METHODS.items():
        if any((method, k) in cell for k in shots):
            lines.append(f"| {label} | " + " | ".join(cell.get((method, k), "-") for k in shots) + " |")
    lines += ["", gain_line(table, shots), "", per_task_table(report), "", sizes_text(report)]
    return "\n".join(lines)


def gain_line(table: pd.DataFrame, shots: list[int]) -> str:
    small = [k for k in shots if k <= 16]
    mean = table.set_index(["method", "k"])["mean"]
    plain = np.mean([mean["plain", k] for k in small])
    present = set(table.method)
    parts = [f"{METHODS[m]} {100 * (np.mean([mean[m, k] for k in small]) - plain):+.1f}"
             for m in METHODS if m != "plain" and m in present]
    return (f"Gain over plain fine-tuning at k <= 16 (mean over k = {', '.join(map(str, small))}; MCC points): "
            + "; ".join(parts) + ".")


def per_task_table(report: dict) -> str:
    frame = pd.DataFrame(report["results"])
    means = frame.groupby(["task", "method", "k"])["mcc"].mean()
    shots = report["shots"]
    lines = ["Per task (mean MCC over seeds):", "", "| task | method | " + " | ".join(f"k={k}" for k in shots) + " |",
             "|---|---|" + "---|" * len(shots)]
    for task in report["meta_test"]:
        for method in [m for m in METHODS if (task, m, shots[0]) in means.index]:
            lines.append(f"| {task} | {method} | " + " | ".join(f"{means[task, method, k]:.3f}" for k in shots) + " |")
    return "\n".join(lines)


def sizes_text(report: dict) -> str:
    model, reptile, protonet = report["model"], report["configs"]["reptile"], report["configs"]["protonet"]
    queries = protonet.get("query_per_class", protonet.get("query_size"))  # results saved before the key's rename
    timings = report["timings_s"]
    lr = {m: v["chosen"] for m, v in report["adapt_lr"].items()}
    return "\n".join([
        "Sizes used:",
        f"- backbone: {report['backbone']}; {model.get('arch', 'bert').upper()} {model['num_layers']} layers x "
        f"{model['hidden_size']} hidden, "
        f"tokenizer {report['tokenizer']}, max_length {report['max_length']} tokens; LoRA r={report['lora_r']} on "
        f"every linear layer + head.",
        f"- Reptile: {reptile['meta_steps']} meta-steps x {reptile['meta_batch_tasks']} tasks, "
        f"{reptile['n_way']}-way {reptile['k_shot']}-shot episodes, {reptile['inner_steps']} inner Adam steps at "
        f"{reptile['inner_lr']:g}, meta_lr {reptile['meta_lr']:g} -> {reptile['final_meta_lr']:g}.",
        f"- ProtoNet: {protonet['meta_steps']} steps x {protonet['meta_batch_tasks']} episodes "
        f"({protonet['n_way']}-way {protonet['k_shot']}-shot, {queries} queries per class), Adam "
        f"{protonet['meta_lr']:g}, {protonet['distance']} distance.",
        f"- adaptation (fine-tuning methods): {report['adapt_steps']} Adam (beta1=0) steps, batch "
        f"{report['batch_size']}, lr chosen per method on meta-train tasks: "
        f"{', '.join(f'{m} {v:g}' for m, v in lr.items())}.",
        f"- wall time: {timings['total_s'] / 60:.1f} min ({', '.join(f'{k} {v:.0f}' for k, v in timings.items())}), "
        f"{report['machine']}.",
        f"- command: `{report['command']}`",
    ])


def render(doc: Path, plot: Path) -> None:
    """docs/fewshot.md and the PNG from every docs/fewshot_*.json; hand-written notes are kept."""
    reports = [json.loads(p.read_text()) for p in sorted(DOCS.glob("fewshot_*.json"))]
    if not reports:
        raise SystemExit(f"no results in {DOCS}/fewshot_*.json; run the benchmark first")
    notes = f"{NOTES_BEGIN}\n{NOTES_END}"
    if doc.exists() and NOTES_BEGIN in doc.read_text():
        text = doc.read_text()
        notes = text[text.index(NOTES_BEGIN):text.index(NOTES_END) + len(NOTES_END)]
    header = ("# Few-shot adaptation to held-out tasks: plain LoRA vs Reptile vs ProtoNet\n\n"
              "Generated by `benchmarks/fewshot_curves.py` (raw results: `docs/fewshot_<data>.json`); "
              "the plot is `docs/fewshot_curves.png`.\n\n![k-shot curves](fewshot_curves.png)\n")
    doc.write_text("\n\n".join([header, notes] + [markdown_section(r) for r in reports]) + "\n")
    plot_curves(reports, plot)
    print(f"wrote {doc} and {plot}")


def plot_curves(reports: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(reports))
    rows = -(-len(reports) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(reports):]:
        ax.set_visible(False)
    for ax, report in zip(axes.flat, reports):
        table = curve_table(report)
        for method, label in METHODS.items():
            rows = table[table.method == method].sort_values("k")
            if rows.empty:
                continue
            ax.errorbar(rows.k, rows["mean"], yerr=rows["std"], marker="o", capsize=3, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(report["shots"], [str(k) for k in report["shots"]])
        ax.set_xlabel("k (support examples per class)")
        ax.set_ylabel("MCC on held-out task(s)")
        ax.set_title(f"{report['name']} ({', '.join(report['meta_test'])})", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if not args.render_only:
        report = run(args)
        out = DOCS / f"fewshot_{report['name']}.json"
        DOCS.mkdir(exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {out} ({report['timings_s']['total_s'] / 60:.1f} min)")
        print(markdown_section(report))
    render(DOCS / "fewshot.md", DOCS / "fewshot_curves.png")


if __name__ == "__main__":
    main(sys.argv[1:])
