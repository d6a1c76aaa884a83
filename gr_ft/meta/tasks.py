"""Collections of related labelled tasks (cell types, histone marks, TFs) for few-shot meta-learning.

Two layouts are read:

* a folder of task folders, each a dataset folder with ``train``/``dev``/``test`` files::

      gue_emp_yeast/H3/{train,dev,test}.csv.gz
      gue_emp_yeast/H4ac/{train,dev,test}.csv.gz

  (``gr_ft.synthetic.write_task("cell_type", out_dir)`` writes this layout, one folder per cell type);
* one file, or one dataset folder, whose ``task_column`` says which task a row belongs to.

Every task becomes a DataFrame with columns ``sequence`` and ``label`` (labels kept as strings, as
in :mod:`gr_ft.labels`). :func:`split_tasks` holds whole tasks out for meta-testing, so a
meta-test task is never seen during meta-training.

Example:
    >>> tasks = load_task_collection("../shared/data/fewshot/gue_emp_yeast", split="train")
    >>> split = split_tasks(tasks, meta_test=["H3", "H4"])
    >>> split.meta_train[:2], len(tasks.subset(split.meta_train))
    (['H3K14ac', 'H3K36me3'], 8)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np
import pandas as pd

from ..io import SPLIT_NAMES, find_split_files, read_table, validate_sequences

__all__ = ["TaskCollection", "TaskSplit", "load_task_collection", "split_tasks"]

logger = logging.getLogger(__name__)


class TaskCollection(Mapping):
    """Task name -> DataFrame of ``sequence, label``; a read-only mapping with a few helpers.

    Example:
        >>> tasks = TaskCollection({"HepG2": frame_a, "K562": frame_b})
        >>> tasks.names, tasks.classes("HepG2")
        (['HepG2', 'K562'], ['0', '1'])
    """

    def __init__(self, tasks: Mapping[str, pd.DataFrame], sources: Optional[Mapping[str, str]] = None):
        self._tasks = {str(name): frame for name, frame in sorted(tasks.items())}
        self.sources = {name: (sources or {}).get(name, name) for name in self._tasks}
        """Where each task was read from (for error messages)."""

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._tasks:
            raise KeyError(f"unknown task {name!r}; choose one of {self.names}")
        return self._tasks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"TaskCollection({len(self)} tasks: {', '.join(self.names[:6])}{', ...' if len(self) > 6 else ''})"

    @property
    def names(self) -> list[str]:
        """Task names, sorted."""
        return list(self._tasks)

    def classes(self, name: str) -> list[str]:
        """The sorted label values of one task."""
        return sorted(self[name]["label"].unique())

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Examples per class of every task, e.g. ``{"H3": {"0": 662, "1": 686}}``."""
        return {name: frame["label"].value_counts().sort_index().to_dict() for name, frame in self._tasks.items()}

    def subset(self, names: Sequence[str]) -> "TaskCollection":
        """The collection restricted to ``names`` (e.g. the meta-train tasks)."""
        return TaskCollection({name: self[name] for name in names}, {name: self.sources[name] for name in names})


class TaskSplit(NamedTuple):
    """Task names used for meta-training and held out for meta-testing (disjoint)."""

    meta_train: list[str]
    meta_test: list[str]


# ---------------------------------------------------------------- loading


def _clean_task_frame(frame: pd.DataFrame, task: str, source: str, alphabet: str,
                      sequence_column: str, label_column: str) -> pd.DataFrame:
    """Validate one task's rows, keep ``sequence, label`` and drop repeated sequences."""
    if label_column not in frame.columns:
        columns = [c for c in frame.columns if c != "_line"]
        raise ValueError(f"{source}: no {label_column!r} column; found {columns}. Pass label_column=...")
    frame = validate_sequences(frame, alphabet, source, sequence_column)
    frame = pd.DataFrame({
        "sequence": frame[sequence_column].to_numpy(),
        "label": frame[label_column].astype(str).str.strip().to_numpy(),
    })
    if frame.empty:
        raise ValueError(f"task {task!r} ({source}) has no rows")
    deduplicated = frame.drop_duplicates("sequence", keep="first").reset_index(drop=True)
    if len(deduplicated) < len(frame):
        logger.info("task %s: dropped %d repeated sequences", task, len(frame) - len(deduplicated))
    classes = sorted(deduplicated["label"].unique())
    if len(classes) < 2:
        raise ValueError(
            f"task {task!r} ({source}) has a single class {classes[0]!r}; few-shot episodes need at least two "
            f"classes per task. Remove the task or add examples of another class."
        )
    return deduplicated


def _split_file(folder: Path, split: str) -> Path:
    try:
        files = find_split_files(folder)
    except ValueError as err:
        raise ValueError(f"task folder {folder}: {err}") from None
    if split not in files:
        present = sorted(p.name for p in folder.iterdir() if p.is_file())
        raise ValueError(
            f"task folder {folder} has no {split} file (found {present}); every task folder needs "
            f"train/dev/test files such as {split}.csv.gz"
        )
    return files[split]


