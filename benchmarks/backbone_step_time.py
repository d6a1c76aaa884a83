"""Seconds per LoRA training step and peak memory of four foundation-model families at their published sizes.

    OMP_NUM_THREADS=1 python benchmarks/backbone_step_time.py --output docs/backbone_step_time.json \\
        --markdown docs/backbone_step_time.md

ESM-2 8M, DNABERT-2 117M, NT-v2 50M and HyenaDNA small-32k, each with random weights at its published size
(written once by ``../shared/models/<folder>/make_weights.py`` with PUBLISHED_SIZE=1 into ``--models-dir``),
LoRA r=8 on the family's default targets (gr-ft's choice; the plain path gets the same list), batch 16, AdamW:

* gr-ft: ``load_task_tokenizer`` + ``encode_split`` + ``make_dataloader`` (length-bucketed, dynamic padding),
  ``build_task_model`` (SequenceModel) + ``apply_adapter`` and gr-ft's own loop, ``gr_ft.training.train_epoch``
  (accelerate, grad clipping at 1.0, linear schedule), steps timed from its per-step callback;
* plain: what a user writes with Hugging Face alone: ``AutoTokenizer`` + ``AutoModelForSequenceClassification
  .from_pretrained(folder)`` (``trust_remote_code=True`` only under ``--trust-remote-code``) +
  ``peft.LoraConfig(task_type="SEQ_CLS")`` + a manual AdamW loop over a DataLoader with
  ``DataCollatorWithPadding``. Where that path cannot load the model, the one-line error it gives is the result.

Inputs are random: DNA 1,000 bp windows of uniform ACGT, proteins 512 uniform residues (seed 0). Each
configuration runs in its own fresh process (peak memory = that process's VmHWM), with ``--threads`` torch
threads, ``--warmup`` untimed steps, then the median of ``--steps`` timed steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
SHARED_MODELS = REPO.parent / "shared" / "models"
BATCH_SIZE = 16
LORA_R, LORA_ALPHA, LORA_DROPOUT = 8, 16, 0.05  # gr-ft's AdapterConfig defaults, used by both paths
LR = 1e-4
PATHS = ("grft", "plain")
PROTEIN_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


@dataclass(frozen=True)
class Family:
    """One published checkpoint and the input a user would feed it."""

    key: str
    folder: str
    """Folder under ../shared/models (Hub-shaped files; weights written by its make_weights.py)."""
    hub_id: str
    alphabet: str
    """dna or protein."""
    length: int
    """Characters per input sequence (bp or residues)."""
    max_length: int
    """gr-ft's data.max_length: large enough that no input is cropped."""
    trust_remote_code: bool


