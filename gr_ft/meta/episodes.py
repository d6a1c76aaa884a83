"""Seeded N-way K-shot episodes drawn from a task collection, and their tokenized batches.

An episode picks one task, ``n_way`` of its classes, ``k_shot`` support and ``query_per_class`` query
examples per class; support and query never share an example. Episode ``i`` is a pure function
of ``(seed, i)``, so a resumed run, or every process of a distributed run, draws the same
episodes without saving sampler state.

Class ids are re-mapped to ``0..n_way-1`` per episode in sorted label order ("0" -> 0, "1" -> 1),
so a label keeps its meaning across tasks (e.g. 1 = "active enhancer" in every cell type), which
is what a shared head needs. ``shuffle_classes=True`` gives the classic random assignment.

Example:
    >>> sampler = EpisodeSampler(tasks, n_way=2, k_shot=5, query_per_class=10, seed=0)
    >>> episode = sampler.sample(0)
    >>> support, query = encode_episode(episode, tasks, tokenizer, max_length=128)
    >>> support["labels"].tolist()[:4], support["input_ids"].shape[0]
    ([1, 0, 0, 1], 10)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Iterator, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from ..data import encode_sequences

__all__ = ["EpisodeShape", "Episode", "EpisodeSampler", "encode_episode", "encode_labeled_sequences", "split_batch"]

logger = logging.getLogger(__name__)


@dataclass
class EpisodeShape:
    """The episode shape and the length of meta-training (flags ``meta.*``), one definition for Reptile, ProtoNet
    and the recipes' ``MetaConfig``, which derive from it."""

    n_way: int = 2
    """Classes per episode; the head has n_way outputs."""
    k_shot: int = 8
    """Support examples per class in each episode."""
    query_per_class: int = 8
    """Query examples per class in each episode (ProtoNet's loss; Reptile's validation score)."""
    meta_steps: int = 300
    """Outer updates (each one meta-batch of episodes)."""
    meta_batch_tasks: int = 2
    """Episodes (on distinct tasks while there are enough) per meta-step, shared out across processes."""

    def __post_init__(self):
        for flag in ("meta_steps", "meta_batch_tasks", "k_shot"):
            if getattr(self, flag) < 1:
                raise ValueError(f"meta.{flag} must be >= 1, got {getattr(self, flag)}")
        if self.n_way < 2:
            raise ValueError(f"meta.n_way must be >= 2, got {self.n_way}")
        if self.query_per_class < 0:
            raise ValueError(f"meta.query_per_class must be >= 0, got {self.query_per_class}")

    def episode_shape(self) -> dict:
        """The :class:`EpisodeShape` fields of this config, to build another config of the same shape."""
        return {f.name: getattr(self, f.name) for f in fields(EpisodeShape)}


@dataclass(frozen=True)
class Episode:
    """One few-shot problem: row positions into ``tasks[task]`` and the classes they stand for."""

    task: str
    support_index: np.ndarray
    """Row positions (``frame.iloc``) of the n_way * k_shot support examples."""
    query_index: np.ndarray
    """Row positions of the n_way * query_per_class query examples; disjoint from the support."""
    classes: tuple[str, ...]
    """Original labels; ``classes[i]`` is episode class ``i``."""
    support_labels: np.ndarray
    """Episode class ids (0..n_way-1) of the support rows."""
    query_labels: np.ndarray
    """Episode class ids of the query rows."""

    @property
    def n_way(self) -> int:
        return len(self.classes)


