"""Meta-train a LoRA adapter and head with first-order Reptile over related tasks, for few-shot adaptation.

    # the built-in default (synthetic cell types, tiny backbone, a few minutes on 2 CPU cores):
    python recipes/meta_reptile.py
    accelerate launch recipes/meta_reptile.py --config recipes/configs/meta_reptile_synthetic.yaml
    torchrun --nproc_per_node 2 recipes/meta_reptile.py --config recipes/configs/meta_reptile_yeast.yaml
    # override any field:
    ... meta.k_shot=16 meta.meta_steps=500 model.name_or_path=runs/pretrain_dna_bpe output_dir=runs/reptile_k16
    # then adapt to a new task from k labelled examples:
    gr-ft adapt runs/meta_reptile_yeast h3_support.csv runs/h3 --eval-data ../shared/data/fewshot/gue_emp_yeast/H3

Only the meta-train tasks are sampled; the meta-test tasks (``meta.meta_test``) are read after
meta-training, for a final score, and recorded in ``meta.json``. Each meta-step adapts the
weights to ``meta.meta_batch_tasks`` episodes (shared out across processes) and moves them toward
the mean of the adapted weights. Every ``meta.eval_every_steps`` steps the weights are scored on fixed
validation episodes (dev split of the meta-train tasks) after ``meta.eval_inner_steps`` of
adaptation; the best are kept. Interrupted runs resume from ``output_dir/checkpoints/last``
(episodes are a function of (seed, step), so the step counter is the sampler's whole state).

Writes the run folder of a fine-tuning run (``adapter/, tokenizer/, label_map.json, config.yaml,
base_model.json, backbone/`` when built from config, ``metrics.json`` last) plus ``meta.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from gr_ft.adapters import total_parameter_count, trainable_parameter_count
from gr_ft.backbones.record import BaseModelRecord
from gr_ft.config import config_to_dict, load_config
from gr_ft.meta import (
    EpisodeSampler,
    adapt_and_evaluate,
    encode_episode,
    inner_optimizer_factory,
    meta_lr_schedule,
    reptile_meta_step,
    split_batch,
    sum_across_processes,
)
from gr_ft.meta.config import MetaTrainConfig
from gr_ft.meta.recipe import (
    MetaRecord,
    MetaState,
    MetaTasks,
    TrainableWeights,
    build_meta_model,
    episode_samplers,
    keep_if_best,
    meta_metrics,
    meta_test_scores,
    prepare_meta_tasks,
    restore_best,
    resume_meta_state,
    save_meta_checkpoint,
    publish_meta_run,
)
from gr_ft.modeling import load_task_tokenizer
from gr_ft.run_folder import prepare_output_dir
from gr_ft.tokenization import SequenceTokenizer
from gr_ft.training import build_accelerator, resolve_precision
from gr_ft.utils import progress_bar

logger = logging.getLogger("gr_ft.meta_reptile")

EXAMPLES = """examples:
  python recipes/meta_reptile.py                                   # built-in default, synthetic cell types
  python recipes/meta_reptile.py --config recipes/configs/meta_reptile_yeast.yaml meta.meta_steps=100
  torchrun --nproc_per_node 2 recipes/meta_reptile.py --config recipes/configs/meta_reptile_synthetic.yaml
