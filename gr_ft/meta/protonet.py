"""Prototypical networks (Snell et al. 2017) on pooled sequence embeddings.

A class prototype is the mean embedding of its support examples; a query is scored by its
negative squared euclidean distance (or scaled cosine similarity) to each prototype. Episodic
training backpropagates the query cross-entropy into the LoRA factors; with no training at all,
:class:`ProtoNetClassifier` turns any frozen backbone into a few-shot classifier.

Distributed: as for Reptile, do not wrap the model in DDP. Each process computes
:func:`protonet_loss` on its own episodes and calls :func:`average_gradients` after ``backward``
so every process takes the same optimiser step.

Example:
    >>> support, query = encode_episode(sampler.sample(step), tasks, tokenizer, max_length=256)
    >>> out = protonet_loss(model, support, query, n_way=2)
    >>> out["loss"].backward(); optimizer.step()
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import mean_pool
from .episodes import EpisodeShape, encode_labeled_sequences
from .distributed import device_of, unwrap

__all__ = [
    "ProtoNetConfig",
    "DISTANCES",
    "compute_prototypes",
    "prototype_logits",
    "margin_spread",
    "embed_batch",
    "protonet_loss",
    "ProtoNetClassifier",
]

logger = logging.getLogger(__name__)


def _negative_squared_euclidean(query: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    # Q, 1, H - 1, N, H -> Q, N
    return -(query.unsqueeze(1) - prototypes.unsqueeze(0)).pow(2).sum(-1)


def _cosine(query: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    return F.normalize(query, dim=-1) @ F.normalize(prototypes, dim=-1).T


DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "euclidean": _negative_squared_euclidean,
    "cosine": _cosine,
}


@dataclass
class ProtoNetConfig(EpisodeShape):
    """Episodic prototypical-network training of the adapter (flags ``meta.*``): the episode shape plus the optimiser
    and the metric."""

    lr: float = 1e-3
    distance: str = "euclidean"
    """euclidean (negative squared distance) or cosine."""
    temperature: float = 1.0
    """Logits are divided by this (use ~0.1 with cosine, whose similarities lie in [-1, 1])."""

    def __post_init__(self):
        super().__post_init__()
        if self.query_per_class < 1:
            raise ValueError(f"meta.query_per_class must be >= 1, got {self.query_per_class}")
        for flag in ("lr", "temperature"):
            if getattr(self, flag) <= 0:
                raise ValueError(f"meta.{flag} must be > 0, got {getattr(self, flag)}")
        if self.distance not in DISTANCES:
            raise ValueError(f"meta.distance must be one of {sorted(DISTANCES)}, got {self.distance!r}")


def compute_prototypes(embeddings: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """Class means of support embeddings: (B, H) with labels in 0..n_way-1 -> (n_way, H).

    Example:
        >>> compute_prototypes(torch.tensor([[0., 0.], [2., 4.], [1., 1.]]), torch.tensor([0, 0, 1]), 2)
        tensor([[1., 2.],
                [1., 1.]])
    """
    if labels.min() < 0 or labels.max() >= n_way:
        raise ValueError(f"support labels must lie in 0..{n_way - 1}, got {labels.min().item()}..{labels.max().item()}")
    one_hot = F.one_hot(labels.long(), n_way).to(embeddings.dtype)  # B, N
    counts = one_hot.sum(0)  # N
    if (counts == 0).any():
        raise ValueError(f"class(es) {torch.nonzero(counts == 0).flatten().tolist()} have no support example")
    return (one_hot.T @ embeddings) / counts.unsqueeze(1)


def prototype_logits(query_embeddings: torch.Tensor, prototypes: torch.Tensor, distance: str = "euclidean",
                     temperature: float = 1.0) -> torch.Tensor:
    """Query-to-prototype scores, (Q, H) x (N, H) -> (Q, N): ``-||q - p||^2`` or cosine, over ``temperature``.

    Example:
        >>> prototype_logits(torch.tensor([[0., 0.]]), torch.tensor([[1., 0.], [0., 2.]]))
        tensor([[-1., -4.]])
    """
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; choose one of {sorted(DISTANCES)}")
    return DISTANCES[distance](query_embeddings, prototypes) / temperature


def margin_spread(logits: torch.Tensor) -> float:
    """The sd of logit margins (each row minus its mean): the temperature that gives them unit spread.

    Example:
        >>> margin_spread(torch.tensor([[-1., 1.], [1., -1.]]))
        1.1547
    """
    return max(float((logits - logits.mean(-1, keepdim=True)).std()), 1e-6)


def embed_batch(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Pooled embeddings (B, H) from a SequenceModel (peft-wrapped or not) or a bare HF encoder.

    Example:
        >>> embed_batch(peft_model, batch["input_ids"], batch["attention_mask"]).shape
        torch.Size([16, 128])
    """
    model = unwrap(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA layers live inside it
    if hasattr(base, "embed"):
        return base.embed(input_ids, attention_mask)
    hidden = base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # B, L, H
    return mean_pool(hidden, attention_mask)


def _embed_on_device(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    device = device_of(model)
    return embed_batch(model, batch["input_ids"].to(device), batch["attention_mask"].to(device))


def protonet_loss(model: nn.Module, support_batch: dict[str, torch.Tensor], query_batch: dict[str, torch.Tensor],
                  n_way: int, distance: str = "euclidean", temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """Cross-entropy of query examples against support prototypes: ``{"loss", "logits"}`` (logits Q, n_way).

    Example:
        >>> out = protonet_loss(model, support, query, n_way=2)
        >>> out["loss"].backward()
    """
    prototypes = compute_prototypes(_embed_on_device(model, support_batch).float(),
                                    support_batch["labels"].to(device_of(model)), n_way)
    logits = prototype_logits(_embed_on_device(model, query_batch).float(), prototypes, distance, temperature)
    return {"loss": F.cross_entropy(logits, query_batch["labels"].to(logits.device)), "logits": logits}


class ProtoNetClassifier:
    """Few-shot classifier from class-mean embeddings; works on a frozen backbone with no training.

    Example:
        >>> clf = ProtoNetClassifier(model, tokenizer, max_length=256).fit(support_seqs, support_labels)
        >>> clf.predict(["ACGT" * 50])
        ['K562']
    """

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 512, *, batch_size: int = 64,
                 distance: str = "euclidean", temperature: float = 1.0, crop: str = "start"):
        if distance not in DISTANCES:
            raise ValueError(f"unknown distance {distance!r}; choose one of {sorted(DISTANCES)}")
        self.model, self.tokenizer = model, tokenizer
        self.max_length, self.batch_size, self.crop = max_length, batch_size, crop
        self.distance, self.temperature = distance, temperature
        self.classes_: list = []
        self.prototypes_: torch.Tensor | None = None

    @torch.no_grad()
    def embed(self, sequences: Sequence[str]) -> torch.Tensor:
        """Pooled embeddings (N, H), float32 on CPU, computed in eval mode."""
        if len(sequences) == 0:
            raise ValueError("no sequences to embed")
        was_training = self.model.training
        self.model.eval()
        try:
            chunks = [
                _embed_on_device(self.model, encode_labeled_sequences(
                    self.tokenizer, sequences[i:i + self.batch_size], None, self.max_length, self.crop)).float().cpu()
                for i in range(0, len(sequences), self.batch_size)
            ]
        finally:
            self.model.train(was_training)
        return torch.cat(chunks)

    def fit(self, sequences: Sequence[str], labels: Sequence) -> "ProtoNetClassifier":
        """Compute one prototype per class (classes sorted) from labelled support sequences."""
        if len(sequences) != len(labels) or not sequences:
            raise ValueError(f"fit needs one label per sequence and at least one sequence; got {len(sequences)} "
                             f"sequences and {len(labels)} labels")
        self.classes_ = sorted(set(labels), key=str)
        if len(self.classes_) < 2:
            raise ValueError(f"fit needs at least two classes, got {self.classes_}")
        class_ids = torch.tensor([self.classes_.index(label) for label in labels])
        self.prototypes_ = compute_prototypes(self.embed(list(sequences)), class_ids, len(self.classes_))
        logger.info("prototypes for %d classes from %d support sequences", len(self.classes_), len(sequences))
        return self

    def predict_logits(self, sequences: Sequence[str]) -> torch.Tensor:
        """Scores (N, n_classes), columns in ``classes_`` order."""
        if self.prototypes_ is None:
            raise ValueError("call fit(support_sequences, labels) before predicting")
        return prototype_logits(self.embed(list(sequences)), self.prototypes_, self.distance, self.temperature)

    def predict_proba(self, sequences: Sequence[str]) -> torch.Tensor:
        """Class probabilities (softmax of the logits), columns in ``classes_`` order."""
        return self.predict_logits(sequences).softmax(-1)

    def predict(self, sequences: Sequence[str]) -> list:
        """The nearest prototype's class for each sequence."""
        return [self.classes_[i] for i in self.predict_logits(sequences).argmax(-1).tolist()]
