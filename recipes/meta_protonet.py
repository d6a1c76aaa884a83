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
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from gr_ft.adapters import apply_adapter, total_parameter_count, trainable_parameter_count
from gr_ft.config import config_to_dict, load_config
from gr_ft.meta import (
    EpisodeSampler,
    average_gradients,
    broadcast_trainable,
    compute_prototypes,
    encode_episode,
    margin_spread,
    meta_lr_schedule,
    protonet_loss,
    sum_across_processes,
)
from gr_ft.meta.adapt import embed_sequences, set_prototype_head
from gr_ft.meta.config import MetaTrainConfig
from gr_ft.meta.run import (
    MetaRecord,
    MetaState,
    TrainableWeights,
    load_meta_checkpoint,
    load_meta_test_tasks,
    meta_label_spec,
    prepare_meta_tasks,
    sample_per_class,
    save_meta_checkpoint,
    write_meta_run,
)
from gr_ft.modeling import build_task_model, default_tokenizer_name
from gr_ft.run import BaseModelRecord, prepare_output_dir
from gr_ft.tokenization import SequenceTokenizer
from gr_ft.training import build_accelerator, load_trainable_weights, resolve_precision, save_trainable_weights

logger = logging.getLogger("gr_ft.meta_protonet")

VAL_SEED = 7919  # validation and meta-test episodes: a stream of their own, the same at every evaluation
HEAD_EXAMPLES_PER_CLASS = 64  # meta-train examples per class and task behind the saved head's prototypes
TEMPERATURE_LR = 1e-2  # Adam on log(temperature): fast enough to move the scale ~e-fold in 100 steps
EXAMPLES = """examples:
  python recipes/meta_protonet.py                                  # built-in synthetic cell types
  python recipes/meta_protonet.py --config recipes/configs/meta_protonet_yeast.yaml meta.meta_steps=100
  torchrun --nproc_per_node 2 recipes/meta_protonet.py --config recipes/configs/meta_protonet_yeast.yaml
"""


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="meta_protonet.py", description=__doc__.split("\n")[0], epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML config (recipes/configs/meta_*.yaml); defaults: synthetic cell types")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. meta.k_shot=16 meta.distance=cosine")
    return parser.parse_args(argv)


def build_model(cfg: MetaTrainConfig, tokenizer, accelerator, out: Path):
    """Backbone + n_way head + adapter, identical on every process; the random backbone is kept for the run."""
    model, base = build_task_model(cfg.model, tokenizer, cfg.problem_type, cfg.meta.n_way)
    if base["built_from_config"] and accelerator.is_main_process:
        model.backbone.save_pretrained(str(out / "checkpoints" / "backbone"))
    model = apply_adapter(model, cfg.lora).to(accelerator.device)
    broadcast_trainable(model)
    return model, BaseModelRecord(**base)


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


@torch.no_grad()
def score_episodes(model, sampler, tasks, tokenizer, cfg, accelerator, n_episodes: int,
                   temperature: float) -> dict[str, float]:
    """Mean query loss / accuracy of episodes 0..n-1 against their support prototypes (no adaptation)."""
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
def calibrate_temperature(cfg, model, sampler, tasks, tokenizer, n_episodes: int = 8) -> float:
    """The spread (sd) of query logit margins at temperature 1 over the first episodes, before any training.

    Dividing by it starts training with logits of unit spread, whatever the embedding scale of the backbone.
    Every process computes the same value (same weights, same episodes).
    """
    model.eval()
    logits = []
    for index in range(n_episodes):
        support, query = encode_episode(sampler.sample(index), tasks, tokenizer, cfg.max_length, cfg.crop)
        logits.append(protonet_loss(model, support, query, cfg.meta.n_way, cfg.meta.distance, 1.0)["logits"])
    model.train()
    return margin_spread(torch.cat(logits))  # Q x n_way per episode


def validate(cfg, accelerator, model, temperature, val_sampler, data, tokenizer, state: MetaState, out: Path) -> None:
    """Score the validation episodes, keep the best weights (and their temperature), log one line."""
    scores = score_episodes(model, val_sampler, data.val, tokenizer, cfg, accelerator, cfg.meta.val_episodes,
                            temperature.value)
    # step 0 is the baseline, not a candidate; ties go to the later (more meta-trained) weights
    improved = state.step > 0 and (state.best_val is None or scores["query_accuracy"] >= state.best_val)
    if improved:
        state.best_val, state.best_step, state.temperature = scores["query_accuracy"], state.step, temperature.value
        if accelerator.is_main_process:
            (out / "checkpoints").mkdir(parents=True, exist_ok=True)
            save_trainable_weights(model, out / "checkpoints" / "best.safetensors")
    state.history.append({"step": state.step, **{f"val_{k}": v for k, v in scores.items()}})
    accelerator.log({f"val/{k}": v for k, v in scores.items()}, step=state.step)
    accelerator.print(f"meta-step {state.step}: val query accuracy {scores['query_accuracy']:.3f} "
                      f"(loss {scores['query_loss']:.3f}, temperature {temperature.value:.3g})"
                      f"{' (best)' if improved else ''}")


