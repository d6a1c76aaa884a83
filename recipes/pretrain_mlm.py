"""Masked-LM pretraining on FASTA (DNABERT / ESM style), from scratch or continued; saves a `save_pretrained` folder.

    # a fresh 2x128 DNABERT-style model (the task configs' shape) on the in-domain DNA corpus (~45 min, 2 CPU cores):
    accelerate launch recipes/pretrain_mlm.py --config recipes/configs/pretrain_dna_kmer.yaml
    torchrun --nproc_per_node 2 recipes/pretrain_mlm.py --config recipes/configs/pretrain_protein.yaml
    python recipes/pretrain_mlm.py --config recipes/configs/pretrain_dna_nucleotide.yaml train.max_steps=200
    # continue pretraining a checkpoint (Hub id or folder) on your corpus:
    ... model.name_or_path=facebook/esm2_t6_8M_UR50D corpus.train_files=my_proteins.fasta.gz
    # then fine-tune from it:
    gr-ft finetune --config recipes/configs/promoter_lora.yaml model.name_or_path=runs/pretrain_dna_kmer

Writes ``output_dir/{config.json, model.safetensors, tokenizer files, pretrain_config.yaml, metrics.json}``
(``metrics.json`` last); ``gr_ft.modeling.load_backbone(output_dir)`` and the fine-tuning recipe load it.
Interrupted runs resume from ``output_dir/checkpoints/last`` (same batches, same masks).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from gr_ft.config import load_config, recipe_arg_parser, save_config
from gr_ft.modeling import load_task_tokenizer
from gr_ft.pretraining import (
    MaskedLMCollator,
    MaskedLMObjective,
    PretrainConfig,
    WindowStream,
    build_mlm_model,
    evaluate_masked_lm,
    resolve_alphabet,
    resolve_span_length,
    tokens_per_window,
    validation_windows,
)
from gr_ft.pretraining.corpus import VALIDATION_SEED
from gr_ft.run_folder import flat_config, prepare_output_dir
from gr_ft.run_state import STAGING, publish_staged
from gr_ft.tokenization import SequenceTokenizer
from gr_ft.training import (
    TrainingState,
    build_accelerator,
    build_optimizer,
    iterate_keeping_rng,
    resolve_precision,
    save_checkpoint,
    start_training,
)
from gr_ft.utils import configure_logging, progress_bar

logger = logging.getLogger("gr_ft.pretrain")

EXAMPLES = """examples:
  gr-ft pretrain --config recipes/configs/pretrain_dna_kmer.yaml
  gr-ft pretrain --config recipes/configs/pretrain_protein.yaml train.max_minutes=30 output_dir=runs/esm_30min
  gr-ft pretrain --config recipes/configs/pretrain_dna_bpe.yaml model.name_or_path=runs/pretrain_dna_bpe \\
      corpus.train_files=my_genome.fa.gz output_dir=runs/bpe_continued
  torchrun --nproc_per_node 2 recipes/pretrain_mlm.py --config recipes/configs/pretrain_dna_nucleotide.yaml
"""


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = recipe_arg_parser("gr-ft pretrain", __doc__, EXAMPLES,
                               "YAML config (recipes/configs/pretrain_*.yaml)",
                               "train.max_steps=500 corpus.window_bp=256")
    return parser.parse_intermixed_args(argv)  # key=value overrides may come before or after --config


def prepare_tokenizer(cfg: PretrainConfig) -> tuple[SequenceTokenizer, str]:
    """The run's tokenizer (configured, the checkpoint's own, or kmer6/protein by alphabet) and the alphabet."""
    alphabet = "dna" if cfg.corpus.alphabet == "auto" else cfg.corpus.alphabet
    tokenizer = load_task_tokenizer(cfg.model, alphabet)
    return tokenizer, resolve_alphabet(cfg.corpus, tokenizer)


def check_window_fits(cfg: PretrainConfig, tokenizer, model, alphabet: str) -> int:
    """Tokens in a full window; raises when it exceeds ``corpus.max_tokens`` or the model's positions."""
    flag = "corpus.crop_aa" if alphabet == "protein" else "corpus.window_bp"
    tokens = tokens_per_window(tokenizer, cfg.corpus, alphabet)
    if tokens is not None and tokens > cfg.corpus.max_tokens:
        raise ValueError(f"{flag}={getattr(cfg.corpus, flag.split('.')[1])} gives {tokens} tokens per window, more "
                         f"than corpus.max_tokens={cfg.corpus.max_tokens}; lower {flag} or raise corpus.max_tokens")
    tokens = tokens or cfg.corpus.max_tokens
    limit = model.config.max_position_embeddings
    absolute = getattr(model.config, "position_embedding_type", "absolute") == "absolute"
    if absolute and tokens > limit:
        raise ValueError(f"windows of up to {tokens} tokens do not fit the model's {limit} positions; lower {flag} "
                         f"(and corpus.max_tokens) or, for a fresh model, raise model.max_position_embeddings")
    return tokens


