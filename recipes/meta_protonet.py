"""Meta-train a LoRA adapter as a prototypical-network embedding over related tasks, for few-shot adaptation.

    # the built-in synthetic cell types (tiny backbone, a few minutes on 2 CPU cores):
    python recipes/meta_protonet.py
    accelerate launch recipes/meta_protonet.py --config recipes/configs/meta_protonet_yeast.yaml
    torchrun --nproc_per_node 2 recipes/meta_protonet.py --config recipes/configs/meta_protonet_yeast.yaml
    # override any field:
    ... meta.k_shot=16 meta.distance=cosine meta.temperature=0.05 output_dir=runs/protonet_cosine
    # then adapt to a new task from k labelled examples (prototypes become the head):
    gr-ft adapt runs/meta_protonet_yeast h4_support.csv runs/h4 --eval-data ../shared/data/fewshot/gue_emp_yeast/H4

Each step draws ``meta.meta_batch_tasks`` episodes of the meta-train tasks (shared out across
processes; gradients averaged), scores every query example by its distance to the support
prototypes and backpropagates the cross-entropy into the LoRA factors (Adam at ``meta.meta_lr``,
annealed linearly to ``meta.final_meta_lr``). Validation, checkpoints, resume and the run folder
are as in ``meta_reptile.py``; the head saved with the run holds the prototypes of meta-train
examples averaged over tasks (a sensible default when labels mean the same in every task) until
``gr-ft adapt`` replaces them with a new task's prototypes.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from gr_ft.config import recipe_arg_parser
from gr_ft.meta import (average_gradients, compute_prototypes, encode_episode, margin_spread, meta_lr_schedule,
                        protonet_loss, sum_across_processes)
from gr_ft.meta.config import MetaTrainConfig
from gr_ft.meta.prototype_head import embed_sequences, set_prototype_head
from gr_ft.meta.recipe import (MetaRun, TrainableWeights, keep_if_best, load_method_config, meta_metrics, meta_record,
                               meta_test_scores, meta_train_loop, publish_meta_run, restore_best, sample_per_class,
                               setup_meta_run, start_meta_training)
from gr_ft.utils import configure_logging


logger = logging.getLogger("gr_ft.meta_protonet")

HEAD_EXAMPLES_PER_CLASS = 64  # meta-train examples per class and task behind the saved head's prototypes
TEMPERATURE_LR = 1e-2  # Adam on log(temperature): fast enough to move the scale ~e-fold in 100 steps
EXAMPLES = """examples:
  python recipes/meta_protonet.py                                  # built-in synthetic cell types
  python recipes/meta_protonet.py --config recipes/configs/meta_protonet_yeast.yaml meta.meta_steps=100
  torchrun --nproc_per_node 2 recipes/meta_protonet.py --config recipes/configs/meta_protonet_yeast.yaml
