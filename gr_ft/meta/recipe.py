"""What the meta-learning recipes share: their tasks, checkpoints, the meta-trained run folder, and the
steps around the method (samplers, model, keeping the best validation, meta-test scores, metrics).

A meta-trained run folder has the layout of a fine-tuning run (see :mod:`gr_ft.run_folder`), so
``gr_ft.load_run`` and ``gr-ft adapt`` read it, plus ``meta.json``: the method, the tasks used
for meta-training, the held-out meta-test tasks, the episode shape and the adaptation defaults.

Meta-test tasks are held out structurally: :func:`prepare_meta_tasks` returns only meta-train
frames (train split for episodes, dev split for validation); the meta-test frames are loaded by
:func:`load_meta_test_tasks` after meta-training, for the final score.

Example:
    >>> cfg = load_config(MetaTrainConfig, "recipes/configs/meta_reptile_yeast.yaml")
    >>> data = prepare_meta_tasks(cfg)
    >>> data.split.meta_test, data.classes
    (['H3', 'H3K4me3', 'H4'], ['0', '1'])
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..config import config_to_dict, load_config
from ..io import find_split_files
from ..labels import LabelSpec
from ..run_folder import flat_config, prepare_output_dir, write_run
from ..utils import atomic_write_text, progress_bar
from ..synthetic import cell_type_panel_sequences, cell_type_sequences, split_seed
from ..training import (build_accelerator, load_checkpoint, load_trainable_weights, resolve_precision, save_checkpoint,
                        save_trainable_weights)
from .config import MetaConfig, MetaTrainConfig
from .distributed import broadcast_trainable
from .episodes import EpisodeSampler
from .reptile import restore_trainable, snapshot_trainable
from .tasks import TaskCollection, TaskSplit, load_task_collection, split_tasks

if TYPE_CHECKING:
    from ..backbones.record import BaseModelRecord
    from ..tokenization import SequenceTokenizer

__all__ = [
    "META_FILE",
    "MetaTasks",
    "MetaRecord",
    "MetaState",
    "TrainableWeights",
    "load_tasks",
    "prepare_meta_tasks",
    "load_meta_test_tasks",
    "meta_label_spec",
    "save_meta_checkpoint",
    "load_meta_checkpoint",
    "publish_meta_run",
    "read_meta_record",
    "MetaRun",
    "setup_meta_run",
    "start_meta_training",
    "meta_train_loop",
    "load_method_config",
    "meta_record",
]

logger = logging.getLogger(__name__)
META_FILE = "meta.json"
STATE_FILE = "meta_state.json"
SYNTHETIC_DATA_SEED = 0  # the synthetic tasks are data: the same whatever the training seed
SYNTHETIC_GENERATORS = {"synthetic:cell_type": cell_type_sequences,
                        "synthetic:cell_type_panel": cell_type_panel_sequences}


class MetaTasks(NamedTuple):
    """The meta-train side of a task collection; meta-test tasks appear by name only."""

    train: TaskCollection
    """Meta-train tasks, train split: the episodes of meta-training."""
    val: TaskCollection
    """Meta-train tasks, held-out rows (dev split): validation episodes."""
    split: TaskSplit
    classes: Optional[list[str]]
    """Label names shared by every meta-train task (episode class i = classes[i]); None when tasks differ."""


# ---------------------------------------------------------------- tasks


def _synthetic_tasks(meta: MetaConfig, split: str) -> TaskCollection:
    n = meta.synthetic_size if split == "train" else max(meta.synthetic_size // 2, 8)
    generate = SYNTHETIC_GENERATORS[meta.tasks]
    frame = generate(n, length_bp=meta.synthetic_length_bp, seed=split_seed(SYNTHETIC_DATA_SEED, split))
    frame["label"] = frame["label"].astype(str)
    return TaskCollection({name: group[["sequence", "label"]].reset_index(drop=True)
                           for name, group in frame.groupby("cell_type")},
                          {name: f"{meta.tasks}[{name}, {split}]" for name in frame["cell_type"].unique()})


def load_tasks(cfg: MetaTrainConfig, split: str) -> TaskCollection:
    """One split of the configured task collection (``meta.tasks``), generated or read from disk.

    Example:
        >>> load_tasks(MetaTrainConfig(), "train").names
        ['GM12878', 'HeLa', 'HepG2', 'K562']
    """
    if cfg.meta.tasks.startswith("synthetic:"):
        return _synthetic_tasks(cfg.meta, split)
    return load_task_collection(cfg.meta.tasks, cfg.meta.task_column, split, cfg.alphabet, cfg.sequence_column,
                                cfg.label_column)


def _has_dev_split(cfg: MetaTrainConfig) -> bool:
    path = Path(cfg.meta.tasks)
    if cfg.meta.tasks.startswith("synthetic:") or (path.is_dir() and cfg.meta.task_column is None):
        return True  # task folders must hold train/dev/test (load_task_collection says so otherwise)
    return path.is_dir() and "dev" in find_split_files(path)


def _carve_validation(tasks: TaskCollection, fraction: float, seed: int) -> tuple[TaskCollection, TaskCollection]:
    train, val = {}, {}
    for i, name in enumerate(tasks.names):
        frame = tasks[name]
        held = np.random.default_rng([seed, i]).random(len(frame)) < fraction
        train[name], val[name] = frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)
    return TaskCollection(train, tasks.sources), TaskCollection(val, tasks.sources)


def _shared_classes(tasks: TaskCollection, n_way: int) -> Optional[list[str]]:
    """The common label set when every task has exactly the same n_way labels, in episode order (sorted)."""
    label_sets = {tuple(sorted(tasks[name]["label"].unique())) for name in tasks}
    if len(label_sets) == 1 and len(next(iter(label_sets))) == n_way:
        return list(next(iter(label_sets)))
    return None


def prepare_meta_tasks(cfg: MetaTrainConfig) -> MetaTasks:
    """Split the collection into meta-train and meta-test tasks; return the meta-train frames only.

    Example:
        >>> prepare_meta_tasks(MetaTrainConfig()).split
        TaskSplit(meta_train=['GM12878', 'HepG2', 'K562'], meta_test=['HeLa'])
    """
    collection = load_tasks(cfg, "train")
    split = split_tasks(collection, cfg.meta.meta_test or cfg.meta.meta_test_fraction, seed=cfg.train.seed)
    train = collection.subset(split.meta_train)
    del collection  # the meta-test frames go no further
    if _has_dev_split(cfg):
        val = load_tasks(cfg, "dev").subset(split.meta_train)
    else:
        train, val = _carve_validation(train, cfg.meta.val_fraction, cfg.train.seed)
    classes = _shared_classes(train, cfg.meta.n_way)
    return MetaTasks(train=train, val=val, split=split, classes=classes)


def load_meta_test_tasks(cfg: MetaTrainConfig, names: list[str], split: str = "test") -> TaskCollection:
    """The held-out tasks, read only once meta-training is over (for the final meta-test score).

    Example:
        >>> load_meta_test_tasks(cfg, ["HeLa"]).names
        ['HeLa']
    """
    collection = load_tasks(cfg, split if _has_dev_split(cfg) else "train")
    return collection.subset(names)


def meta_label_spec(cfg: MetaTrainConfig, classes: Optional[list[str]]) -> LabelSpec:
    """The run's label map: the shared class names, or episode class ids "0".."n_way-1" when tasks differ.

    Example:
        >>> meta_label_spec(MetaTrainConfig(), ["0", "1"])
        LabelSpec(problem_type='binary', names=['0', '1'], separator=';')
    """
    names = classes or [str(i) for i in range(cfg.meta.n_way)]
    return LabelSpec(cfg.problem_type, names)


# ---------------------------------------------------------------- checkpoints


class TrainableWeights:
    """The trainable tensors (LoRA + head) as one object for ``accelerator.register_for_checkpointing``.

    The recipes do not ``prepare`` the model (inner loops must not synchronise gradients), so
    accelerate's ``save_state`` sees the weights through this object.

    Example:
        >>> accelerator.register_for_checkpointing(TrainableWeights(model))
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: tensor.cpu() for name, tensor in snapshot_trainable(self.model).items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = next(p.device for p in self.model.parameters())
        restore_trainable(self.model, {name: tensor.to(device) for name, tensor in state.items()})