def build_train_loader(cfg: PretrainConfig, tokenizer, accelerator, window_tokens: int, skip_batches: int) -> DataLoader:
    """This process's shard of the window stream, masked per batch; resumes after ``skip_batches``."""
    processes = accelerator.num_processes
    if cfg.train.batch_size % processes:
        raise ValueError(f"train.batch_size={cfg.train.batch_size} must be divisible by the number of processes "
                         f"({processes})")
    batch_tokens = cfg.train.batch_tokens // processes if cfg.train.batch_tokens else None
    if batch_tokens is not None and batch_tokens < window_tokens:
        raise ValueError(f"train.batch_tokens={cfg.train.batch_tokens} gives {batch_tokens} tokens per process, less "
                         f"than one {window_tokens}-token window; raise it to at least {window_tokens * processes}")
    stream = WindowStream(cfg.corpus, tokenizer, cfg.train.batch_size // processes, seed=cfg.train.seed,
                          rank=accelerator.process_index, world_size=processes, skip_batches=skip_batches,
                          batch_tokens=batch_tokens)
    collator = MaskedLMCollator(tokenizer, cfg.masking, seed=cfg.train.seed * 1000 + accelerator.process_index)
    return DataLoader(stream, batch_size=None, collate_fn=collator, num_workers=cfg.corpus.num_workers,
                      persistent_workers=cfg.corpus.num_workers > 0)


@dataclass
class PretrainRun:
    """One pretraining run once set up: the objective and its optimiser, the window stream, where it writes."""

    cfg: PretrainConfig
    accelerator: Accelerator
    tokenizer: SequenceTokenizer
    objective: torch.nn.Module  # MaskedLMObjective, prepared by accelerate
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: DataLoader
    validate: Callable[[], dict]  # validation perplexity and masked accuracy on the held-out windows
    state: TrainingState
    out: Path
    started: float


def pretrain(cfg: PretrainConfig) -> dict:
    """Run one pretraining job end to end; returns the metrics written to ``metrics.json``."""
    run = setup(cfg)
    throughput = train(run)
    metrics = finish(run, throughput, run.validate())
    run.accelerator.end_training()
    return metrics


def setup(cfg: PretrainConfig) -> PretrainRun:
    """Tokenizer, model, validation windows and window stream; checks before the first write; resume if asked."""
    started = time.time()
    accelerator = build_accelerator(cfg.train, cfg.output_dir)
    set_seed(cfg.train.seed)
    tokenizer, alphabet = prepare_tokenizer(cfg)
    model = build_mlm_model(cfg.model, tokenizer)
    window_tokens = check_window_fits(cfg, tokenizer, model, alphabet)
    held_out = validation_windows(cfg.corpus, tokenizer)
    resume_from = prepare_output_dir(cfg)  # a fresh start drops an old metrics.json: unfinished until the end
    out = Path(cfg.output_dir)
    accelerator.print(describe_run(cfg, tokenizer, alphabet, model, window_tokens, len(held_out)))
    objective = MaskedLMObjective(model)
    optimizer, scheduler = build_optimizer(objective, cfg.train, cfg.train.max_steps)
    objective, optimizer, scheduler = accelerator.prepare(objective, optimizer, scheduler)
    state = start_training(accelerator, cfg, "gr-ft-pretrain", resume_from)
    loader = build_train_loader(cfg, tokenizer, accelerator, window_tokens, state.global_step * cfg.train.grad_accum_steps)
    val_collator = MaskedLMCollator(tokenizer, cfg.masking, seed=VALIDATION_SEED)

    def validate() -> dict[str, float]:
        return evaluate_masked_lm(objective, held_out, val_collator, cfg.train.eval_batch_size, accelerator)

    return PretrainRun(cfg, accelerator, tokenizer, objective, optimizer, scheduler, loader, validate, state, out,
                       started)


