"""Masked-LM pretraining throughput: the gr-ft recipe against the plain Hugging Face Trainer, side by side.

    PYTHONPATH=. python benchmarks/pretrain_throughput.py            # BERT 4x256, nucleotide and 6-mer, ~4 min
    PYTHONPATH=. python benchmarks/pretrain_throughput.py --tokenizers nucleotide --scenarios fixed --steps 20

Both paths train ``BertForMaskedLM`` built from the same config (SDPA attention, bf16 autocast) on
the same windows: gr-ft's ``WindowStream`` draws them once, the recipe trains on exactly those
batches, and the Trainer gets the same windows as a dataset. Each path runs ``--steps`` steps per
repeat; the first step is not timed; paths alternate so that load from other jobs hits both.
tokens/s counts real (unpadded) tokens, special tokens included.

- plain HF: ``Trainer`` + ``DataCollatorForLanguageModeling`` (dataset with ``special_tokens_mask``,
  as ``run_mlm.py`` prepares it); random batches padded to their longest window.
- gr-ft: ``recipes/pretrain_mlm.py``: length-bucketed stream, vectorised masking, MLM head and loss
  on masked positions only, attention without a mask when a batch has no padding.

Scenarios: ``fixed`` uses only full windows of ``--window-bp`` (no padding on either path: an
engine comparison); ``natural`` uses the corpus as the pretraining configs do (records of 70-500 bp
taken whole, so lengths vary): the Trainer pads random batches of ``--batch-size`` windows, gr-ft
buckets by length under a token budget of ``--batch-size`` full windows per step.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForMaskedLM,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from gr_ft.config import load_config  # noqa: E402
from gr_ft.modeling import build_backbone_config  # noqa: E402
from gr_ft.pretraining import PretrainConfig, WindowStream  # noqa: E402
from gr_ft.tokenization import SequenceTokenizer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "data" / "corpus" / "indomain_dna_train.fasta.gz"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default=str(CORPUS))
    parser.add_argument("--tokenizers", default="nucleotide,kmer6", help="comma-separated: nucleotide, kmer3..kmer6, bpe")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate-size", type=int, default=1024)
    parser.add_argument("--dropout", type=float, default=0.0, help="as in recipes/configs/pretrain_*.yaml")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--window-bp", type=int, default=200)
    parser.add_argument("--steps", type=int, default=12, help="steps per path per repeat (the first is not timed)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scenarios", default="fixed,natural")
    parser.add_argument("--out", help="also write the results as JSON here")
    return parser.parse_args(argv)


def import_recipe(name: str):
    try:
        return importlib.import_module(f"gr_ft.recipes.{name}")
    except ModuleNotFoundError:
        sys.path.insert(0, str(REPO))
        return importlib.import_module(f"recipes.{name}")


def recipe_overrides(args, tokenizer: str, scenario: str, out: Path) -> list[str]:
    """The pretraining config both paths share (the recipe reads it; the HF path copies model and windows)."""
    if scenario == "fixed":
        window = [f"corpus.window_bp={args.window_bp}", f"corpus.min_length={args.window_bp}"]
    else:  # records taken whole; a token budget of batch_size full windows per step
        window = ["corpus.window_bp=510", f"train.batch_tokens={args.batch_size * (args.window_bp + 2)}"]
    return [
        f"corpus.train_files={args.corpus}", f"output_dir={out}", "overwrite=true", *window,
        "corpus.shuffle_buffer=50000", "corpus.validation_windows=16",
        f"model.tokenizer={tokenizer}", "model.arch=bert", f"model.hidden_size={args.hidden_size}",
        f"model.num_layers={args.layers}", f"model.num_heads={args.heads}",
        f"model.intermediate_size={args.intermediate_size}", f"model.dropout={args.dropout}",
        f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}", "train.precision=bf16",
        "train.eval_every_steps=0", "train.checkpoint_every_steps=0", f"train.log_every_steps={args.steps}",
        "train.warmup_fraction=0",
    ]


def stream_windows(cfg: PretrainConfig, tokenizer, steps: int) -> list[list[int]]:
    """Exactly the windows the recipe trains on in ``steps`` steps (same stream, same seed)."""
    stream = WindowStream(cfg.corpus, tokenizer, cfg.train.batch_size, seed=cfg.train.seed)
    return [ids.tolist() for batch in itertools.islice(iter(stream), steps) for ids in batch.sequences]


class StepClock(TrainerCallback):
    """Wall time from the end of step 1 to the end of the last step."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1:
            self.first = time.perf_counter()
        self.last = time.perf_counter()


