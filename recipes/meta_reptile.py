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
from pathlib import Path
from typing import Optional

import torch

from gr_ft.config import recipe_arg_parser
from gr_ft.meta import (adapt_and_evaluate, encode_episode, inner_optimizer_factory, meta_lr_schedule,
                        reptile_meta_step, split_batch, sum_across_processes)
from gr_ft.meta.config import MetaTrainConfig
from gr_ft.meta.recipe import (MetaRun, TrainableWeights, keep_if_best, load_method_config, meta_metrics, meta_record,
                               meta_test_scores, meta_train_loop, publish_meta_run, restore_best, setup_meta_run,
                               start_meta_training)
from gr_ft.utils import configure_logging


logger = logging.getLogger("gr_ft.meta_reptile")

EXAMPLES = """examples:
  python recipes/meta_reptile.py                                   # built-in default, synthetic cell types
  python recipes/meta_reptile.py --config recipes/configs/meta_reptile_yeast.yaml meta.meta_steps=100
  torchrun --nproc_per_node 2 recipes/meta_reptile.py --config recipes/configs/meta_reptile_synthetic.yaml
"""


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = recipe_arg_parser("meta_reptile.py", __doc__, EXAMPLES,
                               "YAML config (recipes/configs/meta_*.yaml); defaults: synthetic cell types",
                               "meta.k_shot=16 meta.inner_lr=3e-3")
    return parser.parse_intermixed_args(argv)  # key=value overrides may come before or after --config


def episode_batches(episodes, tasks, tokenizer, cfg: MetaTrainConfig):
    """Support mini-batches of each episode (the inner loop's data)."""
    return [split_batch(encode_episode(e, tasks, tokenizer, cfg.max_length, cfg.crop)[0], cfg.meta.inner_batch_size)
            for e in episodes]


class ReptileRun(MetaRun):
    """One Reptile meta-training run once set up: model, episode samplers, where it writes, how far it got."""


def meta_train(cfg: MetaTrainConfig) -> dict:
    """Run one Reptile meta-training job end to end; returns the metrics written to ``metrics.json``."""
    run = setup(cfg)
    train(run)
    return finish(run)


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
    cfg, accelerator = run.cfg, run.accelerator
    reptile = cfg.meta.reptile_config()
    make_optimizer = inner_optimizer_factory(reptile)

    def meta_step(episodes) -> dict[str, float]:
        meta_lr = meta_lr_schedule(run.state.step, reptile.meta_steps, reptile.meta_lr, reptile.final_meta_lr)
        with accelerator.autocast():
            stats = reptile_meta_step(run.model, episode_batches(episodes, run.data.train, run.tokenizer, cfg),
                                      make_optimizer, reptile.inner_steps, meta_lr)
        return {"inner_loss": stats["inner_loss"], "meta_lr": meta_lr}

    meta_train_loop(run, meta_step, lambda: validate(run))


def meta_test(run: ReptileRun) -> dict:
    """After meta-training: adapt-and-score episodes of each held-out task (its test split)."""
    cfg = run.cfg
    scores = meta_test_scores(cfg, run.accelerator, run.data.split.meta_test,
                              lambda sampler, tasks: score_episodes(run, sampler, tasks, cfg.meta.test_episodes))
    return {**scores, "adapt_steps": cfg.meta.adapt_steps} if scores else {}


def finish(run: ReptileRun) -> dict:
    """Restore the best validation weights, score the meta-test tasks, write the run folder."""
    cfg, accelerator, state = run.cfg, run.accelerator, run.state
    accelerator.wait_for_everyone()
    restore_best(run.model, run.out)
    metrics = meta_metrics(cfg, accelerator, state, meta_test(run), run.started)
    record = meta_record(run, cfg.meta.adapt_steps, f"meta-learned by Reptile (best validation step {state.best_step})")
    publish_meta_run(run, metrics, record, f"query accuracy "
                     f"{metrics['meta_test'].get('mean', {}).get('query_accuracy', float('nan')):.3f} "
                     f"after {cfg.meta.adapt_steps} steps")
    accelerator.end_training()
    return metrics


def setup(cfg: MetaTrainConfig) -> ReptileRun:
    """Tasks, samplers and model (identical on every process); checks before the first write; resume if asked."""
    run = ReptileRun(**vars(setup_meta_run(cfg)))
    run.accelerator.register_for_checkpointing(TrainableWeights(run.model))
    start_meta_training(run, "Reptile")
    return run


def main(argv: Optional[list[str]] = None) -> dict:
    configure_logging()
    args = parse_args(argv)
    return meta_train(load_method_config("reptile", args.config, args.overrides))


if __name__ == "__main__":
    from gr_ft.errors import run_command

    sys.exit(run_command(main, sys.argv[1:], prog=Path(__file__).name))
