"""Fine-tuning throughput and memory: gr-ft against the plain Hugging Face path, side by side in one run.

    python benchmarks/finetune_throughput.py --data ../shared/data/localization/deeploc1 --steps 8 --batch-sizes 4 16

Both paths fine-tune LoRA (r=8) on an ESM-2-8M-shaped model (6 layers x 320, 20 heads) built from config on
DeepLoc proteins cut at 1000 residues, bf16 autocast on CPU:

* plain: transformers ``EsmForSequenceClassification`` + peft ``LoraConfig(task_type="SEQ_CLS")`` + ``Trainer``
  (random batches, ``DataCollatorWithPadding``), EsmConfig's default dropouts;
* plain, attention dropout 0: the same with ``attention_probs_dropout_prob=0`` (isolates that one setting);
* gr-ft: ``gr_ft`` data path (length-bucketed batches, dynamic padding), ``SequenceModel`` + ``apply_adapter``,
  accelerate loop (``gr_ft.training.train_epoch``), attention dropout 0 by default.

Each configuration runs in its own process under a memory cap (``--memory-limit-gb``), so one that would be
killed for memory reports "out of memory" instead of taking the machine down. Reported: real (non-padding)
tokens per second over the steps after ``--warmup`` steps, and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ESM_8M = dict(hidden_size=320, num_layers=6, num_heads=20, intermediate_size=1280)
MAX_RESIDUES = 1000
PATHS = ("plain", "plain_attn_dropout0", "grft")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/localization/deeploc1")
    parser.add_argument("--steps", type=int, default=8, help="optimiser steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="first steps not timed")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--memory-limit-gb", type=float, default=16.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", help="also write the results as JSON here")
    parser.add_argument("--child", nargs=2, metavar=("PATH", "BATCH"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def load_train_frame(data: str):
    from gr_ft.config import DataConfig
    from gr_ft.data import load_splits

    return load_splits(DataConfig(path=data), "protein", seed=0)["train"]


class StepClock:
    """Wall time and real tokens of the steps after warm-up."""

    def __init__(self, warmup: int):
        self.warmup, self.steps, self.tokens, self.start = warmup, 0, 0, None

    def batch_done(self, real_tokens: int) -> None:
        self.steps += 1
        if self.steps == self.warmup:
            self.start = time.perf_counter()
        elif self.steps > self.warmup:
            self.tokens += real_tokens

    def tokens_per_s(self) -> float:
        return self.tokens / (time.perf_counter() - self.start)


def run_plain(args, batch_size: int, attention_dropout: float) -> float:
    """transformers + peft + Trainer, as the model cards of ESM fine-tuning show it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (DataCollatorWithPadding, EsmConfig, EsmForSequenceClassification, Trainer,
                              TrainerCallback, TrainingArguments)

    from gr_ft.labels import infer_label_spec
    from gr_ft.tokenization import SequenceTokenizer

    split = load_train_frame(args.data)
    spec = infer_label_spec(split.frame["label"])
    hf = SequenceTokenizer.from_pretrained("protein").hf
    encoded = hf(split.frame["sequence"].tolist(), truncation=True, max_length=MAX_RESIDUES + 2)
    rows = [{"input_ids": ids, "attention_mask": m, "labels": spec.encode(lab, "train")}
            for ids, m, lab in zip(encoded["input_ids"], encoded["attention_mask"], split.frame["label"])]
    config = EsmConfig(vocab_size=33, pad_token_id=1, mask_token_id=32, position_embedding_type="rotary",
                       max_position_embeddings=1026, num_labels=spec.num_labels, hidden_size=320,
                       num_hidden_layers=6, num_attention_heads=20, intermediate_size=1280,
                       attention_probs_dropout_prob=attention_dropout)
    model = get_peft_model(EsmForSequenceClassification(config),
                           LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=["query", "key", "value"]))
    clock = StepClock(args.warmup)
    collator = DataCollatorWithPadding(hf)

    def counting_collator(features):
        batch = collator(features)
        clock.pending = int(batch["attention_mask"].sum())
        return batch

    class Clock(TrainerCallback):
        def on_step_end(self, *_args, **_kwargs):
            clock.batch_done(clock.pending)

    training = TrainingArguments(output_dir="/tmp/grft_bench_plain", per_device_train_batch_size=batch_size,
                                 max_steps=args.steps, bf16=True, use_cpu=True, report_to=[], save_strategy="no",
                                 logging_strategy="no", learning_rate=1e-3, seed=0, dataloader_num_workers=0)
    Trainer(model=model, args=training, train_dataset=rows, data_collator=counting_collator,
            callbacks=[Clock()]).train()
    return clock.tokens_per_s()