def describe_run(cfg: PretrainConfig, tokenizer, alphabet: str, model, window_tokens: int, n_validation: int) -> str:
    """One line saying what this run trains on what."""
    source = f"continued from {cfg.model.name_or_path}" if cfg.model.name_or_path else "from scratch"
    return (
        f"{alphabet} corpus {cfg.corpus.train_files}; tokenizer {tokenizer.kind} ({tokenizer.vocab_size} tokens), "
        f"windows <= {window_tokens} tokens, mask span {resolve_span_length(cfg.masking, tokenizer)}; "
        f"{model.__class__.__name__} {sum(p.numel() for p in model.parameters()):,} parameters ({source}); "
        f"{n_validation} validation windows; precision {resolve_precision(cfg.train.precision)}; "
        f"processes {PartialState().num_processes}"
    )


class Throughput:
    """Real (unpadded) tokens per second of training steps, reduced over processes; step 1 is warm-up."""

    def __init__(self):
        self.tokens, self.seconds, self.steps = 0, 0.0, 0

    def add(self, tokens: int, seconds: float) -> None:
        self.steps += 1
        if self.steps > 1:
            self.tokens, self.seconds = self.tokens + tokens, self.seconds + seconds

    def summary(self, accelerator) -> dict[str, float]:
        totals = torch.tensor([float(self.tokens), self.seconds], device=accelerator.device)
        if accelerator.num_processes > 1:
            totals = accelerator.reduce(totals, reduction="sum")
        seconds_per_process = float(totals[1]) / accelerator.num_processes
        return {"train_tokens": int(totals[0]), "train_tokens_per_s": float(totals[0]) / max(seconds_per_process, 1e-9)}


def out_of_time(started: float, max_minutes: Optional[float], accelerator) -> bool:
    """Whether the wall-clock budget is spent; every process takes the same decision."""
    if max_minutes is None:
        return False
    over = torch.tensor(float(time.monotonic() - started > 60 * max_minutes), device=accelerator.device)
    if accelerator.num_processes > 1:
        over = accelerator.reduce(over, reduction="max")
    return bool(over > 0)


