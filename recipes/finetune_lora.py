"""Fine-tune a DNA or protein language model with a LoRA head, keep the best dev epoch, test it, save a run folder.

    # the built-in demo (synthetic promoters, tiny backbone, a few minutes on 2 CPU cores):
    gr-ft finetune
    # any config, one process or many:
    accelerate launch recipes/finetune_lora.py --config recipes/configs/promoter_lora.yaml
    torchrun --nproc_per_node 2 recipes/finetune_lora.py --config recipes/configs/demo.yaml
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/finetune_lora.py --config ...
    # override any field:
    ... train.lr=3e-4 lora.r=16 output_dir=runs/promoter_r16

Writes ``output_dir/{metrics.json, adapter/, tokenizer/, label_map.json, config.yaml, base_model.json}``;
reload with ``gr_ft.load_run(output_dir)``. Interrupted runs resume from ``output_dir/checkpoints/last``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

from accelerate.utils import set_seed

from gr_ft.adapters import apply_adapter, trainable_parameter_count, total_parameter_count
from gr_ft.config import FinetuneConfig, config_to_dict, load_config
from gr_ft.data import class_weights, encode_split, load_splits, make_dataloader
from gr_ft.labels import infer_label_spec
from gr_ft.modeling import build_task_model, default_tokenizer_name
from gr_ft.run import BaseModelRecord, prepare_output_dir, write_run
from gr_ft.tokenization import SequenceTokenizer
from gr_ft.training import (
    TrainingState,
    build_accelerator,
    build_optimizer,
    evaluate,
    is_improvement,
    load_checkpoint,
    load_trainable_weights,
    resolve_precision,
    save_checkpoint,
    save_trainable_weights,
    train_epoch,
)

logger = logging.getLogger("gr_ft.finetune")

EXAMPLES = """examples:
  gr-ft finetune                                            # built-in demo, synthetic promoters
  gr-ft finetune --config recipes/configs/promoter_lora.yaml train.epochs=2
  gr-ft finetune data.path=my_peaks.csv.gz model.name_or_path=./dnabert6 output_dir=runs/peaks
  torchrun --nproc_per_node 2 recipes/finetune_lora.py --config recipes/configs/demo.yaml
