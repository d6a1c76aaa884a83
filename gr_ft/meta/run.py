"""What the meta-learning recipes share: their tasks, checkpoints, and the meta-trained run folder.

A meta-trained run folder has the layout of a fine-tuning run (see :mod:`gr_ft.run`), so
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
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator

from ..config import config_to_dict
from ..io import find_split_files
from ..labels import LabelSpec
from ..run import BaseModelRecord, write_run
from ..synthetic import cell_type_sequences, split_seed
from ..training import load_checkpoint, save_checkpoint
from .config import MetaConfig, MetaTrainConfig
from .reptile import restore_trainable, snapshot_trainable
from .tasks import TaskCollection, TaskSplit, load_task_collection, split_tasks

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
    "write_meta_run",
    "read_meta_record",
]

logger = logging.getLogger(__name__)
META_FILE = "meta.json"
STATE_FILE = "meta_state.json"
SYNTHETIC_DATA_SEED = 0  # the synthetic tasks are data: the same whatever the training seed


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
    frame = cell_type_sequences(n, length_bp=meta.synthetic_length_bp, seed=split_seed(SYNTHETIC_DATA_SEED, split))
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


def save_meta_checkpoint(accelerator: Accelerator, state: MetaState, folder: Path) -> None:
    """accelerate ``save_state`` (registered weights, optimiser, RNG) plus the meta state, replaced atomically.

    Example:
        >>> save_meta_checkpoint(accelerator, MetaState(step=50), out / "checkpoints" / "last")
    """
    save_checkpoint(accelerator, state, folder, state_file=STATE_FILE)


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
    query_size: int
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
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)


def read_meta_record(run_dir: str | Path) -> Optional[MetaRecord]:
    """``meta.json`` of a run folder, or None for a run that was not meta-trained.

    Example:
        >>> read_meta_record("runs/meta_protonet_yeast").method
        'protonet'
    """
    path = Path(run_dir) / META_FILE
    if not path.exists():
        return None
    return MetaRecord(**json.loads(path.read_text()))


def write_meta_run(out: Path, model, tokenizer, cfg: MetaTrainConfig, spec: LabelSpec, base: BaseModelRecord,
                   metrics: dict, record: MetaRecord) -> None:
    """Write the run folder of a fine-tuning run plus ``meta.json``; ``metrics.json`` still lands last.

    Example:
        >>> write_meta_run(out, model, tokenizer, cfg, spec, base, {"meta_test": ...}, record)
        >>> gr_ft.load_run(out).predict(["ACGT" * 50])
    """
    record.meta_config = config_to_dict(cfg.meta)
    out.mkdir(parents=True, exist_ok=True)
    record.save(out / META_FILE)
    write_run(out, model, tokenizer, spec, cfg.as_finetune_config(), base, metrics,
              backbone_dir=out / "checkpoints" / "backbone")


def task_frame_summary(tasks: TaskCollection) -> dict[str, dict[str, int]]:
    """Rows per class of every task (for logs and meta.json)."""
    return {name: tasks[name]["label"].value_counts().sort_index().to_dict() for name in tasks}


def sample_per_class(frame: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """Up to ``per_class`` rows of each label, seeded (row order: by label, then random)."""
    parts = [group.sample(n=min(per_class, len(group)), random_state=seed) for _, group in frame.groupby("label")]
    return pd.concat(parts).reset_index(drop=True)