def train_step(run: PretrainRun, batches) -> tuple[dict, int]:
    """One optimiser step over ``grad_accum_steps`` batches; returns summed (loss, correct, count) and tokens."""
    accelerator, objective, optimizer, scheduler = run.accelerator, run.objective, run.optimizer, run.scheduler
    sums = {"loss": 0.0, "correct": 0, "count": 0}
    tokens = 0
    for _ in range(run.cfg.train.grad_accum_steps):
        batch = {k: v.to(accelerator.device) for k, v in next(batches).items()}
        with accelerator.accumulate(objective):
            out = objective(**batch)
            accelerator.backward(out["loss"])
            if accelerator.sync_gradients and run.cfg.train.max_grad_norm:
                accelerator.clip_grad_norm_(objective.parameters(), run.cfg.train.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        count = int(out["count"])
        sums["loss"] += float(out["loss"].detach()) * count
        sums["correct"] += int(out["correct"])
        sums["count"] += count
        tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
    return sums, tokens


def train(run: PretrainRun) -> dict:
    """Steps until ``max_steps`` or ``max_minutes``: logs loss and masked accuracy, validates, checkpoints.

    Returns the throughput summary and what stopped the run."""
    cfg, accelerator, state, train = run.cfg, run.accelerator, run.state, run.cfg.train
    started, throughput, since_log = time.monotonic(), Throughput(), {"loss": 0.0, "correct": 0, "count": 0}
    progress = progress_bar(total=train.max_steps, initial=state.global_step, desc="pretrain",
                            enabled=accelerator.is_local_main_process)
    batches = iterate_keeping_rng(run.loader)  # starting the loader must not shift the dropout stream
    run.objective.train()
    config = flat_config(cfg)  # stored in every checkpoint: a resume with another config is refused
    stopped_by = "max_steps"
    while state.global_step < train.max_steps:
        if out_of_time(started, train.max_minutes, accelerator):
            stopped_by = "max_minutes"
            break
        step_started = time.perf_counter()
        sums, tokens = train_step(run, batches)
        throughput.add(tokens, time.perf_counter() - step_started)
        since_log = {k: since_log[k] + sums[k] for k in since_log}
        state.global_step += 1
        progress.update(1)
        if state.global_step % train.log_every_steps == 0:
            log_progress(accelerator, progress, since_log, run.scheduler, throughput, state.global_step)
            since_log = {"loss": 0.0, "correct": 0, "count": 0}
        if train.eval_every_steps and state.global_step % train.eval_every_steps == 0:
            record_validation(accelerator, run.validate(), state)
        if train.checkpoint_every_steps and state.global_step % train.checkpoint_every_steps == 0:
            save_checkpoint(accelerator, state, run.out / "checkpoints" / "last", config=config)
    progress.close()
    return {**throughput.summary(accelerator), "stopped_by": stopped_by}


def log_progress(accelerator, progress, since_log: dict, scheduler, throughput: Throughput, step: int) -> None:
    """Progress-bar postfix and tracker log of this process's loss and masked accuracy since the last log."""
    loss = since_log["loss"] / max(since_log["count"], 1)
    accuracy = since_log["correct"] / max(since_log["count"], 1)
    rate = throughput.tokens / max(throughput.seconds, 1e-9)
    progress.set_postfix(refresh=False, loss=f"{loss:.4f}", acc=f"{accuracy:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}",
                         tok_s=f"{rate * accelerator.num_processes:.0f}")
    accelerator.log({"train/loss": loss, "train/masked_accuracy": accuracy}, step=step)


def record_validation(accelerator, result: dict, state: TrainingState) -> None:
    """Append validation metrics to the history and print them."""
    state.history.append({"step": state.global_step, **{f"val_{k}": v for k, v in result.items()}})
    accelerator.log({f"val/{k}": v for k, v in result.items()}, step=state.global_step)
    if state.best_metric is None or result["perplexity"] < state.best_metric:
        state.best_metric = result["perplexity"]
    accelerator.print(f"step {state.global_step}: validation perplexity {result['perplexity']:.3f}, "
                      f"masked accuracy {result['accuracy']:.4f}")


def finish(run: PretrainRun, throughput: dict, final: dict) -> dict:
    """Save model + tokenizer with ``save_pretrained``; ``metrics.json`` lands last and checkpoints go.

    ``final`` is the last validation (perplexity, masked accuracy)."""
    cfg, accelerator, state, out = run.cfg, run.accelerator, run.state, run.out
    metrics = {
        "steps": state.global_step,
        **throughput,
        **{f"val_{k}": v for k, v in final.items()},
        "history": state.history,
        "seed": cfg.train.seed,
        "processes": accelerator.num_processes,
        "wall_time_s": round(time.time() - run.started, 1),
    }
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:  # staged, then moved in; metrics.json last, then checkpoints/ goes
        staging = out / STAGING
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        accelerator.unwrap_model(run.objective).model.save_pretrained(str(staging))
        run.tokenizer.save_pretrained(staging)
        save_config(cfg, staging / "pretrain_config.yaml")
        publish_staged(out, staging, json.dumps(metrics, indent=2) + "\n")
    accelerator.wait_for_everyone()
    accelerator.print(
        f"{state.global_step} steps ({throughput['stopped_by']}), {throughput['train_tokens_per_s']:.0f} tokens/s; "
        f"validation perplexity {final['perplexity']:.3f}, masked accuracy {final['accuracy']:.4f}"
    )
    accelerator.print(f"model folder: {out} (fine-tune with model.name_or_path={out})")
    return metrics


def main(argv: Optional[list[str]] = None) -> dict:
    configure_logging(libraries=logging.INFO)
    args = parse_args(argv)
    cfg = load_config(PretrainConfig, args.config, args.overrides)
    return pretrain(cfg)


if __name__ == "__main__":
    from gr_ft.errors import run_command

    sys.exit(run_command(main, sys.argv[1:], prog=Path(__file__).name))