class CountingCollator(DataCollatorForLanguageModeling):
    """The HF collator, recording each batch's real tokens."""

    def __call__(self, examples, return_tensors=None):
        batch = super().__call__(examples, return_tensors)
        self.tokens.append(int(batch["attention_mask"].sum()))
        return batch


def hf_tokens_per_s(cfg: PretrainConfig, tokenizer, windows: list[list[int]], out: Path) -> float:
    """Plain Hugging Face path: Trainer + DataCollatorForLanguageModeling, same model config, bf16."""
    torch.manual_seed(cfg.train.seed)
    config = build_backbone_config(cfg.model, tokenizer)
    model = AutoModelForMaskedLM.from_config(config, attn_implementation="sdpa")
    special = set(tokenizer.special_token_ids)
    data = Dataset.from_dict({"input_ids": windows,
                              "special_tokens_mask": [[int(t in special) for t in w] for w in windows]})
    collator = CountingCollator(tokenizer.hf, mlm_probability=cfg.masking.mlm_probability)
    collator.tokens = []
    clock = StepClock()
    training_args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=cfg.train.batch_size, max_steps=cfg.train.max_steps,
        learning_rate=cfg.train.lr, weight_decay=cfg.train.weight_decay, max_grad_norm=cfg.train.max_grad_norm,
        bf16=True, use_cpu=True, logging_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, seed=cfg.train.seed,
    )
    Trainer(model=model, args=training_args, train_dataset=data, data_collator=collator, callbacks=[clock]).train()
    timed_tokens = sum(collator.tokens[1 : cfg.train.max_steps])  # batches of steps 2..N
    return timed_tokens / (clock.last - clock.first)


def grft_tokens_per_s(overrides: list[str]) -> float:
    """gr-ft path: the pretraining recipe itself, on the same config."""
    metrics = import_recipe("pretrain_mlm").main(overrides)
    return metrics["train_tokens_per_s"]


def run_scenario(args, tokenizer_name: str, scenario: str, workdir: Path) -> dict:
    overrides = recipe_overrides(args, tokenizer_name, scenario, workdir / "grft")
    cfg = load_config(PretrainConfig, None, overrides)
    tokenizer = SequenceTokenizer.from_pretrained(tokenizer_name)
    windows = stream_windows(cfg, tokenizer, args.steps)
    lengths = [len(w) for w in windows]
    rates = {"hf": [], "grft": []}
    for _ in range(args.repeats):
        rates["hf"].append(hf_tokens_per_s(cfg, tokenizer, windows, workdir / "hf"))
        rates["grft"].append(grft_tokens_per_s(overrides))
    parameters = sum(p.numel() for p in AutoModelForMaskedLM.from_config(
        build_backbone_config(cfg.model, tokenizer)).parameters())
    best = {path: max(values) for path, values in rates.items()}
    return {
        "scenario": scenario, "tokenizer": tokenizer_name, "parameters": parameters,
        "model": f"bert {args.layers}x{args.hidden_size} (intermediate {args.intermediate_size}, {args.heads} heads, "
                 f"dropout {args.dropout})",
        "batch_size": args.batch_size, "window_tokens": f"{min(lengths)}-{max(lengths)} (mean {statistics.mean(lengths):.0f})",
        "steps": args.steps, "repeats": args.repeats, "tokens_per_s": rates, "best": best,
        "ratio_best": best["grft"] / best["hf"],
        "ratio_median": statistics.median(rates["grft"]) / statistics.median(rates["hf"]),
    }


def main(argv=None) -> list[dict]:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for tokenizer, scenario in itertools.product(args.tokenizers.split(","), args.scenarios.split(",")):
            results.append(run_scenario(args, tokenizer, scenario, Path(tmp) / f"{tokenizer}_{scenario}"))
    print(f"\n{'scenario':<9} {'tokenizer':<11} {'parameters':>10} {'windows (tokens)':<24} {'plain HF tok/s':>15} "
          f"{'gr-ft tok/s':>12} {'ratio':>6}")
    for r in results:
        print(f"{r['scenario']:<9} {r['tokenizer']:<11} {r['parameters']:>10,} {r['window_tokens']:<24} "
              f"{r['best']['hf']:>15.0f} {r['best']['grft']:>12.0f} {r['ratio_best']:>6.2f}")
    print(f"model: {results[0]['model']}; batch {args.batch_size}; best of {args.repeats} alternating repeats "
          f"of {args.steps} steps (all: see --out)")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