FAMILIES = {
    "esm2": Family("esm2", "esm2_t6_8M_UR50D", "facebook/esm2_t6_8M_UR50D", "protein", 512, 514, False),
    "dnabert2": Family("dnabert2", "DNABERT-2-117M", "zhihan1996/DNABERT-2-117M", "dna", 1000, 1002, True),
    "ntv2": Family("ntv2", "nucleotide-transformer-v2-50m-multi-species",
                   "InstaDeepAI/nucleotide-transformer-v2-50m-multi-species", "dna", 1000, 1002, False),
    "hyena": Family("hyena", "hyenadna-small-32k-seqlen-hf", "LongSafari/hyenadna-small-32k-seqlen-hf", "dna", 1000,
                    1002, True),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"),
                        help="gr-ft precisions (default: fp32, plus bf16 autocast when the CPU has AMX)")
    parser.add_argument("--steps", type=int, default=5, help="timed optimiser steps per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimiser steps before them")
    parser.add_argument("--slow-steps", type=int, default=None,
                        help="timed steps for DNABERT-2 (the slowest family); default --steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (and OMP_NUM_THREADS) per process")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per configuration")
    parser.add_argument("--memory-limit-gb", type=float, default=16.0, help="address-space cap per process")
    parser.add_argument("--models-dir", default=str(Path(tempfile.gettempdir()) / "grft_steptime_models"),
                        help="where the published-size random weights are written (reused when present)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="needed for families whose model code ships with the checkpoint (DNABERT-2, HyenaDNA)")
    parser.add_argument("--output", help="write the results as JSON here")
    parser.add_argument("--markdown", help="write the table into this markdown file (between its table markers)")
    parser.add_argument("--table-from", metavar="JSON",
                        help="measure nothing: print the table of a saved --output file (and write --markdown from it)")
    parser.add_argument("--child", nargs=3, metavar=("FAMILY", "PATH", "PRECISION"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- inputs and measurements
def random_inputs(family: Family, n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` uniform random sequences of ``family.length`` characters and balanced binary labels."""
    rng = random.Random(seed)
    letters = "ACGT" if family.alphabet == "dna" else PROTEIN_RESIDUES
    sequences = ["".join(rng.choice(letters) for _ in range(family.length)) for _ in range(n)]
    return sequences, [str(i % 2) for i in range(n)]


def peak_rss_gb() -> float:
    """High-water mark of this process's resident memory (VmHWM), GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300] if text else ''}"


class StepTimer:
    """Wall time and CPU time (this process, all threads) of each optimiser step: the gaps between ``tick`` calls.

    On a shared machine the wall time includes waiting for a core; with one torch thread the CPU time is close to
    what the step costs on an idle core, so both are kept.
    """

    def __init__(self):
        self.last, self.last_cpu, self.seconds, self.cpu_seconds = time.perf_counter(), time.process_time(), [], []

    def tick(self) -> None:
        now, now_cpu = time.perf_counter(), time.process_time()
        self.seconds.append(now - self.last)
        self.cpu_seconds.append(now_cpu - self.last_cpu)
        self.last, self.last_cpu = now, now_cpu

    def summary(self, warmup: int) -> dict:
        timed, timed_cpu = self.seconds[warmup:], self.cpu_seconds[warmup:]
        return {"s_per_step": statistics.median(timed), "cpu_s_per_step": statistics.median(timed_cpu),
                "s_steps": [round(s, 3) for s in self.seconds], "cpu_s_steps": [round(s, 3) for s in self.cpu_seconds],
                "timed_steps": len(timed)}


# ----------------------------------------------------------------------------- gr-ft path
def run_grft(family: Family, folder: Path, precision: str, total_steps: int, warmup: int) -> dict:
    """gr-ft's fine-tuning pieces, as recipes/finetune_lora.py calls them, for ``total_steps`` optimiser steps."""
    import pandas as pd

    from gr_ft.adapters import apply_adapter, total_parameter_count, trainable_parameter_count
    from gr_ft.config import AdapterConfig, ModelConfig, TrainConfig
    from gr_ft.data import LabeledSplit, encode_split, make_dataloader
    from gr_ft.labels import infer_label_spec
    from gr_ft.modeling import build_task_model, check_input_length, load_task_tokenizer
    from gr_ft.training import TrainingState, build_accelerator, build_optimizer, train_epoch

    model_cfg = ModelConfig(name_or_path=str(folder), trust_remote_code=family.trust_remote_code)
    tokenizer = load_task_tokenizer(model_cfg, family.alphabet)
    sequences, labels = random_inputs(family, BATCH_SIZE * total_steps)
    frame = pd.DataFrame({"sequence": sequences, "label": labels, "_line": range(2, len(labels) + 2)})
    spec = infer_label_spec(frame["label"], "binary")
    data = encode_split(LabeledSplit(frame, "random inputs"), tokenizer, spec, family.max_length)
    model, _ = build_task_model(model_cfg, tokenizer, spec.problem_type, spec.num_labels)
    check_input_length(model, family.max_length)
    model = apply_adapter(model, AdapterConfig(r=LORA_R, alpha=LORA_ALPHA, dropout=LORA_DROPOUT))
    targets = sorted(model.peft_config["default"].target_modules)
    params = {"params": total_parameter_count(model), "trainable": trainable_parameter_count(model)}
    cfg = TrainConfig(precision=precision, batch_size=BATCH_SIZE, max_steps=total_steps, lr=LR,
                      log_every_steps=10**9)
    accelerator = build_accelerator(cfg)
    loader = make_dataloader(data, tokenizer, BATCH_SIZE, shuffle=True, seed=0)
    optimizer, scheduler = build_optimizer(model, cfg, len(loader))
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    load_gb = peak_rss_gb()
    timer = StepTimer()
    train_epoch(model, loader, optimizer, scheduler, accelerator, cfg, state=TrainingState(),
                on_step=lambda _state: timer.tick())
    padded = [len(batch["input_ids"][0]) for batch in loader]
    return {**timer.summary(warmup), **params, "lora_targets": targets, "load_gb": load_gb,
            "tokens_per_seq": statistics.mean(data.lengths), "padded_len_max": max(padded),
            "tokens_note": "incl. special tokens; batches padded to a multiple of 8"}


# ----------------------------------------------------------------------------- plain Hugging Face path
def grft_target_modules(family: Family, folder: Path) -> list[str]:
    """The LoRA targets gr-ft picks for this family (handed to the plain path so both adapt the same layers)."""
    from gr_ft.backbones import detect_backbone, read_checkpoint_config

    return list(detect_backbone(read_checkpoint_config(folder)).lora_targets)


def plain_tokenize(family: Family, folder: Path, sequences: list[str]) -> tuple[list[list[int]], Optional[str], object]:
    """``AutoTokenizer`` ids; when the checkpoint's tokenizer does not load, gr-ft's ids (and the error)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=family.trust_remote_code)
        return tokenizer(sequences)["input_ids"], None, tokenizer
    except Exception as err:  # the result is the error; the model is still timed on gr-ft's ids
        from gr_ft.config import ModelConfig
        from gr_ft.modeling import load_task_tokenizer

        model_cfg = ModelConfig(name_or_path=str(folder), trust_remote_code=family.trust_remote_code)
        fallback = load_task_tokenizer(model_cfg, family.alphabet)
        return fallback.encode(sequences, max_length=family.max_length)["input_ids"], one_line(err), fallback.hf


class PlainLoadError(Exception):
    """from_pretrained failed; the message is already the one-line result."""


def _load_report_detail(report: str) -> str:
    """The first MISMATCH/MISSING row of transformers' load report (the exception itself only says 'see above')."""
    for status in ("MISMATCH", "MISSING"):
        for line in report.splitlines():
            if f"| {status}" in line and "classifier" not in line:
                return " ".join(part.strip() for part in line.split("|") if part.strip())
    return ""


def plain_model(family: Family, folder: Path, targets: list[str], task_type: Optional[str] = "SEQ_CLS"):
    """AutoModelForSequenceClassification + peft LoRA, as a model card's fine-tuning snippet writes it.

    ``task_type=None`` is the workaround for model code whose forward takes no attention_mask (peft's SEQ_CLS
    wrapper always passes one): a plain PeftModel, with the classification head kept trainable by name.
    """
    import io
    import logging

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    report = io.StringIO()
    handler = logging.StreamHandler(report)
    hf_logging.add_handler(handler)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()  # the load report is a warning
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(folder), num_labels=2, trust_remote_code=family.trust_remote_code, output_loading_info=True)
    except Exception as err:
        detail = _load_report_detail(report.getvalue())
        raise PlainLoadError(one_line(err) + (f" [load report: {detail}]" if detail else "")) from err
    finally:
        hf_logging.remove_handler(handler)
        hf_logging.set_verbosity(verbosity)
    heads = sorted({name.split(".")[0] for name, _ in model.named_children()} & {"classifier", "score"})
    lora = LoraConfig(task_type=task_type, r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT,
                      target_modules=targets, modules_to_save=None if task_type else heads)
    return get_peft_model(model, lora), info


def _loading_note(info: dict) -> Optional[str]:
    """Encoder weights the checkpoint did not supply (transformers only warns about them)."""
    missing = [k for k in info.get("missing_keys", []) if not any(h in k for h in ("classifier", "score"))]
    mismatched = info.get("mismatched_keys", [])
    unexpected = info.get("unexpected_keys", [])
    if not (missing or mismatched or unexpected):
        return None
    return (f"{len(missing)} encoder tensors missing (random init, e.g. {sorted(missing)[:2]}), "
            f"{len(mismatched)} mismatched, {len(unexpected)} checkpoint tensors unused (e.g. {sorted(unexpected)[:2]})")


def plain_steps(model, loader, total_steps: int) -> StepTimer:
    """The manual loop: forward with labels, backward, AdamW step."""
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    model.train()
    timer = StepTimer()
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        timer.tick()
        if len(timer.seconds) == total_steps:
            break
    return timer


def run_plain(family: Family, folder: Path, total_steps: int, warmup: int) -> dict:
    import torch
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    sequences, labels = random_inputs(family, BATCH_SIZE * total_steps)
    ids, tokenizer_error, hf_tokenizer = plain_tokenize(family, folder, sequences)
    targets = grft_target_modules(family, folder)
    result = {"lora_targets": targets, "tokenizer_error": tokenizer_error,
              "tokens_per_seq": statistics.mean(len(r) for r in ids)}
    rows = [{"input_ids": row, "labels": int(lab)} for row, lab in zip(ids, labels)]
    loader = DataLoader(rows, batch_size=BATCH_SIZE, shuffle=True, collate_fn=DataCollatorWithPadding(hf_tokenizer),
                        generator=torch.Generator().manual_seed(0))
    try:
        model, info = plain_model(family, folder, targets)
    except Exception as err:
        return {**result, "error": f"from_pretrained: {err if isinstance(err, PlainLoadError) else one_line(err)}"}
    try:
        timer = plain_steps(model, loader, total_steps)
    except TypeError as err:  # e.g. peft's SEQ_CLS forward passes attention_mask to code that takes none
        result["error"] = f"first training step: {one_line(err)}"
        result["workaround"] = "LoraConfig without task_type (modules_to_save = the head), batches without attention_mask"
        model, info = plain_model(family, folder, targets, task_type=None)
        loader.collate_fn = _without_attention_mask(loader.collate_fn)
        timer = plain_steps(model, loader, total_steps)
    params = {"params": sum(p.numel() for p in model.parameters()),
              "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    padded = [batch["input_ids"].shape[1] for batch in loader]
    return {**result, **timer.summary(warmup), **params, "padded_len_max": max(padded),
            "loading_note": _loading_note(info), "model_class": type(model.get_base_model()).__name__}


def _without_attention_mask(collate):
    def collate_ids(features):
        batch = collate(features)
        batch.pop("attention_mask", None)
        return batch

    return collate_ids


def child_main(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    family, path, precision = FAMILIES[args.child[0]], args.child[1], args.child[2]
    folder = Path(args.models_dir) / family.folder
    steps = args.slow_steps if (family.key == "dnabert2" and args.slow_steps) else args.steps
    total = args.warmup + steps
    if path == "grft":
        result = run_grft(family, folder, precision, total, args.warmup)
    else:
        result = run_plain(family, folder, total, args.warmup)
    result["peak_gb"] = peak_rss_gb()
    print("RESULT " + json.dumps(result))


# ----------------------------------------------------------------------------- parent: weights, processes, table
def write_weights(family: Family, models_dir: Path) -> Path:
    """The published-size random-weight folder of ``family`` (written once by its make_weights.py)."""
    out = models_dir / family.folder
    if (out / "model.safetensors").is_file():
        return out
    script = SHARED_MODELS / family.folder / "make_weights.py"
    if not script.is_file():
        raise ValueError(f"{script} is absent: ../shared/models must sit beside the checkout (see its README.md)")
    done = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True,
                          env={**os.environ, "PUBLISHED_SIZE": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{script} {out} failed:\n{done.stderr[-2000:]}")
    return out


def run_child(args, family: Family, path: str, precision: str) -> dict:
    limit = int(args.memory_limit_gb * 1024**3)
    command = [sys.executable, __file__, "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads",
               str(args.threads), "--models-dir", args.models_dir, "--child", family.key, path, precision]
    if args.slow_steps:
        command[2:2] = ["--slow-steps", str(args.slow_steps)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    started = time.time()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout_s,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    except subprocess.TimeoutExpired:
        return {"family": family.key, "path": path, "precision": precision, "error": f"timed out after {args.timeout_s:g} s"}
    result = {"family": family.key, "path": path, "precision": precision, "wall_s": round(time.time() - started, 1)}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()]
        result["error"] = f"exit {done.returncode}: {tail[-1][:300] if tail else 'no output'}"
        result["stderr_tail"] = done.stderr[-3000:]
        return result
    result.update(json.loads(lines[-1][len("RESULT "):]))
    return result


def cpu_info() -> dict:
    text = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return {"model": model, "logical_cpus": os.cpu_count(), "amx_bf16": "amx_bf16" in flags,
            "amx_tile": "amx_tile" in flags, "avx512_bf16": "avx512_bf16" in flags, "avx512f": "avx512f" in flags}


def machine_snapshot() -> dict:
    """Load average and the busiest processes (command names only) at this moment."""
    ps = subprocess.run(["ps", "-eo", "pcpu,rss,comm", "--sort=-pcpu"], capture_output=True, text=True).stdout
    return {"time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "loadavg": os.getloadavg(),
            "top_processes": [" ".join(line.split()) for line in ps.splitlines()[1:9]]}


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _plain_cell(plain: dict, key: str, notes: list[str]) -> str:
    """A plain-path number, or a footnote to its one-line error (and the workaround that was timed instead, if any)."""
    if "error" not in plain:
        return _fmt(plain.get(key), ".2f")
    note = f"{plain['family']} plain: {plain['error']}"
    if note not in notes:
        notes.append(note)
    ref = f"[{notes.index(note) + 1}]"
    return f"fails {ref}" if plain.get(key) is None else f"{plain[key]:.2f} (workaround {ref})"


def table_rows(results: list[dict]) -> tuple[list[dict], list[str]]:
    """One row per (family, gr-ft precision): gr-ft next to the plain path of the same family; and the footnotes
    (one-line errors of paths that failed)."""
    plain = {r["family"]: r for r in results if r["path"] == "plain"}
    rows, notes = [], []
    for r in results:
        if r["path"] != "grft":
            continue
        if "error" in r:
            notes.append(f"{r['family']} gr-ft ({r['precision']}): {r['error']}")
        p = plain.get(r["family"], {"family": r["family"]})
        g_s, p_s = r.get("s_per_step"), p.get("s_per_step")
        g_cpu, p_cpu = r.get("cpu_s_per_step"), p.get("cpu_s_per_step")
        tokens = r.get("tokens_per_seq")
        plain_tokens = p.get("tokens_per_seq")
        rows.append({
            "family": f"{r['family']} ({r['precision']})",
            "params_m": _fmt(r.get("params") and r["params"] / 1e6, ".1f"),
            "tokens": _fmt(tokens, ".0f") + (f" / {plain_tokens:.0f}" if plain_tokens and tokens
                                              and round(plain_tokens) != round(tokens) else ""),
            "grft_s": _fmt(g_s, ".2f", f"fails [{len(notes)}]"), "plain_s": _plain_cell(p, "s_per_step", notes),
            "ratio": f"{g_s / p_s:.2f}" if g_s and p_s else "-",
            "grft_cpu": _fmt(g_cpu, ".2f"), "plain_cpu": _plain_cell(p, "cpu_s_per_step", notes),
            "cpu_ratio": f"{g_cpu / p_cpu:.2f}" if g_cpu and p_cpu else "-",
            "grft_gb": _fmt(r.get("peak_gb"), ".2f"),
            # a process that failed while loading has no training peak to compare
            "plain_gb": _fmt(p.get("peak_gb") if p_s is not None else None, ".2f"),
        })
        if p.get("tokenizer_error"):
            notes.append(f"{r['family']} plain AutoTokenizer: {p['tokenizer_error']} (the plain model was fed "
                         f"gr-ft's token ids instead)")
    return rows, notes


COLUMNS = [("family", "family (gr-ft precision)"), ("params_m", "params (M)"), ("tokens", "tokens/seq"),
           ("grft_s", "gr-ft s/step"), ("plain_s", "plain s/step"), ("ratio", "gr-ft/plain"),
           ("grft_cpu", "gr-ft CPU s/step"), ("plain_cpu", "plain CPU s/step"), ("cpu_ratio", "CPU gr-ft/plain"),
           ("grft_gb", "gr-ft peak GB"), ("plain_gb", "plain peak GB")]


def print_table(rows: list[dict], notes: list[str]) -> None:
    print()
    print(" | ".join(title for _, title in COLUMNS))
    for row in rows:
        print(" | ".join(str(row[key]) for key, _ in COLUMNS))
    for i, note in enumerate(notes, 1):
        print(f"[{i}] {note}")


def markdown_table(rows: list[dict], notes: list[str]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[key]).replace("|", "/") for key, _ in COLUMNS) + " |" for row in rows]
    lines += [""] + [f"[{i}] `` {note} ``  " for i, note in enumerate(notes, 1)]
    return "\n".join(lines)


TABLE_START, TABLE_END = "<!-- step-time table: start (written by benchmarks/backbone_step_time.py) -->", \
    "<!-- step-time table: end -->"


def write_markdown(path: Path, report: dict, rows: list[dict], notes: list[str]) -> None:
    """Replace the generated block of ``path`` (or create the file) atomically."""
    cpu, start, end = report["cpu"], report["machine_start"], report["machine_end"]
    block = "\n".join([
        TABLE_START, "",
        f"Command: `{report['command']}`  ",
        f"CPU: {cpu['model']}, {cpu['logical_cpus']} logical CPUs; AMX {'yes' if cpu['amx_bf16'] else 'no'}, "
        f"avx512_bf16 {'yes' if cpu['avx512_bf16'] else 'no'}; torch threads {report['threads']} "
        f"(OMP_NUM_THREADS={report['threads']}); torch {report['torch']}, transformers {report['transformers']}, "
        f"peft {report['peft']}  ",
        f"Batch {BATCH_SIZE}, LoRA r={LORA_R} alpha={LORA_ALPHA}, AdamW lr {LR}; {report['warmup']} warm-up steps, then "
        f"the median of {report['steps']} timed steps"
        + (f" ({report['slow_steps']} for DNABERT-2)" if report.get("slow_steps") else "") + "; inputs seed 0  ",
        f"Load average (1/5/15 min) at start {_loadavg(start)} ({start['time_utc']} UTC), at end {_loadavg(end)} "
        f"({end['time_utc']} UTC)", "",
        markdown_table(rows, notes), "", TABLE_END,
    ])
    text = path.read_text() if path.is_file() else ""
    if TABLE_START in text and TABLE_END in text:
        head, rest = text.split(TABLE_START, 1)
        text = head + block + rest.split(TABLE_END, 1)[1]
    else:
        text = (text + "\n\n" if text else "# LoRA step time and peak memory at published sizes\n\n") + block + "\n"
    _atomic_write(path, text)


def _loadavg(snapshot: dict) -> str:
    return "/".join(f"{v:.2f}" for v in snapshot["loadavg"])


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return
    remote = [key for key in args.families if FAMILIES[key].trust_remote_code]
    if remote and not args.trust_remote_code and not args.table_from:
        raise SystemExit(f"families {remote} run model code shipped with their checkpoints; pass --trust-remote-code "
                         f"to run them, or leave them out with --families")
    if args.table_from:
        report = json.loads(Path(args.table_from).read_text())
        rows, notes = table_rows(report["results"])
        print_table(rows, notes)
        if args.markdown:
            write_markdown(Path(args.markdown), report, rows, notes)
        return
    import peft
    import torch
    import transformers

    cpu = cpu_info()
    precisions = args.precisions or (["fp32", "bf16"] if cpu["amx_bf16"] else ["fp32"])
    report = {"command": " ".join(["python", *[os.path.relpath(sys.argv[0], REPO)], *sys.argv[1:]]),
              "threads": args.threads, "steps": args.steps, "warmup": args.warmup, "slow_steps": args.slow_steps,
              "batch_size": BATCH_SIZE, "cpu": cpu, "python": platform.python_version(), "torch": torch.__version__,
              "transformers": transformers.__version__, "peft": peft.__version__, "machine_start": machine_snapshot()}
    models_dir = Path(args.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for key in args.families:
        family = FAMILIES[key]
        write_weights(family, models_dir)
        configs = [("grft", p) for p in precisions if "grft" in args.paths] + [("plain", "fp32")] * ("plain" in args.paths)
        for path, precision in configs:
            results.append(run_child(args, family, path, precision))
            shown = {k: v for k, v in results[-1].items() if k not in ("stderr_tail", "s_steps", "cpu_s_steps")}
            print(json.dumps(shown), flush=True)
    report["machine_end"] = machine_snapshot()
    report["results"] = results
    rows, notes = table_rows(results)
    print_table(rows, notes)
    if args.output:
        _atomic_write(Path(args.output), json.dumps(report, indent=1) + "\n")
    if args.markdown:
        write_markdown(Path(args.markdown), report, rows, notes)


if __name__ == "__main__":
    main()