class EpisodeSampler:
    """Draws seeded episodes; ``query_per_class`` counts query examples per class.

    Raises at construction if a task has fewer than ``n_way`` classes with ``k_shot + query_per_class``
    examples each, naming the task and the short classes.

    Example:
        >>> sampler = EpisodeSampler(tasks.subset(split.meta_train), n_way=2, k_shot=8, query_per_class=8, seed=0)
        >>> [e.task for e in sampler.meta_batch(step=0, n_tasks=3)]
        ['K562', 'HepG2', 'GM12878']
    """

    def __init__(self, tasks: Mapping[str, pd.DataFrame], n_way: int, k_shot: int, query_per_class: int,
                 seed: int = 0, shuffle_classes: bool = False):
        for flag, value, minimum in (("meta.n_way", n_way, 2), ("meta.k_shot", k_shot, 1),
                                     ("meta.query_per_class", query_per_class, 0)):
            if value < minimum:
                raise ValueError(f"{flag} must be >= {minimum}, got {value}")
        if not tasks:
            raise ValueError("the episode sampler needs at least one task")
        self.n_way, self.k_shot, self.query_per_class = n_way, k_shot, query_per_class
        self.seed, self.shuffle_classes = seed, shuffle_classes
        self.task_names = sorted(tasks)
        # task -> class label -> row positions of that class
        self.rows_by_class = {name: self._eligible_rows(name, tasks[name]) for name in self.task_names}

    def _eligible_rows(self, task: str, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        needed = self.k_shot + self.query_per_class
        groups = {str(label): np.flatnonzero(frame["label"].to_numpy() == label)
                  for label in sorted(frame["label"].unique())}
        eligible = {label: rows for label, rows in groups.items() if len(rows) >= needed}
        short = {label: len(rows) for label, rows in groups.items() if len(rows) < needed}
        if len(eligible) < self.n_way:
            detail = ", ".join(f"class {label!r} has {n}" for label, n in short.items()) or f"classes {list(groups)}"
            raise ValueError(
                f"task {task!r} cannot make {self.n_way}-way episodes with k_shot={self.k_shot} + "
                f"query_per_class={self.query_per_class} = {needed} examples per class: {detail}. Lower meta.k_shot or "
                f"meta.query_per_class, or drop the task."
            )
        if short:
            logger.warning("task %s: classes %s have fewer than %d examples and are never sampled", task, short, needed)
        return eligible

    def sample(self, index: int) -> Episode:
        """Episode number ``index`` (same seed and index, same episode)."""
        return self.meta_batch(index, 1)[0]

    def __iter__(self) -> Iterator[Episode]:
        """Episodes 0, 1, 2, ... without end."""
        index = 0
        while True:
            yield self.sample(index)
            index += 1

    def meta_batch(self, step: int, n_tasks: int) -> list[Episode]:
        """``n_tasks`` episodes for meta-step ``step``, on distinct tasks while there are enough.

        Every process draws the same list; process ``rank`` of ``world`` takes ``[rank::world]``.
        """
        if n_tasks < 1:
            raise ValueError(f"meta.meta_batch_tasks must be >= 1, got {n_tasks}")
        rng = np.random.default_rng([self.seed, step])
        replace = n_tasks > len(self.task_names)
        picks = rng.choice(len(self.task_names), size=n_tasks, replace=replace)
        return [self._draw(self.task_names[t], np.random.default_rng([self.seed, step, i]))
                for i, t in enumerate(picks)]

    def _draw(self, task: str, rng: np.random.Generator) -> Episode:
        rows = self.rows_by_class[task]
        labels = sorted(rows)
        chosen = sorted(rng.choice(len(labels), size=self.n_way, replace=False))
        classes = [labels[i] for i in chosen]
        if self.shuffle_classes:
            classes = [classes[i] for i in rng.permutation(self.n_way)]
        support, query = [], []
        for class_id, label in enumerate(classes):
            picked = rng.choice(rows[label], size=self.k_shot + self.query_per_class, replace=False)
            support += [(row, class_id) for row in picked[: self.k_shot]]
            query += [(row, class_id) for row in picked[self.k_shot:]]
        support = [support[i] for i in rng.permutation(len(support))]  # mix classes within mini-batches
        query = [query[i] for i in rng.permutation(len(query))]
        return Episode(
            task=task,
            support_index=np.array([r for r, _ in support], dtype=np.int64),
            query_index=np.array([r for r, _ in query], dtype=np.int64),
            classes=tuple(classes),
            support_labels=np.array([c for _, c in support], dtype=np.int64),
            query_labels=np.array([c for _, c in query], dtype=np.int64),
        )


# ---------------------------------------------------------------- tokenized batches


def encode_labeled_sequences(tokenizer, sequences: Sequence[str], labels: Optional[Sequence[int]], max_length: int,
                             crop: str = "start") -> dict[str, torch.Tensor]:
    """One padded batch: ``input_ids``, ``attention_mask`` (B, L) and, if given, ``labels`` (B,).

    Example:
        >>> encode_labeled_sequences(tokenizer, ["ACGTACGT", "ACG"], [1, 0], max_length=16)["input_ids"].shape
        torch.Size([2, 8])
    """
    if len(sequences) == 0:  # e.g. an episode with query_per_class=0
        empty = torch.zeros(0, 0, dtype=torch.long)
        batch = {"input_ids": empty, "attention_mask": empty.clone()}
    else:
        encoded, _ = encode_sequences(tokenizer, list(sequences), max_length, crop)
        batch = dict(tokenizer.hf.pad({"input_ids": encoded["input_ids"]}, return_tensors="pt"))
    if labels is not None:
        batch["labels"] = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    return batch


def encode_episode(episode: Episode, tasks: Mapping[str, pd.DataFrame], tokenizer, max_length: int,
                   crop: str = "start") -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(support_batch, query_batch)`` of an episode, labels as episode class ids.

    Example:
        >>> support, query = encode_episode(sampler.sample(0), tasks, tokenizer, max_length=128)
    """
    sequences = tasks[episode.task]["sequence"].to_numpy()
    support = encode_labeled_sequences(tokenizer, sequences[episode.support_index], episode.support_labels,
                                       max_length, crop)
    query = encode_labeled_sequences(tokenizer, sequences[episode.query_index], episode.query_labels,
                                     max_length, crop)
    return support, query


def split_batch(batch: dict[str, torch.Tensor], batch_size: Optional[int]) -> list[dict[str, torch.Tensor]]:
    """Cut a batch into mini-batches of ``batch_size`` rows (None: keep it whole).

    Example:
        >>> [b["labels"].tolist() for b in split_batch({"labels": torch.arange(5)}, 2)]
        [[0, 1], [2, 3], [4]]
    """
    n = len(next(iter(batch.values())))
    if batch_size is None or batch_size >= n:
        return [batch]
    return [{key: value[start:start + batch_size] for key, value in batch.items()} for start in range(0, n, batch_size)]