def run_grft(args, batch_size: int) -> float:
    """gr-ft's own path: the pieces recipes/finetune_lora.py is made of."""
    from gr_ft.adapters import apply_adapter
    from gr_ft.config import AdapterConfig, ModelConfig, TrainConfig
    from gr_ft.data import encode_split, make_dataloader
    from gr_ft.labels import infer_label_spec
    from gr_ft.modeling import build_task_model
    from gr_ft.tokenization import SequenceTokenizer
    from gr_ft.training import TrainingState, build_accelerator, build_optimizer, train_epoch

    split = load_train_frame(args.data)
    spec = infer_label_spec(split.frame["label"])
    tokenizer = SequenceTokenizer.from_pretrained("protein")
    data = encode_split(split, tokenizer, spec, max_length=MAX_RESIDUES + 2, crop="start")
    model, _ = build_task_model(ModelConfig(arch="esm", **ESM_8M), tokenizer, spec.problem_type, spec.num_labels)
    model = apply_adapter(model, AdapterConfig(r=8, alpha=16, target_modules=["query", "key", "value"]))
    cfg = TrainConfig(precision="bf16", batch_size=batch_size, max_steps=args.steps, lr=1e-3, log_every_steps=10**9)
    accelerator = build_accelerator(cfg)
    loader = make_dataloader(data, tokenizer, batch_size, shuffle=True, seed=0)
    optimizer, scheduler = build_optimizer(model, cfg, len(loader))
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    clock, state = StepClock(args.warmup), TrainingState()

    def on_step(step_state: TrainingState) -> None:
        clock.batch_done(step_state.real_tokens - on_step.seen)
        on_step.seen = step_state.real_tokens

    on_step.seen = 0
    train_epoch(model, loader, optimizer, scheduler, accelerator, cfg, state=state, on_step=on_step)
    return clock.tokens_per_s()


def child_main(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    path, batch_size = args.child[0], int(args.child[1])
    if path == "grft":
        tokens_per_s = run_grft(args, batch_size)
    else:
        tokens_per_s = run_plain(args, batch_size, attention_dropout=0.1 if path == "plain" else 0.0)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps({"tokens_per_s": tokens_per_s, "peak_gb": peak_gb}))


def run_child(args, path: str, batch_size: int) -> dict:
    limit = int(args.memory_limit_gb * 1024**3)

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    command = [sys.executable, __file__, "--data", args.data, "--steps", str(args.steps), "--warmup",
               str(args.warmup), "--threads", str(args.threads), "--child", path, str(batch_size)]
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=cap_memory,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    result = {"path": path, "batch_size": batch_size, "wall_s": round(time.time() - started, 1)}
    if done.returncode != 0:
        stderr = done.stderr.lower()
        oom = any(sign in stderr for sign in ("memoryerror", "out of memory", "cannot allocate memory",
                                               "can't allocate memory")) or done.returncode < 0
        result["error"] = f"out of memory (cap {args.memory_limit_gb:g} GB)" if oom else done.stderr[-500:]
        return result
    result.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return result


def print_table(results: list[dict]) -> None:
    """Side by side: each configuration against the plain path at the same batch, and at its best batch."""
    plain = {r["batch_size"]: r.get("tokens_per_s") for r in results if r["path"] == "plain"}
    best_plain = max((v for v in plain.values() if v), default=None)
    print(f"\n{'path':<22}{'batch':>6}{'real tok/s':>12}{'peak GB':>9}{'vs plain':>10}{'vs best plain':>15}")
    for r in results:
        if "error" in r:
            print(f"{r['path']:<22}{r['batch_size']:>6}  {r['error']}")
            continue
        base = plain.get(r["batch_size"])
        ratio = f"{r['tokens_per_s'] / base:.2f}x" if base else "-"
        best = f"{r['tokens_per_s'] / best_plain:.2f}x" if best_plain else "-"
        print(f"{r['path']:<22}{r['batch_size']:>6}{r['tokens_per_s']:>12.0f}{r['peak_gb']:>9.2f}{ratio:>10}{best:>15}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return
    if not Path(args.data).is_dir():
        sys.exit(f"error: {args.data} is not a dataset folder (DeepLoc 1.0 lives in ../shared/data/localization/deeploc1)")
    results = []
    for batch_size in args.batch_sizes:
        for path in args.paths:
            results.append(run_child(args, path, batch_size))
            print(json.dumps(results[-1]), flush=True)
    print_table(results)
    if args.output:
        Path(args.output).write_text(json.dumps({"command": " ".join(sys.argv), "threads": args.threads,
                                                 "steps": args.steps, "warmup": args.warmup, "results": results},
                                                indent=1) + "\n")


if __name__ == "__main__":
    main()