"""


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gr-ft finetune", description=__doc__.split("\n")[0], epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML config (recipes/configs/*.yaml); defaults are the built-in demo")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=3e-4 lora.r=16")
    return parser.parse_args(argv)


def prepare_data(cfg: FinetuneConfig):
    """Tokenizer, label scheme and encoded splits; all input errors surface here, before any write."""
    alphabet = "dna" if cfg.data.alphabet == "auto" else cfg.data.alphabet
    tokenizer = SequenceTokenizer.from_pretrained(
        default_tokenizer_name(cfg.model, alphabet), revision=cfg.model.revision,
        trust_remote_code=cfg.model.trust_remote_code,
    )
    if cfg.data.alphabet == "auto":
        alphabet = "protein" if tokenizer.kind == "protein" else "dna"
    splits = load_splits(cfg.data, alphabet, cfg.train.seed)
    train_frame = splits["train"].frame
    spec = infer_label_spec(train_frame[cfg.data.label_column], cfg.data.problem_type,
                            train_frame[cfg.data.sequence_column].tolist(), cfg.data.multilabel_separator)
    encoded = {
        name: encode_split(split, tokenizer, spec, cfg.data.max_length, cfg.data.crop,
                           cfg.data.sequence_column, cfg.data.label_column)
        for name, split in splits.items()
    }
    return tokenizer, spec, encoded


def build_loaders(cfg: FinetuneConfig, tokenizer, encoded):
    train = make_dataloader(encoded["train"], tokenizer, cfg.train.batch_size, shuffle=True, seed=cfg.train.seed,
                            bucket_by_length=cfg.train.bucket_by_length)
    dev = make_dataloader(encoded["dev"], tokenizer, cfg.train.eval_batch_size, shuffle=False)
    test = make_dataloader(encoded["test"], tokenizer, cfg.train.eval_batch_size, shuffle=False)
    return train, dev, test


def finetune(cfg: FinetuneConfig) -> dict:
    """Run one fine-tuning job end to end; returns the metrics written to ``metrics.json``."""
    started = time.time()
    accelerator = build_accelerator(cfg.train, cfg.output_dir)
    set_seed(cfg.train.seed)
    tokenizer, spec, encoded = prepare_data(cfg)
    resume_from = prepare_output_dir(cfg)
    out = Path(cfg.output_dir)
    weights = None
    if cfg.train.class_weighting == "balanced" and spec.problem_type in ("binary", "multiclass"):
        weights = class_weights(encoded["train"], spec.num_labels)
    model, base = build_task_model(cfg.model, tokenizer, spec.problem_type, spec.num_labels, weights)
    if base["built_from_config"] and accelerator.is_main_process:
        # the random initial weights are part of the result: keep them before adapters are injected
        model.backbone.save_pretrained(str(out / "checkpoints" / "backbone"))
    if base["built_from_config"] and cfg.lora.method != "full":
        logger.warning("the backbone is built from config (random weights): %s only learns low-rank updates of "
                       "random weights; for real results start from a pretrained backbone (model.name_or_path, or "
                       "gr-ft pretrain) or train every weight (lora.method=full)", cfg.lora.method)
    model = apply_adapter(model, cfg.lora)
    accelerator.print(
        f"{spec.problem_type} task, {spec.num_labels} outputs; train/dev/test = "
        f"{len(encoded['train'])}/{len(encoded['dev'])}/{len(encoded['test'])}; trainable parameters "
        f"{trainable_parameter_count(model):,} of {total_parameter_count(model):,}; "
        f"precision {resolve_precision(cfg.train.precision)}; processes {accelerator.num_processes}"
    )
    train_loader, dev_loader, test_loader = build_loaders(cfg, tokenizer, encoded)
    optimizer, scheduler = build_optimizer(model, cfg.train, len(train_loader))
    model, optimizer, train_loader, dev_loader, test_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, dev_loader, test_loader, scheduler
    )
    if cfg.train.tracker:
        accelerator.init_trackers("gr-ft", config=config_to_dict(cfg))
    state = TrainingState()
    if resume_from is not None:
        state = load_checkpoint(accelerator, resume_from)
        accelerator.print(f"resumed from {resume_from}: epoch {state.epoch}, step {state.global_step}")
    state = train_loop(cfg, accelerator, model, optimizer, scheduler, train_loader, dev_loader, spec, state, out)
    metrics = finish(cfg, accelerator, model, test_loader, spec, state, out, tokenizer, base, started)
    accelerator.end_training()
    return metrics


def train_loop(cfg, accelerator, model, optimizer, scheduler, train_loader, dev_loader, spec, state, out):
    """Epochs of training; after each, dev metrics, the best trainable weights and a checkpoint."""
    checkpoints = out / "checkpoints"
    every = cfg.train.checkpoint_every_steps

    def on_step(step_state: TrainingState) -> None:
        if every and step_state.global_step % every == 0:
            save_checkpoint(accelerator, step_state, checkpoints / "last")

    while state.epoch < cfg.train.epochs and not (cfg.train.max_steps and state.global_step >= cfg.train.max_steps):
        loss = train_epoch(model, train_loader, optimizer, scheduler, accelerator, cfg.train, state, on_step)
        if state.epoch % cfg.train.eval_every_epochs and state.epoch < cfg.train.epochs:
            continue
        dev = evaluate(model, dev_loader, accelerator, spec.problem_type, spec.num_labels, desc="dev")
        state.history.append({"epoch": state.epoch, "train_loss": loss, **{f"dev_{k}": v for k, v in dev.items()}})
        accelerator.log({"train/epoch_loss": loss, **{f"dev/{k}": v for k, v in dev.items()}}, step=state.global_step)
        improved = is_improvement(dev, spec.problem_type, state.best_metric)
        if improved:
            state.best_metric, state.best_epoch = dev[_primary(spec)], state.epoch
            state.evals_without_improvement = 0
            if accelerator.is_main_process:
                checkpoints.mkdir(parents=True, exist_ok=True)
                save_trainable_weights(accelerator.unwrap_model(model), checkpoints / "best.safetensors")
        else:
            state.evals_without_improvement += 1
        accelerator.print(
            f"epoch {state.epoch}: train loss {loss:.4f}, dev {_primary(spec)} {dev[_primary(spec)]:.4f}"
            f"{' (best)' if improved else ''}"
        )
        save_checkpoint(accelerator, state, checkpoints / "last")
        if cfg.train.patience and state.evals_without_improvement >= cfg.train.patience:
            accelerator.print(f"no dev improvement in {cfg.train.patience} evaluations; stopping early")
            break
    return state


def _primary(spec) -> str:
    from gr_ft.evaluation import PRIMARY_METRIC

    return PRIMARY_METRIC[spec.problem_type]


def finish(cfg, accelerator, model, test_loader, spec, state, out, tokenizer, base, started) -> dict:
    """Restore the best dev weights, score the test split, write the run folder."""
    accelerator.wait_for_everyone()
    best = out / "checkpoints" / "best.safetensors"
    if best.exists():
        load_trainable_weights(accelerator.unwrap_model(model), best)
    test = evaluate(model, test_loader, accelerator, spec.problem_type, spec.num_labels, desc="test")
    metrics = {
        "test": test,
        "best_epoch": state.best_epoch,
        f"dev_{_primary(spec)}": state.best_metric,
        "history": state.history,
        "seed": cfg.train.seed,
        "processes": accelerator.num_processes,
        "wall_time_s": round(time.time() - started, 1),
    }
    if accelerator.is_main_process:
        write_run(out, accelerator.unwrap_model(model), tokenizer, spec, cfg, BaseModelRecord(**base), metrics,
                  backbone_dir=out / "checkpoints" / "backbone")
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.print(f"test: {json.dumps({k: round(v, 4) for k, v in test.items()})}")
    accelerator.print(f"run folder: {out} (reload with gr_ft.load_run({str(out)!r}))")
    if cfg.push_to_hub and accelerator.is_main_process:
        from gr_ft.hub import push_run

        push_run(out, cfg.hub_repo_id)
    return metrics


def main(argv: Optional[list[str]] = None) -> dict:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gr_ft").setLevel(logging.INFO)
    args = parse_args(argv)
    cfg = load_config(FinetuneConfig, args.config, args.overrides)
    return finetune(cfg)


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