@dataclass
class MetaState:
    """Where a meta-training run stands; saved beside accelerate's checkpoint."""

    step: int = 0
    """Meta-steps completed (episodes are a function of (seed, step), so this is all the sampler needs)."""
    best_val: Optional[float] = None
    """Best validation query accuracy so far."""
    best_step: Optional[int] = None
    temperature: Optional[float] = None
    """ProtoNet: the logit temperature of the best weights."""
    history: list[dict] = field(default_factory=list)


def save_meta_checkpoint(accelerator: Accelerator, state: MetaState, folder: Path,
                         cfg: Optional[MetaTrainConfig] = None) -> None:
    """accelerate ``save_state`` (registered weights, optimiser, RNG) plus the meta state, replaced atomically.

    ``cfg`` is stored with it, so that a resume with another config is refused.

    Example:
        >>> save_meta_checkpoint(accelerator, MetaState(step=50), out / "checkpoints" / "last", cfg)
    """
    save_checkpoint(accelerator, state, folder, state_file=STATE_FILE,
                    config=None if cfg is None else flat_config(cfg))


def load_meta_checkpoint(accelerator: Accelerator, folder: Path) -> MetaState:
    """Restore what :func:`save_meta_checkpoint` saved; returns the meta state.

    Example:
        >>> load_meta_checkpoint(accelerator, out / "checkpoints" / "last").step
        50
    """
    return load_checkpoint(accelerator, folder, MetaState, state_file=STATE_FILE)