"""


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = recipe_arg_parser("meta_protonet.py", __doc__, EXAMPLES,
                               "YAML config (recipes/configs/meta_*.yaml); defaults: synthetic cell types",
                               "meta.k_shot=16 meta.distance=cosine")
    return parser.parse_intermixed_args(argv)  # key=value overrides may come before or after --config


class LogitTemperature(torch.nn.Module):
    """The temperature dividing the prototype logits, learned in log space when ``meta.learn_temperature``."""

    def __init__(self, learn: bool):
        super().__init__()
        self.log_value = torch.nn.Parameter(torch.zeros(()), requires_grad=learn)

    def forward(self) -> torch.Tensor:
        return self.log_value.exp()

    def reset(self, value: float) -> None:
        with torch.no_grad():
            self.log_value.fill_(math.log(value))

    @property
    def value(self) -> float:
        return float(self.log_value.detach().exp())


def build_optimizer(model, temperature: LogitTemperature, cfg: MetaTrainConfig):
    """Adam over the trainable weights (and the log-temperature); lr falls linearly from meta_lr to final_meta_lr."""
    protonet = cfg.meta.protonet_config()
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": protonet.lr}]
    if cfg.meta.learn_temperature:
        groups.append({"params": [temperature.log_value], "lr": TEMPERATURE_LR})
    optimizer = torch.optim.Adam(groups)
    final_fraction = cfg.meta.final_meta_lr / protonet.lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: meta_lr_schedule(min(step, protonet.meta_steps), protonet.meta_steps, 1.0,
                                                 final_fraction))
    return optimizer, scheduler


@dataclass(kw_only=True)
class ProtoNetRun(MetaRun):
    """One ProtoNet meta-training run once set up: model, temperature, optimiser, episode samplers, progress."""

    temperature: LogitTemperature
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


def meta_train(cfg: MetaTrainConfig) -> dict:
    """Run one ProtoNet meta-training job end to end; returns the metrics written to ``metrics.json``."""
    run = setup(cfg)
    train(run)
    return finish(run)


@torch.no_grad()
def score_episodes(run: ProtoNetRun, sampler, tasks, n_episodes: int, temperature: float) -> dict[str, float]:
    """Mean query loss / accuracy of episodes 0..n-1 against their support prototypes (no adaptation)."""
    cfg, accelerator, model, tokenizer = run.cfg, run.accelerator, run.model, run.tokenizer
    model.eval()
    totals = torch.zeros(3, device=accelerator.device)  # loss sum, accuracy sum, episodes
    for index in range(accelerator.process_index, n_episodes, accelerator.num_processes):
        support, query = encode_episode(sampler.sample(index), tasks, tokenizer, cfg.max_length, cfg.crop)
        with accelerator.autocast():
            out = protonet_loss(model, support, query, cfg.meta.n_way, cfg.meta.distance, temperature)
        accuracy = (out["logits"].argmax(-1).cpu() == query["labels"]).float().mean()
        totals += torch.tensor([out["loss"].item(), accuracy.item(), 1.0], device=totals.device)
    totals = sum_across_processes(totals)
    model.train()
    return {"query_loss": (totals[0] / totals[2]).item(), "query_accuracy": (totals[1] / totals[2]).item()}


@torch.no_grad()
def calibrate_temperature(run: ProtoNetRun, n_episodes: int = 8) -> float:
    """The spread (sd) of query logit margins at temperature 1 over the first episodes, before any training.

    Dividing by it starts training with logits of unit spread, whatever the embedding scale of the backbone.
    Every process computes the same value (same weights, same episodes).
    """
    cfg, model, sampler, tasks, tokenizer = run.cfg, run.model, run.sampler, run.data.train, run.tokenizer
    model.eval()
    logits = []
    for index in range(n_episodes):
        support, query = encode_episode(sampler.sample(index), tasks, tokenizer, cfg.max_length, cfg.crop)
        logits.append(protonet_loss(model, support, query, cfg.meta.n_way, cfg.meta.distance, 1.0)["logits"])
    model.train()
    return margin_spread(torch.cat(logits))  # Q x n_way per episode


def validate(run: ProtoNetRun) -> None:
    """Score the validation episodes, keep the best weights (and their temperature), log one line."""
    accelerator, temperature, state = run.accelerator, run.temperature, run.state
    scores = score_episodes(run, run.val_sampler, run.data.val, run.cfg.meta.val_episodes, temperature.value)
    improved = keep_if_best(accelerator, run.model, state, scores, run.out)
    if improved:
        state.temperature = temperature.value
    accelerator.print(f"meta-step {state.step}: val query accuracy {scores['query_accuracy']:.3f} "
                      f"(loss {scores['query_loss']:.3f}, temperature {temperature.value:.3g})"
                      f"{' (best)' if improved else ''}")


def average_temperature_gradient(temperature: LogitTemperature, processes: int) -> None:
    if temperature.log_value.grad is not None:
        temperature.log_value.grad.copy_(sum_across_processes(temperature.log_value.grad) / processes)


def protonet_step(run: ProtoNetRun, episodes) -> dict[str, float]:
    """One optimiser step on this process's episodes; gradients averaged over processes. Returns loss and lr."""
    cfg, accelerator, model, temperature = run.cfg, run.accelerator, run.model, run.temperature
    optimizer, scheduler, tasks, tokenizer = run.optimizer, run.scheduler, run.data.train, run.tokenizer
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    for episode in episodes:
        support, query = encode_episode(episode, tasks, tokenizer, cfg.max_length, cfg.crop)
        with accelerator.autocast():
            loss = protonet_loss(model, support, query, cfg.meta.n_way, cfg.meta.distance, temperature())["loss"]
        (loss / len(episodes)).backward()
        loss_sum += loss.item()
    average_gradients(model)
    average_temperature_gradient(temperature, accelerator.num_processes)
    if cfg.train.max_grad_norm:
        params = [p for p in model.parameters() if p.requires_grad] + [temperature.log_value]
        torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
    optimizer.step()
    scheduler.step()
    return {"loss": loss_sum / len(episodes), "lr": scheduler.get_last_lr()[0]}


