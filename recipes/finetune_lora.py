"""Fine-tune a DNA or protein language model with a LoRA head, keep the best dev epoch, test it, save a run folder.

    # the built-in demo (synthetic promoters, tiny backbone, a few minutes on 2 CPU cores):
    gr-ft finetune
    # any config, one process or many:
    accelerate launch recipes/finetune_lora.py --config recipes/configs/promoter_lora.yaml
    torchrun --nproc_per_node 2 recipes/finetune_lora.py --config recipes/configs/demo.yaml
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/finetune_lora.py --config ...
    # override any field:
    ... train.lr=3e-4 adapter.r=16 output_dir=runs/promoter_r16

Writes ``output_dir/{metrics.json, adapter/, tokenizer/, label_map.json, config.yaml, base_model.json}``;
reload with ``gr_ft.load_run(output_dir)``. Interrupted runs resume from ``output_dir/checkpoints/last``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from gr_ft.adapters import apply_adapter, trainable_parameter_count, total_parameter_count
from gr_ft.backbones.record import BaseModelRecord
from gr_ft.config import FinetuneConfig, load_config, recipe_arg_parser
from gr_ft.data import (class_weights, encode_split, load_splits, make_dataloader, pad_multiple_for,
                        random_window_split)
from gr_ft.data_checks import finetune_data_checks
from gr_ft.encoded_cache import load_or_encode
from gr_ft.evaluation import PRIMARY_METRIC
from gr_ft.labels import LabelSpec, infer_label_spec
from gr_ft.modeling import build_task_model, check_input_length, keep_fresh_backbone, load_task_tokenizer
from gr_ft.packing import check_packing, enable_packing, make_packed_dataloader
from gr_ft.run_folder import flat_config, prepare_output_dir, write_run
from gr_ft.tokenization import SequenceTokenizer
from gr_ft.training import (
    TrainingState,
    build_accelerator,
    build_optimizer,
    enable_gradient_checkpointing,
    evaluate,
    is_improvement,
    load_trainable_weights,
    precision_of,
    save_checkpoint,
    start_training,
    save_trainable_weights,
    train_epoch,
    training_done,
)
from gr_ft.utils import configure_logging

logger = logging.getLogger("gr_ft.finetune")

EXAMPLES = """examples:
  gr-ft finetune                                            # built-in demo, synthetic promoters
  gr-ft finetune --config recipes/configs/promoter_lora.yaml train.epochs=2
  gr-ft finetune data.path=my_peaks.csv.gz model.name_or_path=./dnabert6 output_dir=runs/peaks
  gr-ft finetune --seeds 0,1,2 output_dir=runs/demo3             # runs/demo3/seed_N + seeds_summary.json
  torchrun --nproc_per_node 2 recipes/finetune_lora.py --config recipes/configs/demo.yaml