# ---------------------------------------------------------------- the run folder


@dataclass
class MetaRecord:
    """``meta.json``: how a run was meta-trained, and which tasks it must not be scored on as "unseen"."""

    method: str
    meta_train_tasks: list[str]
    meta_test_tasks: list[str]
    n_way: int
    k_shot: int
    query_per_class: int
    classes: Optional[list[str]]
    """Shared label names of the tasks (the head's classes), or None when tasks differ (ids = sorted labels)."""
    adapt_steps: int
    """Default `gr-ft adapt --steps` (0 for ProtoNet: prototypes only)."""
    adapt_lr: float
    """Default `gr-ft adapt --lr`."""
    distance: str = "euclidean"
    temperature: float = 1.0
    head: str = ""
    """What the saved head is (meta-learned, or prototypes of meta-train examples)."""
    tasks: str = ""
    """Where the tasks came from (meta.tasks)."""
    meta_config: dict = field(default_factory=dict)

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")


def read_meta_record(run_dir: str | Path) -> Optional[MetaRecord]:
    """``meta.json`` of a run folder, or None for a run that was not meta-trained.

    Example:
        >>> read_meta_record("runs/meta_protonet_yeast").method
        'protonet'
    """
    path = Path(run_dir) / META_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if "query_size" in record:  # written before the key said it is per class
        record["query_per_class"] = record.pop("query_size")
    return MetaRecord(**record)


def publish_meta_run(run, metrics: dict, record: MetaRecord, meta_test_summary: str = "") -> None:
    """Write the run folder of a fine-tuning run plus ``meta.json`` (main process; ``metrics.json`` still lands
    last, then ``checkpoints/`` goes), and print where it is.

    ``run`` is a recipe's state (``ReptileRun`` / ``ProtoNetRun``: cfg, accelerator, model, tokenizer, base, data,
    out). ``meta_test_summary`` is printed after the meta-test tasks' names when there are any.
    """
    cfg, accelerator, out = run.cfg, run.accelerator, run.out
    if accelerator.is_main_process:
        record.meta_config = config_to_dict(cfg.meta)
        out.mkdir(parents=True, exist_ok=True)
        record.save(out / META_FILE)
        write_run(out, run.model, run.tokenizer, meta_label_spec(cfg, run.data.classes), cfg.as_finetune_config(),
                  base=run.base, metrics=metrics, backbone_dir=out / "checkpoints" / "backbone")
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    accelerator.wait_for_everyone()
    if metrics["meta_test"] and meta_test_summary:
        accelerator.print(f"meta-test ({', '.join(run.data.split.meta_test)}): {meta_test_summary}")
    accelerator.print(f"run folder: {out} (adapt with: gr-ft adapt {out} SUPPORT.csv OUT_DIR --eval-data ...)")