"""


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="meta_reptile.py", description=__doc__.split("\n")[0], epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML config (recipes/configs/meta_*.yaml); defaults: synthetic cell types")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. meta.k_shot=16 meta.inner_lr=3e-3")
    return parser.parse_intermixed_args(argv)  # key=value overrides may come before or after --config


def episode_batches(episodes, tasks, tokenizer, cfg: MetaTrainConfig):
    """Support mini-batches of each episode (the inner loop's data)."""
    return [split_batch(encode_episode(e, tasks, tokenizer, cfg.max_length, cfg.crop)[0], cfg.meta.inner_batch_size)
            for e in episodes]


@dataclass
class ReptileRun:
    """One Reptile meta-training run once set up: model, episode samplers, where it writes, how far it got."""

    cfg: MetaTrainConfig
    accelerator: Accelerator
    tokenizer: SequenceTokenizer
    model: torch.nn.Module
    base: BaseModelRecord
    data: MetaTasks
    sampler: EpisodeSampler  # meta-train episodes
    val_sampler: EpisodeSampler  # validation episodes (held-out rows of the meta-train tasks)
    state: MetaState
    out: Path
    started: float


def score_episodes(run: ReptileRun, sampler, tasks, n_episodes: int) -> dict[str, float]:
    """Mean query loss / accuracy after adapting to each of episodes 0..n-1 (shared out across processes)."""
    cfg, accelerator, model, tokenizer = run.cfg, run.accelerator, run.model, run.tokenizer
    make_optimizer = inner_optimizer_factory(cfg.meta.reptile_config())
    totals = torch.zeros(3, device=accelerator.device)  # loss sum, accuracy sum, episodes
    for index in range(accelerator.process_index, n_episodes, accelerator.num_processes):
        support, query = encode_episode(sampler.sample(index), tasks, tokenizer, cfg.max_length, cfg.crop)
        with accelerator.autocast():
            result = adapt_and_evaluate(model, split_batch(support, cfg.meta.inner_batch_size), query,
                                        make_optimizer, cfg.meta.adapt_steps)
        totals += torch.tensor([result["query_loss"], result["query_accuracy"], 1.0], device=totals.device)
    totals = sum_across_processes(totals)
    return {"query_loss": (totals[0] / totals[2]).item(), "query_accuracy": (totals[1] / totals[2]).item()}


def validate(run: ReptileRun) -> None:
    """Score the validation episodes, keep the best weights, log one line."""
    accelerator, state = run.accelerator, run.state
    scores = score_episodes(run, run.val_sampler, run.data.val, run.cfg.meta.val_episodes)
    improved = keep_if_best(accelerator, run.model, state, scores, run.out)
    accelerator.print(f"meta-step {state.step}: val query accuracy {scores['query_accuracy']:.3f} "
                      f"(loss {scores['query_loss']:.3f}){' (best)' if improved else ''}")


def train(run: ReptileRun) -> None:
    """Reptile meta-steps from ``state.step`` to ``meta.meta_steps``, with validation and checkpoints."""
    cfg, accelerator, data, state = run.cfg, run.accelerator, run.data, run.state
    reptile = cfg.meta.reptile_config()
    make_optimizer = inner_optimizer_factory(reptile)
    meta_train_tasks = set(data.split.meta_train)
    checkpoint = run.out / "checkpoints" / "last"
    if state.step == 0 and not state.history:
        validate(run)  # the starting point
    progress = progress_bar(total=reptile.meta_steps, initial=state.step, desc="meta-steps",
                            enabled=accelerator.is_local_main_process, leave=False)
    while state.step < reptile.meta_steps:
        episodes = run.sampler.meta_batch(state.step, reptile.meta_batch_tasks)
        assert all(e.task in meta_train_tasks for e in episodes), "a meta-test task reached meta-training"
        mine = episodes[accelerator.process_index::accelerator.num_processes]
        meta_lr = meta_lr_schedule(state.step, reptile.meta_steps, reptile.meta_lr, reptile.final_meta_lr)
        with accelerator.autocast():
            stats = reptile_meta_step(run.model, episode_batches(mine, data.train, run.tokenizer, cfg), make_optimizer,
                                      reptile.inner_steps, meta_lr)
        state.step += 1
        progress.update(1)
        progress.set_postfix(refresh=False, inner_loss=f"{stats['inner_loss']:.3f}", meta_lr=f"{meta_lr:.2f}")
        accelerator.log({"train/inner_loss": stats["inner_loss"], "train/meta_lr": meta_lr}, step=state.step)
        evaluate_now = state.step % cfg.meta.eval_every_steps == 0 or state.step == reptile.meta_steps
        if evaluate_now:
            validate(run)
        if evaluate_now or state.step % cfg.meta.checkpoint_every_steps == 0:
            save_meta_checkpoint(accelerator, state, checkpoint, cfg)
    progress.close()


def meta_test(run: ReptileRun) -> dict:
    """After meta-training: adapt-and-score episodes of each held-out task (its test split)."""
    cfg = run.cfg
    scores = meta_test_scores(cfg, run.accelerator, run.data.split.meta_test,
                              lambda sampler, tasks: score_episodes(run, sampler, tasks, cfg.meta.test_episodes))
    return {**scores, "adapt_steps": cfg.meta.adapt_steps} if scores else {}


def finish(run: ReptileRun) -> dict:
    """Restore the best validation weights, score the meta-test tasks, write the run folder."""
    cfg, accelerator, model, data, state, out = run.cfg, run.accelerator, run.model, run.data, run.state, run.out
    accelerator.wait_for_everyone()
    restore_best(model, out)
    metrics = meta_metrics(cfg, accelerator, state, meta_test(run), run.started)
    record = MetaRecord(
        method="reptile", meta_train_tasks=data.split.meta_train, meta_test_tasks=data.split.meta_test,
        n_way=cfg.meta.n_way, k_shot=cfg.meta.k_shot, query_per_class=cfg.meta.query_per_class, classes=data.classes,
        adapt_steps=cfg.meta.adapt_steps, adapt_lr=cfg.meta.inner_lr, tasks=cfg.meta.tasks,
        head=f"meta-learned by Reptile (best validation step {state.best_step})",
    )
    publish_meta_run(run, metrics, record, f"query accuracy "
                     f"{metrics['meta_test'].get('mean', {}).get('query_accuracy', float('nan')):.3f} "
                     f"after {cfg.meta.adapt_steps} steps")
    return metrics


def meta_train(cfg: MetaTrainConfig) -> dict:
    """Run one Reptile meta-training job end to end; returns the metrics written to ``metrics.json``."""
    run = setup(cfg)
    train(run)
    metrics = finish(run)
    run.accelerator.end_training()
    return metrics


def setup(cfg: MetaTrainConfig) -> ReptileRun:
    """Tasks, samplers and model (identical on every process); checks before the first write; resume if asked."""
    started = time.time()
    accelerator = build_accelerator(cfg.train, cfg.output_dir)
    set_seed(cfg.train.seed)
    tokenizer = load_task_tokenizer(cfg.model, cfg.alphabet)
    data = prepare_meta_tasks(cfg)  # meta-train tasks only; input errors surface here, before any write
    sampler, val_sampler = episode_samplers(cfg, data)
    resume_from = prepare_output_dir(cfg)
    out = Path(cfg.output_dir)
    model, base = build_meta_model(cfg, tokenizer, accelerator, out)
    accelerator.register_for_checkpointing(TrainableWeights(model))
    accelerator.print(
        f"Reptile over {len(data.train)} meta-train tasks {data.split.meta_train} (meta-test, held out: "
        f"{data.split.meta_test}); {cfg.meta.n_way}-way {cfg.meta.k_shot}-shot; trainable parameters "
        f"{trainable_parameter_count(model):,} of {total_parameter_count(model):,}; precision "
        f"{resolve_precision(cfg.train.precision)}; processes {accelerator.num_processes}"
    )
    if cfg.train.tracker:
        accelerator.init_trackers("gr-ft-meta", config=config_to_dict(cfg))
    state = resume_meta_state(accelerator, resume_from)
    return ReptileRun(cfg, accelerator, tokenizer, model, base, data, sampler, val_sampler, state, out, started)


def main(argv: Optional[list[str]] = None) -> dict:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gr_ft").setLevel(logging.INFO)
    args = parse_args(argv)
    # the recipe is the method: meta.method is set here (a meta.method override must agree)
    cfg = load_config(MetaTrainConfig, args.config, ["meta.method=reptile", *args.overrides])
    if cfg.meta.method != "reptile":
        raise ValueError(f"meta.method={cfg.meta.method}: use recipes/meta_{cfg.meta.method}.py; this recipe is Reptile")
    return meta_train(cfg)


if __name__ == "__main__":
    from gr_ft.errors import run_command

    sys.exit(run_command(main, sys.argv[1:], prog=Path(__file__).name))