"""


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = recipe_arg_parser("gr-ft finetune", __doc__, EXAMPLES,
                               "YAML config (recipes/configs/*.yaml); defaults are the built-in demo",
                               "train.lr=3e-4 adapter.r=16")
    parser.add_argument("--seeds", help="run once per seed (e.g. 0,1,2) into output_dir/seed_N and write "
                                         "output_dir/seeds_summary.json with the mean ± sd of each test metric")
    return parser.parse_intermixed_args(argv)  # key=value overrides may come before or after --config


def prepare_data(cfg: FinetuneConfig):
    """Tokenizer, label scheme and encoded splits; all input errors surface here, before any write."""
    alphabet = "dna" if cfg.data.alphabet == "auto" else cfg.data.alphabet
    tokenizer = load_task_tokenizer(cfg.model, alphabet)
    if cfg.data.alphabet == "auto":
        alphabet = tokenizer.alphabet
    splits = load_splits(cfg.data, alphabet, cfg.train.seed)
    train_frame = splits["train"].frame
    spec = infer_label_spec(train_frame[cfg.data.label_column], cfg.data.problem_type,
                            train_frame[cfg.data.sequence_column].tolist(), cfg.data.multilabel_separator,
                            where=[f"{splits['train'].source}:{line}" for line in train_frame["_line"]])
    encode = load_or_encode if cfg.data.cache else encode_split  # the cache returns encode_split's result
    encoded = {
        name: encode(split, tokenizer, spec, cfg.data.max_length, crop=cfg.data.crop,
                     sequence_column=cfg.data.sequence_column, label_column=cfg.data.label_column)
        for name, split in splits.items()
    }
    if cfg.data.crop == "random":  # a new window per epoch; dev/test keep the centre window encoded above
        encoded["train"] = random_window_split(splits["train"], tokenizer, spec, cfg.data.max_length,
                                               seed=cfg.train.seed, sequence_column=cfg.data.sequence_column,
                                               label_column=cfg.data.label_column)
    return tokenizer, spec, encoded


def build_loaders(cfg: FinetuneConfig, tokenizer, encoded, processes: int, device: torch.device | str = "cpu",
                  packing_start: Optional[int] = None):
    """Train, dev and test loaders; a token budget (``train.batch_tokens``) is shared out across processes.
    Batches are padded to a multiple of 8 tokens on a GPU only (:func:`gr_ft.data.pad_multiple_for`).
    ``packing_start`` (the backbone's first position id) makes the training batches packed (``train.packing``)."""
    budget = None if cfg.train.batch_tokens is None else max(cfg.train.batch_tokens // processes, 1)
    whole = budget is None and not cfg.train.packing  # else each process takes whole batches (split_batches=False)
    rows = cfg.train.batch_size if whole else max(cfg.train.batch_size // processes, 1)
    multiple = pad_multiple_for(device)
    if cfg.train.packing:
        train = make_packed_dataloader(encoded["train"], packing_start, rows, seed=cfg.train.seed,
                                       batch_tokens=budget)
    else:
        train = make_dataloader(encoded["train"], tokenizer, rows, shuffle=True, seed=cfg.train.seed,
                                bucket_by_length=cfg.train.bucket_by_length, batch_tokens=budget,
                                pad_to_multiple_of=multiple)
    dev = make_dataloader(encoded["dev"], tokenizer, cfg.train.eval_batch_size, shuffle=False,
                          pad_to_multiple_of=multiple)
    test = make_dataloader(encoded["test"], tokenizer, cfg.train.eval_batch_size, shuffle=False,
                           pad_to_multiple_of=multiple)
    return train, dev, test


@dataclass
class FinetuneRun:
    """One fine-tuning run once set up: what it trains, on what, where it writes, and how far it got."""

    cfg: FinetuneConfig
    accelerator: Accelerator
    tokenizer: SequenceTokenizer
    spec: LabelSpec
    base: BaseModelRecord
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loaders: dict[str, torch.utils.data.DataLoader]  # train, dev, test
    state: TrainingState
    out: Path
    started: float
    data_checks: Optional[dict] = None

    @property
    def primary_metric(self) -> str:
        return PRIMARY_METRIC[self.spec.problem_type]


def finetune(cfg: FinetuneConfig, on_evaluation=None) -> dict:
    """Run one fine-tuning job end to end; returns the metrics written to ``metrics.json``.

    ``on_evaluation(epoch, dev_metrics)``, if given, is called after each dev evaluation (and its checkpoint);
    it may raise (e.g. ``optuna.TrialPruned``) to stop the run there.
    """
    run = setup(cfg)
    train(run, on_evaluation)
    metrics = finish(run)
    run.accelerator.end_training()
    return metrics


def setup(cfg: FinetuneConfig) -> FinetuneRun:
    """Read and check the data, build the model and adapter, prepare them with accelerate, resume if asked."""
    started = time.time()
    # a packed row or a token-budget batch cannot be split across processes: each process takes whole batches
    accelerator = build_accelerator(cfg.train, cfg.output_dir,
                                    split_batches=cfg.train.batch_tokens is None and not cfg.train.packing)
    set_seed(cfg.train.seed)
    tokenizer, spec, encoded = prepare_data(cfg)
    data_checks = finetune_data_checks(cfg, tokenizer)
    weights = None
    if cfg.train.class_weighting == "balanced" and spec.problem_type in ("binary", "multiclass"):
        weights = class_weights(encoded["train"], spec.num_labels)
    model, base = build_task_model(cfg.model, tokenizer, spec.problem_type, spec.num_labels, weights)
    check_input_length(model, cfg.data.max_length)
    if cfg.train.packing:
        check_packing(model.spec)
    resume_from = prepare_output_dir(cfg)  # every check above runs before the first write
    out = Path(cfg.output_dir)
    if accelerator.is_main_process:
        keep_fresh_backbone(model, base, out / "checkpoints" / "backbone")
    if base.built_from_config and cfg.adapter.method != "full":
        logger.warning("the backbone is built from config (random weights): %s only learns low-rank updates of "
                       "random weights; for real results start from a pretrained backbone (model.name_or_path, or "
                       "gr-ft pretrain) or train every weight (adapter.method=full)", cfg.adapter.method)
    if cfg.train.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    packing_start = None
    if cfg.train.packing:  # after the fresh backbone is saved: its config keeps transformers' SDPA
        enable_packing(model)
        packing_start = model.spec.packing_position_start(model.config)
    model = apply_adapter(model, cfg.adapter)
    accelerator.print(
        f"{spec.problem_type} task, {spec.num_labels} outputs; train/dev/test = "
        f"{len(encoded['train'])}/{len(encoded['dev'])}/{len(encoded['test'])}; trainable parameters "
        f"{trainable_parameter_count(model):,} of {total_parameter_count(model):,}; "
        f"precision {precision_of(accelerator)}; processes {accelerator.num_processes}"
    )
    train_loader, dev_loader, test_loader = build_loaders(cfg, tokenizer, encoded, accelerator.num_processes,
                                                          accelerator.device, packing_start)
    optimizer, scheduler = build_optimizer(model, cfg.train, len(train_loader))
    model, optimizer, train_loader, dev_loader, test_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, dev_loader, test_loader, scheduler
    )
    state = start_training(accelerator, cfg, "gr-ft", resume_from)
    loaders = {"train": train_loader, "dev": dev_loader, "test": test_loader}
    return FinetuneRun(cfg, accelerator, tokenizer, spec, base, model, optimizer, scheduler, loaders, state, out,
                       started, data_checks)


def train(run: FinetuneRun, on_evaluation=None) -> None:
    """Epochs of training; after each, dev metrics, the best trainable weights and a checkpoint."""
    cfg, accelerator, state = run.cfg, run.accelerator, run.state
    checkpoints = run.out / "checkpoints"
    every = cfg.train.checkpoint_every_steps
    config = flat_config(cfg)  # stored in every checkpoint: a resume with another config is refused

    def on_step(step_state: TrainingState) -> None:
        if every and step_state.global_step % every == 0:
            save_checkpoint(accelerator, step_state, checkpoints / "last", config=config)

    while not training_done(cfg.train, state):
        loss = train_epoch(run.model, run.loaders["train"], run.optimizer, run.scheduler, accelerator, cfg.train,
                           state=state, on_step=on_step)
        if state.epoch % cfg.train.eval_every_epochs and not training_done(cfg.train, state):
            continue
        dev = evaluate_split(run, "dev")
        state.history.append({"epoch": state.epoch, "train_loss": loss, **{f"dev_{k}": v for k, v in dev.items()}})
        accelerator.log({"train/epoch_loss": loss, **{f"dev/{k}": v for k, v in dev.items()}}, step=state.global_step)
        improved = is_improvement(dev, run.spec.problem_type, state.best_metric)
        if improved:
            state.best_metric, state.best_epoch = dev[run.primary_metric], state.epoch
            state.evals_without_improvement = 0
            if accelerator.is_main_process:
                checkpoints.mkdir(parents=True, exist_ok=True)
                save_trainable_weights(accelerator.unwrap_model(run.model), checkpoints / "best.safetensors")
        else:
            state.evals_without_improvement += 1
        accelerator.print(
            f"epoch {state.epoch}: train loss {loss:.4f}, dev {run.primary_metric} {dev[run.primary_metric]:.4f}"
            f"{' (best)' if improved else ''}"
        )
        save_checkpoint(accelerator, state, checkpoints / "last", config=config)
        if on_evaluation is not None:
            on_evaluation(state.epoch, dev)
        if cfg.train.patience and state.evals_without_improvement >= cfg.train.patience:
            accelerator.print(f"no dev improvement in {cfg.train.patience} evaluations; stopping early")
            break


def evaluate_split(run: FinetuneRun, split: str) -> dict:
    return evaluate(run.model, run.loaders[split], run.accelerator, run.spec.problem_type, run.spec.num_labels,
                    desc=split)


def finish(run: FinetuneRun) -> dict:
    """Restore the best dev weights, score the test split, write the run folder (and push it if asked)."""
    cfg, accelerator, out = run.cfg, run.accelerator, run.out
    accelerator.wait_for_everyone()
    best = out / "checkpoints" / "best.safetensors"
    if best.exists():
        load_trainable_weights(accelerator.unwrap_model(run.model), best)
    test = evaluate_split(run, "test")
    metrics = {
        "test": test,
        "best_epoch": run.state.best_epoch,
        f"dev_{run.primary_metric}": run.state.best_metric,
        "history": run.state.history,
        "seed": cfg.train.seed,
        "processes": accelerator.num_processes,
        "precision": precision_of(accelerator),  # what ran; evaluate/predict use it by default
        "wall_time_s": round(time.time() - run.started, 1),
    }
    if run.data_checks is not None:
        metrics["data_checks"] = run.data_checks
    if accelerator.is_main_process:
        # config.yaml records the precision that ran (``auto`` resolved), so the card and a re-run say it too;
        # metrics.json lands last, then checkpoints/ goes: a kill at any point leaves a resumable or complete folder
        ran = replace(cfg, train=replace(cfg.train, precision=metrics["precision"]))
        write_run(out, accelerator.unwrap_model(run.model), run.tokenizer, run.spec, ran, base=run.base,
                  metrics=metrics,
                  backbone_dir=out / "checkpoints" / "backbone")
    accelerator.wait_for_everyone()
    accelerator.print(f"test: {json.dumps({k: round(v, 4) for k, v in test.items()})}")
    accelerator.print(f"run folder: {out} (reload with gr_ft.load_run({str(out)!r}))")
    if cfg.push_to_hub and accelerator.is_main_process:
        from gr_ft.hub import push_run

        push_run(out, cfg.hub_repo_id)
    return metrics


def main(argv: Optional[list[str]] = None) -> dict:
    configure_logging()
    args = parse_args(argv)
    cfg = load_config(FinetuneConfig, args.config, args.overrides)
    if cfg.data.folds:
        from gr_ft.folds import run_folds

        if args.seeds:
            raise ValueError("--seeds and data.folds cannot be combined; run the folds once per seed instead")
        return run_folds(cfg, finetune)
    if args.seeds:
        from gr_ft.seeds import run_seeds
        from gr_ft.sweep import parse_seeds

        return run_seeds(cfg, parse_seeds(args.seeds), finetune)
    return finetune(cfg)


if __name__ == "__main__":
    from gr_ft.errors import run_command

    sys.exit(run_command(main, sys.argv[1:], prog=Path(__file__).name))