def task_frame_summary(tasks: TaskCollection) -> dict[str, dict[str, int]]:
    """Rows per class of every task (for logs and meta.json)."""
    return {name: tasks[name]["label"].value_counts().sort_index().to_dict() for name in tasks}


def sample_per_class(frame: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """Up to ``per_class`` rows of each label, seeded (row order: by label, then random)."""
    parts = [group.sample(n=min(per_class, len(group)), random_state=seed) for _, group in frame.groupby("label")]
    return pd.concat(parts).reset_index(drop=True)


# ---------------------------------------------------------------- steps both meta-training recipes take

VAL_SEED = 7919
"""Validation and meta-test episodes: a stream of their own, the same at every evaluation."""


def episode_samplers(cfg: MetaTrainConfig, data: MetaTasks) -> tuple[EpisodeSampler, EpisodeSampler]:
    """Meta-train episodes (seeded by ``train.seed``) and the fixed validation episodes (``VAL_SEED``)."""
    meta = cfg.meta
    return (EpisodeSampler(data.train, meta.n_way, meta.k_shot, meta.query_per_class, seed=cfg.train.seed),
            EpisodeSampler(data.val, meta.n_way, meta.k_shot, meta.query_per_class, seed=VAL_SEED))


def build_meta_model(cfg: MetaTrainConfig, tokenizer, accelerator: Accelerator, out: Path):
    """Backbone + n_way head + adapter, identical on every process; the random backbone is kept for the run."""
    from ..adapters import apply_adapter
    from ..modeling import build_task_model, keep_fresh_backbone

    model, base = build_task_model(cfg.model, tokenizer, cfg.problem_type, cfg.meta.n_way)
    if accelerator.is_main_process:
        keep_fresh_backbone(model, base, out / "checkpoints" / "backbone")
    model = apply_adapter(model, cfg.adapter).to(accelerator.device)
    broadcast_trainable(model)
    return model, base


def resume_meta_state(accelerator: Accelerator, resume_from: Optional[Path]) -> MetaState:
    """A fresh :class:`MetaState`, or the one of the checkpoint being resumed (weights and RNG restored too)."""
    if resume_from is None:
        return MetaState()
    state = load_meta_checkpoint(accelerator, resume_from)
    accelerator.print(f"resumed from {resume_from}: meta-step {state.step}")
    return state


@dataclass
class MetaRun:
    """A meta-training run once set up, what both recipes hold (each recipe's run class adds its own parts)."""

    cfg: MetaTrainConfig
    accelerator: Accelerator
    tokenizer: SequenceTokenizer
    model: torch.nn.Module
    base: BaseModelRecord
    data: MetaTasks
    sampler: EpisodeSampler
    """Meta-train episodes."""
    val_sampler: EpisodeSampler
    """Validation episodes (held-out rows of the meta-train tasks)."""
    out: Path
    started: float
    resume_from: Optional[Path] = None
    """The checkpoint to resume from, until :func:`start_meta_training` restores it."""
    state: MetaState = field(default_factory=MetaState)


def setup_meta_run(cfg: MetaTrainConfig) -> MetaRun:
    """Accelerator, tokenizer, meta-train tasks, samplers and model (identical on every process).

    Input errors surface before the first write; the recipe then registers what it checkpoints and
    calls :func:`start_meta_training`.
    """
    from ..modeling import load_task_tokenizer

    started = time.time()
    accelerator = build_accelerator(cfg.train, cfg.output_dir)
    if cfg.meta.meta_batch_tasks % accelerator.num_processes:
        raise ValueError(f"meta.meta_batch_tasks={cfg.meta.meta_batch_tasks} must be a multiple of the "
                         f"{accelerator.num_processes} processes (every process averages the same number of episodes)")
    set_seed(cfg.train.seed)
    tokenizer = load_task_tokenizer(cfg.model, cfg.alphabet)
    data = prepare_meta_tasks(cfg)  # meta-train tasks only
    sampler, val_sampler = episode_samplers(cfg, data)
    resume_from = prepare_output_dir(cfg)
    out = Path(cfg.output_dir)
    model, base = build_meta_model(cfg, tokenizer, accelerator, out)
    return MetaRun(cfg, accelerator, tokenizer, model, base, data, sampler, val_sampler, out, started, resume_from)


def start_meta_training(run: MetaRun, method: str, details: str = "") -> None:
    """Print what runs, start the trackers and restore the checkpoint being resumed (after registration)."""
    from ..adapters import total_parameter_count, trainable_parameter_count

    cfg, accelerator, data = run.cfg, run.accelerator, run.data
    accelerator.print(
        f"{method} over {len(data.train)} meta-train tasks {data.split.meta_train} (meta-test, held out: "
        f"{data.split.meta_test}); {cfg.meta.n_way}-way {cfg.meta.k_shot}-shot{details}; trainable parameters "
        f"{trainable_parameter_count(run.model):,} of {total_parameter_count(run.model):,}; precision "
        f"{resolve_precision(cfg.train.precision)}; processes {accelerator.num_processes}"
    )
    if cfg.train.tracker:
        accelerator.init_trackers("gr-ft-meta", config=config_to_dict(cfg))
    run.state = resume_meta_state(accelerator, run.resume_from)
    run.resume_from = None


def meta_train_loop(run: MetaRun, meta_step: Callable[[list], dict[str, float]],
                    validate: Callable[[], None]) -> None:
    """Meta-steps from ``run.state.step`` to ``meta.meta_steps``, validated and checkpointed; the method is ``meta_step``.

    Each step draws ``meta.meta_batch_tasks`` episodes of the meta-train tasks, gives this process its
    share to ``meta_step`` (which returns the scalars to log, e.g. the loss), and every
    ``meta.eval_every_steps`` steps calls ``validate`` (which keeps the best weights); ``checkpoints/last``
    is written then and every ``meta.checkpoint_every_steps`` steps. A fresh run is validated first.
    """
    cfg, accelerator, state = run.cfg, run.accelerator, run.state
    meta_train_tasks = set(run.data.split.meta_train)
    checkpoint = run.out / "checkpoints" / "last"
    if state.step == 0 and not state.history:
        validate()  # the starting point
    progress = progress_bar(total=cfg.meta.meta_steps, initial=state.step, desc="meta-steps",
                            enabled=accelerator.is_local_main_process, leave=False)
    while state.step < cfg.meta.meta_steps:
        episodes = run.sampler.meta_batch(state.step, cfg.meta.meta_batch_tasks)
        assert all(e.task in meta_train_tasks for e in episodes), "a meta-test task reached meta-training"
        scalars = meta_step(episodes[accelerator.process_index::accelerator.num_processes])
        state.step += 1
        progress.update(1)
        progress.set_postfix(refresh=False, **{name: f"{value:.3g}" for name, value in scalars.items()})
        accelerator.log({f"train/{name}": value for name, value in scalars.items()}, step=state.step)
        evaluate_now = state.step % cfg.meta.eval_every_steps == 0 or state.step == cfg.meta.meta_steps
        if evaluate_now:
            validate()
        if evaluate_now or state.step % cfg.meta.checkpoint_every_steps == 0:
            save_meta_checkpoint(accelerator, state, checkpoint, cfg)
    progress.close()


def load_method_config(method: str, config: Optional[str], overrides: list[str]) -> MetaTrainConfig:
    """The recipe's config with ``meta.method`` set to the recipe's method (an override must agree)."""
    cfg = load_config(MetaTrainConfig, config, [f"meta.method={method}", *overrides])
    if cfg.meta.method != method:
        raise ValueError(f"meta.method={cfg.meta.method}: use recipes/meta_{cfg.meta.method}.py; this recipe is "
                         f"{method}")
    return cfg


def meta_record(run: MetaRun, adapt_steps: int, head: str, **method_fields) -> MetaRecord:
    """``meta.json`` of ``run``: the tasks, the episode shape and the adaptation defaults."""
    cfg, data = run.cfg, run.data
    return MetaRecord(
        method=cfg.meta.method, meta_train_tasks=data.split.meta_train, meta_test_tasks=data.split.meta_test,
        n_way=cfg.meta.n_way, k_shot=cfg.meta.k_shot, query_per_class=cfg.meta.query_per_class, classes=data.classes,
        adapt_steps=adapt_steps, adapt_lr=cfg.meta.inner_lr, tasks=cfg.meta.tasks, head=head, **method_fields,
    )


def keep_if_best(accelerator: Accelerator, model, state: MetaState, scores: dict[str, float], out: Path) -> bool:
    """Record one validation in the history; keep the weights when their query accuracy is the best so far.

    Step 0 is the baseline, not a candidate; ties go to the later (more meta-trained) weights.
    """
    improved = state.step > 0 and (state.best_val is None or scores["query_accuracy"] >= state.best_val)
    if improved:
        state.best_val, state.best_step = scores["query_accuracy"], state.step
        if accelerator.is_main_process:
            (out / "checkpoints").mkdir(parents=True, exist_ok=True)
            save_trainable_weights(model, out / "checkpoints" / "best.safetensors")
    state.history.append({"step": state.step, **{f"val_{k}": v for k, v in scores.items()}})
    accelerator.log({f"val/{k}": v for k, v in scores.items()}, step=state.step)
    return improved


def meta_test_scores(cfg: MetaTrainConfig, accelerator: Accelerator, meta_test_tasks: list[str],
                     score: Callable[[EpisodeSampler, TaskCollection], dict[str, float]]) -> dict:
    """After meta-training: ``score(sampler, tasks)`` on episodes of each held-out task (its test split), and the mean.

    A task too small for an episode is reported and skipped; the meta-trained run is kept.
    """
    if not cfg.meta.test_episodes:
        return {}
    tasks = load_meta_test_tasks(cfg, meta_test_tasks)
    per_task = {}
    for name in tasks.names:  # one sampler per task: every task gets its own test_episodes
        try:
            task_sampler = EpisodeSampler(tasks.subset([name]), cfg.meta.n_way, cfg.meta.k_shot,
                                          cfg.meta.query_per_class, seed=VAL_SEED)
        except ValueError as err:
            accelerator.print(f"meta-test task {name} not scored: {err}")
            continue
        per_task[name] = score(task_sampler, tasks)
    if not per_task:
        return {}
    mean = {key: sum(s[key] for s in per_task.values()) / len(per_task) for key in ("query_loss", "query_accuracy")}
    return {"episodes_per_task": cfg.meta.test_episodes, "k_shot": cfg.meta.k_shot, "mean": mean, "tasks": per_task}


def restore_best(model, out: Path) -> None:
    """Load the best validation weights kept by :func:`keep_if_best` (if any validation improved)."""
    best = out / "checkpoints" / "best.safetensors"
    if best.exists():
        load_trainable_weights(model, best)


def meta_metrics(cfg: MetaTrainConfig, accelerator: Accelerator, state: MetaState, meta_test: dict,
                 started: float) -> dict:
    """What ``metrics.json`` of a meta-trained run holds."""
    return {
        "meta_test": meta_test,
        "best_step": state.best_step,
        "val_query_accuracy": state.best_val,
        "history": state.history,
        "seed": cfg.train.seed,
        "processes": accelerator.num_processes,
        "wall_time_s": round(time.time() - started, 1),
    }