def _task_folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _read_task_folders(path: Path, split: str) -> dict[str, tuple[pd.DataFrame, str]]:
    folders = _task_folders(path)
    if not folders:
        raise ValueError(
            f"{path} has no task sub-folders; expected one folder per task (e.g. {path}/H3/train.csv.gz), "
            f"or pass task_column=<column> for a single file or dataset folder with a task column"
        )
    raw = {}
    for folder in folders:
        file = _split_file(folder, split)
        raw[folder.name] = (read_table(file), str(file))
    return raw


def _read_with_task_column(path: Path, split: str, task_column: str) -> dict[str, tuple[pd.DataFrame, str]]:
    file = _split_file(path, split) if path.is_dir() else path
    frame = read_table(file)
    if task_column not in frame.columns:
        columns = [c for c in frame.columns if c != "_line"]
        raise ValueError(f"{file}: no task column {task_column!r}; found {columns}. Pass task_column=...")
    return {str(task): (group, f"{file} ({task_column}={task})") for task, group in frame.groupby(task_column)}


def load_task_collection(path: Union[str, Path], task_column: Optional[str] = None, split: str = "train",
                         alphabet: str = "dna", sequence_column: str = "sequence",
                         label_column: str = "label") -> TaskCollection:
    """Read many related tasks from a folder of task folders, or from one file with a task column.

    ``split`` picks the file read in each task folder (train, dev or test). Errors name the task
    and file: a task folder without the split's file, a task with a single class, bad sequences.

    Example:
        >>> tasks = load_task_collection("data/cell_types")                     # one folder per task
        >>> tasks = load_task_collection("enhancers.csv", task_column="cell_type")
        >>> tasks.class_counts()["HepG2"]
        {'0': 240, '1': 250}
    """
    path = Path(path)
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {list(SPLIT_NAMES)}, got {split!r}")
    if not path.exists():
        raise ValueError(f"task collection {path} does not exist; give a folder of task folders or a file")
    if task_column is None and path.is_file():
        raise ValueError(f"{path} is a single file: pass task_column=<column naming each row's task>")
    if task_column is not None and path.is_dir() and not any(path.glob(f"{split}.*")):
        raise ValueError(f"task_column={task_column!r} needs a file or a dataset folder with {split}.* files; "
                         f"{path} has none (for a folder of task folders leave task_column unset)")
    raw = _read_with_task_column(path, split, task_column) if task_column else _read_task_folders(path, split)
    tasks = {task: _clean_task_frame(frame, task, source, alphabet, sequence_column, label_column)
             for task, (frame, source) in raw.items()}
    logger.info("loaded %d tasks (%s split) from %s", len(tasks), split, path)
    return TaskCollection(tasks, {task: source for task, (_, source) in raw.items()})


# ---------------------------------------------------------------- meta-train / meta-test split


def _held_out_by_fraction(names: list[str], fraction: float, seed: int) -> list[str]:
    if not 0 <= fraction < 1:
        raise ValueError(f"meta_test as a fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return []  # every task meta-trains; the meta-test tasks come from another collection
    n_test = max(1, int(round(fraction * len(names))))
    if n_test >= len(names):
        raise ValueError(
            f"meta_test={fraction} of {len(names)} tasks leaves no meta-train task; lower it or add tasks"
        )
    order = np.random.default_rng(seed).permutation(len(names))
    return [names[i] for i in order[:n_test]]


def split_tasks(collection: Mapping[str, pd.DataFrame], meta_test: Union[Sequence[str], float] = 0.2,
                seed: int = 0) -> TaskSplit:
    """Hold whole tasks out for meta-testing: by name, or a seeded random ``fraction`` of them.

    A fraction of 0 holds out nothing, for meta-test tasks taken from another collection.

    Example:
        >>> split_tasks(tasks, meta_test=["HeLa"]).meta_test
        ['HeLa']
        >>> split_tasks(tasks, meta_test=0.25, seed=0) == split_tasks(tasks, meta_test=0.25, seed=0)
        True
    """
    names = sorted(collection)
    if len(names) < 2:
        raise ValueError(f"splitting tasks needs at least 2 tasks, got {len(names)}: {names}")
    if isinstance(meta_test, (int, float)) and not isinstance(meta_test, bool):
        held_out = _held_out_by_fraction(names, float(meta_test), seed)
    else:
        held_out = [meta_test] if isinstance(meta_test, str) else list(meta_test)
        unknown = [name for name in held_out if name not in collection]
        if unknown:
            raise ValueError(f"meta-test task(s) {unknown} not in the collection; choose from {names}")
        if not held_out or set(held_out) == set(names):
            raise ValueError(f"meta_test must hold out at least one and not all of the {len(names)} tasks")
    meta_train = [name for name in names if name not in held_out]
    return TaskSplit(meta_train=meta_train, meta_test=sorted(set(held_out)))
