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
the mean of the adapted weights. Every ``meta.eval_every`` steps the weights are scored on fixed
validation episodes (dev split of the meta-train tasks) after ``meta.eval_inner_steps`` of
adaptation; the best are kept. Interrupted runs resume from ``output_dir/checkpoints/last``
(episodes are a function of (seed, step), so the step counter is the sampler's whole state).

Writes the run folder of a fine-tuning run (``adapter/, tokenizer/, label_map.json, config.yaml,
base_model.json, backbone/`` when built from config, ``metrics.json`` last) plus ``meta.json``.
"""

from __future__ import annotations

import argparse
import logging
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
    adapt_and_evaluate,
    broadcast_trainable,
    encode_episode,
    inner_optimizer_factory,
    meta_lr_schedule,
    reptile_meta_step,
    split_batch,
    sum_across_processes,
)
from gr_ft.meta.config import MetaTrainConfig
from gr_ft.meta.run import (
    MetaRecord,
    MetaState,
    TrainableWeights,
    load_meta_checkpoint,
    load_meta_test_tasks,
    meta_label_spec,
    prepare_meta_tasks,
    save_meta_checkpoint,
    write_meta_run,
)
from gr_ft.modeling import build_task_model, default_tokenizer_name
from gr_ft.run import BaseModelRecord, prepare_output_dir
from gr_ft.tokenization import SequenceTokenizer
from gr_ft.training import build_accelerator, load_trainable_weights, resolve_precision, save_trainable_weights

logger = logging.getLogger("gr_ft.meta_reptile")

VAL_SEED = 7919  # validation and meta-test episodes: a stream of their own, the same at every evaluation
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
    return parser.parse_args(argv)


def build_model(cfg: MetaTrainConfig, tokenizer, accelerator, out: Path):
    """Backbone + n_way head + adapter, identical on every process; the random backbone is kept for the run."""
    model, base = build_task_model(cfg.model, tokenizer, cfg.problem_type, cfg.meta.n_way)
    if base["built_from_config"] and accelerator.is_main_process:
        model.backbone.save_pretrained(str(out / "checkpoints" / "backbone"))
    model = apply_adapter(model, cfg.lora).to(accelerator.device)
    broadcast_trainable(model)
    return model, BaseModelRecord(**base)


def episode_batches(episodes, tasks, tokenizer, cfg: MetaTrainConfig):
    """Support mini-batches of each episode (the inner loop's data)."""
    return [split_batch(encode_episode(e, tasks, tokenizer, cfg.max_length, cfg.crop)[0], cfg.meta.inner_batch_size)
            for e in episodes]


def score_episodes(model, sampler, tasks, tokenizer, cfg, accelerator, n_episodes: int) -> dict[str, float]:
    """Mean query loss / accuracy after adapting to each of episodes 0..n-1 (shared out across processes)."""
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


def validate(cfg, accelerator, model, val_sampler, data, tokenizer, state: MetaState, out: Path) -> None:
    """Score the validation episodes, keep the best weights, log one line."""
    scores = score_episodes(model, val_sampler, data.val, tokenizer, cfg, accelerator, cfg.meta.val_episodes)
    # step 0 is the baseline, not a candidate; ties go to the later (more meta-trained) weights
    improved = state.step > 0 and (state.best_val is None or scores["query_accuracy"] >= state.best_val)
    if improved:
        state.best_val, state.best_step = scores["query_accuracy"], state.step
        if accelerator.is_main_process:
            (out / "checkpoints").mkdir(parents=True, exist_ok=True)
            save_trainable_weights(model, out / "checkpoints" / "best.safetensors")
    state.history.append({"step": state.step, **{f"val_{k}": v for k, v in scores.items()}})
    accelerator.log({f"val/{k}": v for k, v in scores.items()}, step=state.step)
    accelerator.print(f"meta-step {state.step}: val query accuracy {scores['query_accuracy']:.3f} "
                      f"(loss {scores['query_loss']:.3f}){' (best)' if improved else ''}")


def meta_train_loop(cfg, accelerator, model, sampler, val_sampler, data, tokenizer, state: MetaState, out: Path):
    """Reptile meta-steps from ``state.step`` to ``meta.meta_steps``, with validation and checkpoints."""
    reptile = cfg.meta.reptile_config()
    make_optimizer = inner_optimizer_factory(reptile)
    meta_train_tasks = set(data.split.meta_train)
    checkpoint = out / "checkpoints" / "last"
    if state.step == 0 and not state.history:
        validate(cfg, accelerator, model, val_sampler, data, tokenizer, state, out)  # the starting point
    progress = tqdm(total=reptile.meta_steps, initial=state.step, desc="meta-steps",
                    disable=not accelerator.is_local_main_process, leave=False)
    while state.step < reptile.meta_steps:
        episodes = sampler.meta_batch(state.step, reptile.meta_batch_tasks)
        assert all(e.task in meta_train_tasks for e in episodes), "a meta-test task reached meta-training"
        mine = episodes[accelerator.process_index::accelerator.num_processes]
        meta_lr = meta_lr_schedule(state.step, reptile.meta_steps, reptile.meta_lr, reptile.final_meta_lr)
        with accelerator.autocast():
            stats = reptile_meta_step(model, episode_batches(mine, data.train, tokenizer, cfg), make_optimizer,
                                      reptile.inner_steps, meta_lr)
        state.step += 1
        progress.update(1)
        progress.set_postfix(inner_loss=f"{stats['inner_loss']:.3f}", meta_lr=f"{meta_lr:.2f}")
        accelerator.log({"train/inner_loss": stats["inner_loss"], "train/meta_lr": meta_lr}, step=state.step)
        evaluate_now = state.step % cfg.meta.eval_every == 0 or state.step == reptile.meta_steps
        if evaluate_now:
            validate(cfg, accelerator, model, val_sampler, data, tokenizer, state, out)
        if evaluate_now or state.step % cfg.meta.checkpoint_every == 0:
            save_meta_checkpoint(accelerator, state, checkpoint)
    progress.close()
    return state


def meta_test(cfg, accelerator, model, tokenizer, meta_test_tasks: list[str]) -> dict:
    """After meta-training: adapt-and-score episodes of each held-out task (its test split)."""
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
                                        cfg.meta.test_episodes)
    if not per_task:
        return {}
    mean = {key: sum(s[key] for s in per_task.values()) / len(per_task) for key in ("query_loss", "query_accuracy")}
    return {"episodes_per_task": cfg.meta.test_episodes, "k_shot": cfg.meta.k_shot, "adapt_steps":
            cfg.meta.adapt_steps, "mean": mean, "tasks": per_task}


def finish(cfg, accelerator, model, tokenizer, data, base, state: MetaState, out: Path, started: float) -> dict:
    """Restore the best validation weights, score the meta-test tasks, write the run folder."""
    accelerator.wait_for_everyone()
    best = out / "checkpoints" / "best.safetensors"
    if best.exists():
        load_trainable_weights(model, best)
    metrics = {
        "meta_test": meta_test(cfg, accelerator, model, tokenizer, data.split.meta_test),
        "best_step": state.best_step,
        "val_query_accuracy": state.best_val,
        "history": state.history,
        "seed": cfg.train.seed,
        "processes": accelerator.num_processes,
        "wall_time_s": round(time.time() - started, 1),
    }
    record = MetaRecord(
        method="reptile", meta_train_tasks=data.split.meta_train, meta_test_tasks=data.split.meta_test,
        n_way=cfg.meta.n_way, k_shot=cfg.meta.k_shot, query_size=cfg.meta.query_size, classes=data.classes,
        adapt_steps=cfg.meta.adapt_steps, adapt_lr=cfg.meta.inner_lr, tasks=cfg.meta.tasks,
        head=f"meta-learned by Reptile (best validation step {state.best_step})",
    )
    if accelerator.is_main_process:
        write_meta_run(out, model, tokenizer, cfg, meta_label_spec(cfg, data.classes), base, metrics, record)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    accelerator.wait_for_everyone()
    if metrics["meta_test"]:
        accelerator.print(f"meta-test ({', '.join(data.split.meta_test)}): query accuracy "
                          f"{metrics['meta_test']['mean']['query_accuracy']:.3f} after {cfg.meta.adapt_steps} steps")
    accelerator.print(f"run folder: {out} (adapt with: gr-ft adapt {out} SUPPORT.csv OUT_DIR --eval-data ...)")
    return metrics


def meta_train(cfg: MetaTrainConfig) -> dict:
    """Run one Reptile meta-training job end to end; returns the metrics written to ``metrics.json``."""
    started = time.time()
    accelerator = build_accelerator(cfg.train, cfg.output_dir)
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
    accelerator.register_for_checkpointing(TrainableWeights(model))
    accelerator.print(
        f"Reptile over {len(data.train)} meta-train tasks {data.split.meta_train} (meta-test, held out: "
        f"{data.split.meta_test}); {cfg.meta.n_way}-way {cfg.meta.k_shot}-shot; trainable parameters "
        f"{trainable_parameter_count(model):,} of {total_parameter_count(model):,}; precision "
        f"{resolve_precision(cfg.train.precision)}; processes {accelerator.num_processes}"
    )
    if cfg.train.tracker:
        accelerator.init_trackers("gr-ft-meta", config=config_to_dict(cfg))
    state = MetaState()
    if resume_from is not None:
        state = load_meta_checkpoint(accelerator, resume_from)
        accelerator.print(f"resumed from {resume_from}: meta-step {state.step}")
    state = meta_train_loop(cfg, accelerator, model, sampler, val_sampler, data, tokenizer, state, out)
    metrics = finish(cfg, accelerator, model, tokenizer, data, base, state, out, started)
    accelerator.end_training()
    return metrics


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
    try:
        main()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