def average_temperature_gradient(temperature: LogitTemperature, processes: int) -> None:
    if temperature.log_value.grad is not None:
        temperature.log_value.grad.copy_(sum_across_processes(temperature.log_value.grad) / processes)


def protonet_step(cfg, accelerator, model, temperature, optimizer, scheduler, episodes, tasks, tokenizer) -> float:
    """One optimiser step on this process's episodes; gradients averaged over processes. Returns the mean loss."""
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
    return loss_sum / len(episodes)


def meta_train_loop(cfg, accelerator, model, temperature, optimizer, scheduler, sampler, val_sampler, data,
                    tokenizer, state: MetaState, out: Path) -> MetaState:
    """ProtoNet steps from ``state.step`` to ``meta.meta_steps``, with validation and checkpoints."""
    meta_train_tasks = set(data.split.meta_train)
    checkpoint = out / "checkpoints" / "last"
    if state.step == 0 and not state.history:  # a fresh start (a resumed run restored the temperature)
        temperature.reset(cfg.meta.temperature or calibrate_temperature(cfg, model, sampler, data.train, tokenizer))
        accelerator.print(f"logit temperature {temperature.value:.4g}"
                          f"{'' if cfg.meta.temperature else ' (calibrated on meta-train episodes)'}"
                          f"{', learned from here' if cfg.meta.learn_temperature else ''}")
        validate(cfg, accelerator, model, temperature, val_sampler, data, tokenizer, state, out)  # the baseline
    progress = tqdm(total=cfg.meta.meta_steps, initial=state.step, desc="meta-steps",
                    disable=not accelerator.is_local_main_process, leave=False)
    while state.step < cfg.meta.meta_steps:
        episodes = sampler.meta_batch(state.step, cfg.meta.meta_batch_tasks)
        assert all(e.task in meta_train_tasks for e in episodes), "a meta-test task reached meta-training"
        mine = episodes[accelerator.process_index::accelerator.num_processes]
        loss = protonet_step(cfg, accelerator, model, temperature, optimizer, scheduler, mine, data.train, tokenizer)
        state.step += 1
        progress.update(1)
        progress.set_postfix(loss=f"{loss:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        accelerator.log({"train/loss": loss, "train/lr": scheduler.get_last_lr()[0]}, step=state.step)
        evaluate_now = state.step % cfg.meta.eval_every == 0 or state.step == cfg.meta.meta_steps
        if evaluate_now:
            validate(cfg, accelerator, model, temperature, val_sampler, data, tokenizer, state, out)
        if evaluate_now or state.step % cfg.meta.checkpoint_every == 0:
            save_meta_checkpoint(accelerator, state, checkpoint)
    progress.close()
    return state


def meta_test(cfg, accelerator, model, tokenizer, meta_test_tasks: list[str]) -> dict:
    """After meta-training: prototype accuracy on episodes of each held-out task (its test split)."""
    if not cfg.meta.test_episodes:
        return {}
    tasks = load_meta_test_tasks(cfg, meta_test_tasks)
    per_task = {}
    for name in tasks.names:  # one sampler per task: every task gets its own test_episodes
        try:
            task_sampler = EpisodeSampler(tasks.subset([name]), cfg.meta.n_way, cfg.meta.k_shot,
                                          cfg.meta.query_size, seed=VAL_SEED)
        except ValueError as err:  # too small for an episode: say so, keep the meta-trained run
            accelerator.print(f"meta-test task {name} not scored: {err}")
            continue
        per_task[name] = score_episodes(model, task_sampler, tasks, tokenizer, cfg, accelerator,
                                        cfg.meta.test_episodes, cfg.meta.temperature)
    if not per_task:
        return {}
    mean = {key: sum(s[key] for s in per_task.values()) / len(per_task) for key in ("query_loss", "query_accuracy")}
    return {"episodes_per_task": cfg.meta.test_episodes, "k_shot": cfg.meta.k_shot, "mean": mean, "tasks": per_task}


def head_from_meta_train_prototypes(cfg, model, tokenizer, data) -> str:
    """Set the head to class prototypes of meta-train examples, averaged over tasks; returns what was done."""
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


def finish(cfg, accelerator, model, tokenizer, data, base, state: MetaState, out: Path, started: float) -> dict:
    """Restore the best validation weights, score the meta-test tasks, set the head, write the run folder."""
    accelerator.wait_for_everyone()
    best = out / "checkpoints" / "best.safetensors"
    if best.exists():
        load_trainable_weights(model, best)
    cfg.meta.temperature = state.temperature  # the best weights' temperature: meta-test, head and meta.json use it
    metrics = {
        "meta_test": meta_test(cfg, accelerator, model, tokenizer, data.split.meta_test),
        "best_step": state.best_step,
        "val_query_accuracy": state.best_val,
        "history": state.history,
        "seed": cfg.train.seed,
        "processes": accelerator.num_processes,
        "wall_time_s": round(time.time() - started, 1),
    }
    head = head_from_meta_train_prototypes(cfg, model, tokenizer, data)
    record = MetaRecord(
        method="protonet", meta_train_tasks=data.split.meta_train, meta_test_tasks=data.split.meta_test,
        n_way=cfg.meta.n_way, k_shot=cfg.meta.k_shot, query_size=cfg.meta.query_size, classes=data.classes,
        adapt_steps=0, adapt_lr=cfg.meta.inner_lr, distance=cfg.meta.distance, temperature=cfg.meta.temperature,
        tasks=cfg.meta.tasks, head=head,
    )
    if accelerator.is_main_process:
        write_meta_run(out, model, tokenizer, cfg, meta_label_spec(cfg, data.classes), base, metrics, record)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    accelerator.wait_for_everyone()
    if metrics["meta_test"]:
        accelerator.print(f"meta-test ({', '.join(data.split.meta_test)}): prototype query accuracy "
                          f"{metrics['meta_test']['mean']['query_accuracy']:.3f}")
    accelerator.print(f"run folder: {out} (adapt with: gr-ft adapt {out} SUPPORT.csv OUT_DIR --eval-data ...)")
    return metrics


def meta_train(cfg: MetaTrainConfig) -> dict:
    """Run one ProtoNet meta-training job end to end; returns the metrics written to ``metrics.json``."""
    started = time.time()
    accelerator = build_accelerator(cfg.train, cfg.output_dir)
    if cfg.meta.meta_batch_tasks % accelerator.num_processes:
        raise ValueError(f"meta.meta_batch_tasks={cfg.meta.meta_batch_tasks} must be a multiple of the "
                         f"{accelerator.num_processes} processes (every process averages the same number of episodes)")
    set_seed(cfg.train.seed)
    tokenizer = SequenceTokenizer.from_pretrained(default_tokenizer_name(cfg.model, cfg.alphabet),
                                                  revision=cfg.model.revision,
                                                  trust_remote_code=cfg.model.trust_remote_code)
    data = prepare_meta_tasks(cfg)  # meta-train tasks only; input errors surface here, before any write
    sampler = EpisodeSampler(data.train, cfg.meta.n_way, cfg.meta.k_shot, cfg.meta.query_size, seed=cfg.train.seed)
    val_sampler = EpisodeSampler(data.val, cfg.meta.n_way, cfg.meta.k_shot, cfg.meta.query_size, seed=VAL_SEED)
    resume_from = prepare_output_dir(cfg)
    out = Path(cfg.output_dir)
    model, base = build_model(cfg, tokenizer, accelerator, out)
    temperature = LogitTemperature(cfg.meta.learn_temperature).to(accelerator.device)
    optimizer, scheduler = build_optimizer(model, temperature, cfg)
    accelerator.register_for_checkpointing(TrainableWeights(model), temperature, optimizer, scheduler)
    accelerator.print(
        f"ProtoNet over {len(data.train)} meta-train tasks {data.split.meta_train} (meta-test, held out: "
        f"{data.split.meta_test}); {cfg.meta.n_way}-way {cfg.meta.k_shot}-shot, {cfg.meta.query_size} queries per "
        f"class, {cfg.meta.distance} distance; trainable parameters {trainable_parameter_count(model):,} of "
        f"{total_parameter_count(model):,}; precision {resolve_precision(cfg.train.precision)}; processes "
        f"{accelerator.num_processes}"
    )
    if cfg.train.tracker:
        accelerator.init_trackers("gr-ft-meta", config=config_to_dict(cfg))
    state = MetaState()
    if resume_from is not None:
        state = load_meta_checkpoint(accelerator, resume_from)
        accelerator.print(f"resumed from {resume_from}: meta-step {state.step}")
    state = meta_train_loop(cfg, accelerator, model, temperature, optimizer, scheduler, sampler, val_sampler, data,
                            tokenizer, state, out)
    metrics = finish(cfg, accelerator, model, tokenizer, data, base, state, out, started)
    accelerator.end_training()
    return metrics


def main(argv: Optional[list[str]] = None) -> dict:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gr_ft").setLevel(logging.INFO)
    args = parse_args(argv)
    # the recipe is the method: meta.method is set here (a meta.method override must agree)
    cfg = load_config(MetaTrainConfig, args.config, ["meta.method=protonet", *args.overrides])
    if cfg.meta.method != "protonet":
        raise ValueError(f"meta.method={cfg.meta.method}: use recipes/meta_{cfg.meta.method}.py; this recipe is ProtoNet")
    return meta_train(cfg)


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