def start_temperature(run: ProtoNetRun) -> None:
    """Set the logit temperature of a fresh start: ``meta.temperature``, or calibrated on meta-train episodes."""
    cfg, temperature = run.cfg, run.temperature
    temperature.reset(cfg.meta.temperature or calibrate_temperature(run))
    run.accelerator.print(f"logit temperature {temperature.value:.4g}"
                          f"{'' if cfg.meta.temperature else ' (calibrated on meta-train episodes)'}"
                          f"{', learned from here' if cfg.meta.learn_temperature else ''}")


def train(run: ProtoNetRun) -> None:
    """ProtoNet steps from ``state.step`` to ``meta.meta_steps``, with validation and checkpoints."""
    if run.state.step == 0 and not run.state.history:  # a fresh start (a resumed run restored the temperature)
        start_temperature(run)
    meta_train_loop(run, lambda episodes: protonet_step(run, episodes), lambda: validate(run))


def meta_test(run: ProtoNetRun) -> dict:
    """After meta-training: prototype accuracy on episodes of each held-out task (its test split)."""
    cfg = run.cfg
    return meta_test_scores(cfg, run.accelerator, run.data.split.meta_test, lambda sampler, tasks: score_episodes(
        run, sampler, tasks, cfg.meta.test_episodes, cfg.meta.temperature))


def head_from_meta_train_prototypes(run: ProtoNetRun) -> str:
    """Set the head to class prototypes of meta-train examples, averaged over tasks; returns what was done."""
    cfg, model, tokenizer, data = run.cfg, run.model, run.tokenizer, run.data
    if data.classes is None:
        return "untrained (tasks have different labels): run gr-ft adapt with a support set"
    per_task = []
    for name in data.train.names:
        frame = sample_per_class(data.train[name], HEAD_EXAMPLES_PER_CLASS, cfg.train.seed)
        embeddings = embed_sequences(model, tokenizer, frame["sequence"].tolist(), cfg.max_length, cfg.crop)
        labels = torch.tensor([data.classes.index(label) for label in frame["label"]])
        per_task.append((compute_prototypes(embeddings, labels, cfg.meta.n_way), embeddings.norm(dim=-1).mean()))
    prototypes = torch.stack([p for p, _ in per_task]).mean(0)
    norm = float(torch.stack([n for _, n in per_task]).mean())
    set_prototype_head(model, prototypes, cfg.meta.distance, cfg.meta.temperature, norm)
    return (f"prototypes of meta-train examples ({HEAD_EXAMPLES_PER_CLASS} per class per task, averaged over "
            f"{len(per_task)} tasks); gr-ft adapt replaces them with a new task's prototypes")


def finish(run: ProtoNetRun) -> dict:
    """Restore the best validation weights, score the meta-test tasks, set the head, write the run folder."""
    cfg, accelerator, state = run.cfg, run.accelerator, run.state
    accelerator.wait_for_everyone()
    restore_best(run.model, run.out)
    cfg.meta.temperature = state.temperature  # the best weights' temperature: meta-test, head and meta.json use it
    metrics = meta_metrics(cfg, accelerator, state, meta_test(run), run.started)
    head = head_from_meta_train_prototypes(run)
    record = meta_record(run, 0, head, distance=cfg.meta.distance, temperature=cfg.meta.temperature)
    publish_meta_run(run, metrics, record, "prototype query accuracy "
                     f"{metrics['meta_test'].get('mean', {}).get('query_accuracy', float('nan')):.3f}")
    accelerator.end_training()
    return metrics


def setup(cfg: MetaTrainConfig) -> ProtoNetRun:
    """Tasks, samplers, model and optimiser (identical on every process); checks before the first write; resume."""
    common = setup_meta_run(cfg)
    temperature = LogitTemperature(cfg.meta.learn_temperature).to(common.accelerator.device)
    optimizer, scheduler = build_optimizer(common.model, temperature, cfg)
    run = ProtoNetRun(**vars(common), temperature=temperature, optimizer=optimizer, scheduler=scheduler)
    run.accelerator.register_for_checkpointing(TrainableWeights(run.model), temperature, optimizer, scheduler)
    start_meta_training(run, "ProtoNet", f", {cfg.meta.query_per_class} queries per class, {cfg.meta.distance} distance")
    return run


def main(argv: Optional[list[str]] = None) -> dict:
    configure_logging()
    args = parse_args(argv)
    return meta_train(load_method_config("protonet", args.config, args.overrides))


if __name__ == "__main__":
    from gr_ft.errors import run_command

    sys.exit(run_command(main, sys.argv[1:], prog=Path(__file__).name))
