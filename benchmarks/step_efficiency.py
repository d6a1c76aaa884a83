"""Step efficiency: the model FLOP rate of a gr-ft training step as a share of a matmul ceiling measured in
the same process, side by side with a plain hand-written transformers + peft loop on the same model and data.

    OMP_NUM_THREADS=1 python benchmarks/step_efficiency.py --rounds 4 --steps 3 --output step_efficiency.json

Per dataset (``gue_prom_core_all``, 70 bp; ``gue_prom_300_tata``, 300 bp), one process runs, alternately:

* ceiling: one 2048^3 matmul in fp32 and one in bf16 (best of 2) before every path's steps; the median is used;
* gr-ft: the recipe's own ``setup(cfg)`` (recipes/finetune_lora.py: data path, ``SequenceModel`` +
  ``apply_adapter``, ``build_optimizer``, accelerate ``prepare``) and ``gr_ft.training.train_epoch``
  (clipping, scheduler, progress bar, bookkeeping), timed between optimiser steps;
* plain: ``BertForSequenceClassification`` (same BertConfig, SDPA) + peft ``LoraConfig(task_type="SEQ_CLS")``
  with the same r / alpha / dropout / targets + ``torch.optim.AdamW``, a torch DataLoader with
  ``DataCollatorWithPadding`` over the same token ids, ``torch.autocast`` at the same precision, and the loop a
  user writes: forward, backward, step, zero_grad;
* optional variants (``--variants``): gr-ft padding to a multiple of 8 as before (``grft_pad8``), and both paths
  with LoRA dropout 0. Reported per round against the plain path of the same round and the ceiling measured
  just before (medians over rounds): the load of a shared machine swings several-fold within a minute.

Model FLOPs per step (frozen backbone + LoRA) for a B x L batch (per row, not per token, for pooler and heads):

    4 * N_frozen * B*L            frozen Linear weights: forward 2N, backward through activations 2N (no weight grad)
  + 6 * N_lora * B*L              LoRA A and B: forward 2, backward 4 (activation and weight gradients)
  + 6 * N_trainable * B           trainable full matrices (task head; plain: classifier), one vector per row
  + 12 * n_layers * B * L^2 * d   attention QK^T and PV: forward 4*B*L^2*d per layer, x3 for forward + backward

Embeddings, norms, softmax, GELU, dropout and the optimiser are not counted (no matmul FLOPs). The "model FLOP
rate" uses the *real* (non-padding) tokens (useful work); the JSON also holds it on padded tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import _write_atomic  # noqa: E402

from gr_ft.data import PAD_MULTIPLE  # noqa: E402
from gr_ft.training import precision_of  # noqa: E402

DATASETS = {  # folder, data.max_length, batch size (the recipe configs' 80 and 300 tokens; 300 bp at 32 keeps runs short)
    "core_all": ("../shared/data/promoter/gue_prom_core_all", 80, 64),
    "300_tata": ("../shared/data/promoter/gue_prom_300_tata", 300, 32),
}
BERT_6x384 = dict(hidden_size=384, num_layers=6, num_heads=6, intermediate_size=1536)
CEILING_N = 2048


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="folder holding promoter/gue_prom_*; default ../shared/data")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--batch-size", type=int, help="rows per batch for every dataset; default 64 (70 bp), 32 (300 bp)")
    parser.add_argument("--rounds", type=int, default=4, help="alternations of ceiling / gr-ft / plain")
    parser.add_argument("--steps", type=int, default=4, help="optimiser steps per path per round (first not timed)")
    parser.add_argument("--profile-steps", type=int, default=3, help="steps under torch.profiler per path; 0: none")
    parser.add_argument("--max-train-rows", type=int, default=4096, help="train rows used (steps need few)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--grft-override", nargs="*", default=[], help="extra gr-ft key=value overrides")
    parser.add_argument("--variants", nargs="+", default=["grft", "grft_pad8", "plain"], choices=list(VARIANTS),
                        help="paths to alternate (grft always runs)")
    parser.add_argument("--cache-startup", type=int, default=0, metavar="N",
                        help="also time start-up with and without the encoded-split cache, N alternations (70 bp)")
    parser.add_argument("--output", help="also write the results as JSON here")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- ceiling


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_matmul(a: torch.Tensor, b: torch.Tensor, reps: int = 2) -> float:
    best = float("inf")
    with torch.inference_mode():
        for _ in range(reps):
            _synchronize(a.device)
            start = time.perf_counter()
            a @ b
            _synchronize(a.device)
            best = min(best, time.perf_counter() - start)
    return best


class Ceiling:
    """2048^3 matmul rates in fp32 and bf16, FLOP/s, measured between the steps (best of each round)."""

    def __init__(self, n: int = CEILING_N):
        self.n = n
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where the steps run
        self.a32, self.b32 = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        self.a16, self.b16 = self.a32.bfloat16(), self.b32.bfloat16()
        time_matmul(self.a32, self.b32, 1), time_matmul(self.a16, self.b16, 1)  # kernel selection
        self.rates = {"fp32": [], "bf16": []}

    def measure(self) -> None:
        flops = 2 * self.n ** 3
        self.rates["fp32"].append(flops / time_matmul(self.a32, self.b32))
        self.rates["bf16"].append(flops / time_matmul(self.a16, self.b16))

    def median(self, dtype: str) -> float:
        return statistics.median(self.rates[dtype])


# ---------------------------------------------------------------- FLOPs


def step_flops(model: torch.nn.Module, n_layers: int, hidden: int, rows: int, length: int) -> float:
    """Matmul FLOPs of one training step (formula in the module docstring) for a B x L batch."""
    tokens = rows * length
    per_token = {"frozen": 0, "lora": 0, "trainable": 0}
    per_row = dict(per_token)  # pooler, classifier, task head: one vector per row
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or ".original_module" in name:  # peft's unused copy of the head
            continue
        counts = per_row if any(part in name for part in POOLED_MODULES) else per_token
        kind = "lora" if (".lora_A." in name or ".lora_B." in name) else \
            "trainable" if module.weight.requires_grad else "frozen"
        counts[kind] += module.weight.numel()

    def matmuls(counts: dict, n: float) -> float:
        return (4 * counts["frozen"] + 6 * counts["lora"] + 6 * counts["trainable"]) * n

    return matmuls(per_token, tokens) + matmuls(per_row, rows) + 12 * n_layers * rows * length ** 2 * hidden


POOLED_MODULES = ("pooler", "classifier", "task_head")


# ---------------------------------------------------------------- the two paths


def grft_config(path: str, max_length: int, batch_size: int, args, out: str):
    """The recipe config of the gr-ft path (BERT 6x384 from config, kmer6, LoRA r=8 as the promoter recipes)."""
    from gr_ft.config import FinetuneConfig, load_config

    overrides = [f"data.path={path}", f"data.max_length={max_length}", "data.check=false",
                 f"data.max_train_rows={args.max_train_rows}", "model.arch=bert", "model.tokenizer=kmer6",
                 *(f"model.{k}={v}" for k, v in BERT_6x384.items()), "adapter.r=8", "adapter.alpha=16",
                 f"train.batch_size={batch_size}", f"train.precision={args.precision}", "train.epochs=1000",
                 f"output_dir={out}", *args.grft_override]
    return load_config(FinetuneConfig, None, overrides)


class ShapeLog(list):
    """(rows, padded length, real tokens) of every batch a model sees while the hook is on."""

    handle = None


def watch_shapes(model: torch.nn.Module) -> ShapeLog:
    log = ShapeLog()

    def hook(module, args, kwargs):
        mask = kwargs["attention_mask"]
        log.append((*mask.shape, int(mask.sum())))

    log.handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    return log


class GrftPath:
    """gr-ft's real step: the recipe's setup and ``train_epoch``; step times from its ``on_step`` callback."""

    def __init__(self, cfg):
        from recipes.finetune_lora import setup

        started = time.perf_counter()
        self.run = setup(cfg)
        self.setup_s = time.perf_counter() - started
        self.shapes: list[tuple[int, int, int]] = []  # rows, padded length, real tokens
        self.times: list[float] = []

    def steps(self, n: int, record: bool = True) -> None:
        from gr_ft.training import train_epoch

        run, stamps = self.run, []
        train_cfg = replace(run.cfg.train, max_steps=run.state.global_step + n)
        seen = watch_shapes(run.model)
        stamps.append(time.perf_counter())
        try:
            train_epoch(run.model, run.loaders["train"], run.optimizer, run.scheduler, run.accelerator, train_cfg,
                        state=run.state, on_step=lambda state: stamps.append(time.perf_counter()))
        finally:
            seen.handle.remove()
        if record:  # the first step of a call includes starting the loader: not timed
            self.times += [b - a for a, b in zip(stamps[1:], stamps[2:])]
            self.shapes += seen[1:n]


class PlainPath:
    """BertForSequenceClassification + peft LoRA + AdamW + torch DataLoader, the loop a user writes."""

    def __init__(self, grft: GrftPath, precision: str, lora_dropout: Optional[float] = None):
        from peft import LoraConfig, get_peft_model
        from transformers import BertForSequenceClassification, DataCollatorWithPadding

        run = grft.run
        backbone = run.accelerator.unwrap_model(run.model).base_model.model.backbone
        config = backbone.config.__class__.from_dict(backbone.config.to_dict())
        config.num_labels = run.spec.num_labels
        model = BertForSequenceClassification(config)  # SDPA: config carries the backbone's attn implementation
        model.config._attn_implementation = backbone.config._attn_implementation
        lora = run.cfg.adapter
        self.model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=lora.r, lora_alpha=lora.alpha,
                                                      lora_dropout=lora.dropout if lora_dropout is None
                                                      else lora_dropout,
                                                      target_modules=["query", "key", "value", "dense"]))
        self.device = run.accelerator.device  # where gr-ft's path runs (a GPU when there is one)
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad],
                                           lr=run.cfg.train.lr)
        data = run.loaders["train"].dataset
        collate = DataCollatorWithPadding(run.tokenizer.hf)
        self.loader = torch.utils.data.DataLoader(data, batch_size=run.cfg.train.batch_size, shuffle=True,
                                                  collate_fn=collate, drop_last=True)
        self.iterator = iter(self.loader)
        self.dtype = torch.bfloat16 if precision == "bf16" else None
        self.shapes: list[tuple[int, int, int]] = []
        self.times: list[float] = []

    def next_batch(self):
        try:
            return next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            return next(self.iterator)

    def steps(self, n: int, record: bool = True) -> None:
        self.model.train()
        seen = watch_shapes(self.model)
        start = time.perf_counter()
        for i in range(n):
            batch = {key: value.to(self.device) for key, value in self.next_batch().items()}
            with torch.autocast(self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
                loss = self.model(**batch).loss
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
            loss.item()
            now = time.perf_counter()
            if record and i > 0:  # same rule as gr-ft: the first step of a call is not timed
                self.times.append(now - start)
                self.shapes.append(seen[i])
            start = now
        seen.handle.remove()


# ---------------------------------------------------------------- report


def profile_table(path, steps: int, rows: int = 10) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        path.steps(steps, record=False)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=48)


def path_summary(path, model, n_layers: int, hidden: int, ceiling: Ceiling) -> dict:
    step_s = statistics.median(path.times)
    rows, length, real = (statistics.median(values) for values in zip(*path.shapes))
    padded_flops = step_flops(model, n_layers, hidden, int(rows), int(length))
    real_flops = step_flops(model, n_layers, hidden, int(rows), real / rows)  # same formula at the real length
    summary = {"step_s_median": step_s, "step_s": path.times, "rows": rows, "padded_length": length,
               "real_tokens": real, "flops_per_step": padded_flops, "useful_flops_per_step": real_flops}
    for dtype in ("bf16", "fp32"):
        summary[f"pct_{dtype}_ceiling"] = 100 * real_flops / step_s / ceiling.median(dtype)
        summary[f"pct_{dtype}_ceiling_padded"] = 100 * padded_flops / step_s / ceiling.median(dtype)
    return summary


VARIANTS = {  # name: (path, gr-ft overrides or plain LoRA dropout, what it shows)
    "grft": ("grft", [], "gr-ft as it is"),
    "grft_pad8": ("grft", [], "gr-ft padding every batch to a multiple of 8 (before this change)"),
    "grft_lora_dropout0": ("grft", ["adapter.dropout=0"], "gr-ft with adapter.dropout=0 (a modelling lever, not a default)"),
    "plain": ("plain", None, "plain loop, LoRA dropout as gr-ft"),
    "plain_lora_dropout0": ("plain", 0.0, "plain loop, lora_dropout=0 (peft's default)"),
}


def build_path(variant: str, folder: str, max_length: int, batch_size: int, *, args, out: str, reference=None):
    kind, extra, _ = VARIANTS[variant]
    if kind == "plain":
        return PlainPath(reference, precision_of(reference.run.accelerator), extra)
    overrides = replace_overrides(args, extra)
    cfg = grft_config(folder, max_length, batch_size, overrides, f"{out}/{variant}")
    if variant != "grft_pad8":
        return GrftPath(cfg)
    import recipes.finetune_lora as recipe

    kept = recipe.pad_multiple_for
    recipe.pad_multiple_for = lambda device: PAD_MULTIPLE  # the old rule: a multiple of 8 everywhere
    try:
        return GrftPath(cfg)
    finally:
        recipe.pad_multiple_for = kept


def replace_overrides(args, extra: list[str]) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "grft_override": [*args.grft_override, *extra]})


def run_dataset(name: str, args) -> dict:
    folder, max_length, batch_size = DATASETS[name]
    batch_size = args.batch_size or batch_size
    if args.data_root:
        folder = str(Path(args.data_root) / Path(folder).relative_to("../shared/data"))
    ceiling = Ceiling()
    with tempfile.TemporaryDirectory(prefix="gr_ft_stepeff_") as out:
        paths = {"grft": build_path("grft", folder, max_length, batch_size, args=args, out=out)}
        for variant in args.variants:
            if variant != "grft":
                paths[variant] = build_path(variant, folder, max_length, batch_size, args=args, out=out,
                                            reference=paths["grft"])
        for path in paths.values():
            path.steps(2, record=False)  # warm-up
        for _ in range(args.rounds):  # alternate: the machine's load changes within seconds
            for path in paths.values():
                ceiling.measure()
                path.steps(args.steps)
        grft = paths["grft"]
        result = {"dataset": folder, "batch_size": batch_size, "max_length": max_length,
                  "precision": precision_of(grft.run.accelerator), "load_average": os.getloadavg(),
                  "grft_setup_s": {v: p.setup_s for v, p in paths.items() if isinstance(p, GrftPath)},
                  "ceiling_flops": {d: ceiling.median(d) for d in ("fp32", "bf16")}, "ceiling_raw": ceiling.rates,
                  "variants": {v: VARIANTS[v][2] for v in paths}, "rounds": args.rounds,
                  "timed_steps_per_round": args.steps - 1}
        cfg = grft.run.cfg.model
        for variant, path in paths.items():
            model = path.run.accelerator.unwrap_model(path.run.model) if isinstance(path, GrftPath) else path.model
            result[variant] = path_summary(path, model, cfg.num_layers, cfg.hidden_size, ceiling)
        result["paired"] = paired_summary(result)
        if args.profile_steps:
            for variant in ("grft", "plain"):
                if variant in paths:
                    result[f"profile_{variant}"] = profile_table(paths[variant], args.profile_steps)
        for path in paths.values():
            if isinstance(path, GrftPath):
                path.run.accelerator.end_training()
    return result


def paired_summary(result: dict) -> dict:
    """Per round, each path against the plain path and against the ceiling measured just before its steps;
    medians over rounds. The load of a shared machine swings 3x within a minute: only such pairs compare."""
    variants, per, rounds = list(result["variants"]), result["timed_steps_per_round"], result["rounds"]
    out = {}
    for index, variant in enumerate(variants):
        times = [statistics.mean(result[variant]["step_s"][r * per:(r + 1) * per]) for r in range(rounds)]
        row = {"step_s_by_round": times}
        for dtype in ("bf16", "fp32"):
            ceilings = [result["ceiling_raw"][dtype][r * len(variants) + index] for r in range(rounds)]
            row[f"pct_{dtype}_ceiling"] = statistics.median(
                100 * result[variant]["useful_flops_per_step"] / t / c for t, c in zip(times, ceilings))
        out[variant] = row
    if "plain" in out:
        for variant, row in out.items():
            row["x_plain"] = statistics.median(p / t for p, t in zip(out["plain"]["step_s_by_round"],
                                                                    row["step_s_by_round"]))
    return out


def print_result(name: str, result: dict) -> None:
    ceil = result["ceiling_flops"]
    print(f"\n== {name}: {result['dataset']} (max_length {result['max_length']}, batch {result['batch_size']}, "
          f"{result['precision']}) ==")
    print(f"ceiling 2048^3 matmul: fp32 {ceil['fp32'] / 1e9:.1f} GFLOP/s, bf16 {ceil['bf16'] / 1e9:.1f} GFLOP/s "
          f"(medians of per-round bests)")
    print(f"{'path':20} step s   rows x L (real tok)   GFLOP/step   % bf16 ceil   % fp32 ceil   x plain")
    for variant in result["variants"]:
        s, pair = result[variant], result["paired"][variant]
        print(f"{variant:20} {s['step_s_median']:6.3f}   {s['rows']:.0f} x {s['padded_length']:.0f} ({s['real_tokens']:.0f})"
              f"   {s['useful_flops_per_step'] / 1e9:9.1f}   {pair['pct_bf16_ceiling']:10.1f}"
              f"   {pair['pct_fp32_ceiling']:10.1f}   {pair.get('x_plain', float('nan')):6.3f}")
    print("step s: median step; % ceiling: useful FLOP rate / the matmul rate measured just before that path's steps;\n"
          "x plain: plain step time / this step time, same round; both medians over rounds")
    for variant in ("grft", "plain"):
        if f"profile_{variant}" in result:
            print(f"\ntop operators by self CPU time, {variant}:\n{result[f'profile_{variant}']}")


def measure_cache_startup(folder: str, max_length: int, repeats: int) -> dict:
    """Seconds of the recipe's ``prepare_data`` (read, validate, tokenize every split) on the whole data set with
    ``data.cache=false`` and with a warm cache, alternated; the first cached call (a miss that writes) apart."""
    from gr_ft.config import FinetuneConfig, load_config
    from recipes.finetune_lora import prepare_data

    def timed(cache: bool) -> float:
        cfg = load_config(FinetuneConfig, None, [f"data.path={folder}", f"data.max_length={max_length}",
                                                 "model.tokenizer=kmer6", f"data.cache={str(cache).lower()}"])
        start = time.perf_counter()
        prepare_data(cfg)
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="gr_ft_stepeff_cache_") as cache_dir:
        kept, os.environ["GRFT_CACHE_DIR"] = os.environ.get("GRFT_CACHE_DIR"), cache_dir
        try:
            cold = timed(True)
            off, warm = [], []
            for _ in range(repeats):
                off.append(timed(False))
                warm.append(timed(True))
        finally:
            if kept is None:
                os.environ.pop("GRFT_CACHE_DIR")
            else:
                os.environ["GRFT_CACHE_DIR"] = kept
    return {"dataset": folder, "cache_off_s": off, "cache_hit_s": warm, "first_cached_run_s": cold,
            "saving_s": statistics.median(off) - statistics.median(warm),
            "hit_over_off": statistics.median(warm) / statistics.median(off)}


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print("FLOPs/step = 4*N_frozen*B*L + 6*N_lora*B*L + 6*N_trainable*B (head/pooler) + 12*n_layers*B*L^2*d "
          "(useful: L = real tokens per row; padded: L = collated length).\nTimings are wall seconds on a shared "
          f"machine (load average {os.getloadavg()[0]:.1f} at start), ceiling and paths alternated in this process.")
    results = {}
    for name in args.datasets:
        results[name] = run_dataset(name, args)
        print_result(name, results[name])
    if args.cache_startup:
        folder, max_length, _ = DATASETS["core_all"]
        if args.data_root:
            folder = str(Path(args.data_root) / Path(folder).relative_to("../shared/data"))
        startup = results["cache_startup"] = measure_cache_startup(folder, max_length, args.cache_startup)
        print(f"\nstart-up (prepare_data, all {folder} splits): data.cache=false "
              f"{statistics.median(startup['cache_off_s']):.1f} s, cache hit {statistics.median(startup['cache_hit_s']):.1f} s "
              f"(x{startup['hit_over_off']:.2f}); first cached run (miss + write) {startup['first_cached_run_s']:.1f} s")
    if args.output:
        _write_atomic(Path(args.output), lambda tmp: Path(tmp).write_text(json.dumps(results, indent=2) + "\n"))


if __name__ == "__main__":
    main()
