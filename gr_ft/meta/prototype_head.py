"""The prototype head: a linear classification head that scores exactly like ProtoNet's prototypes.

Used to start fine-tuning from the support set's prototype classifier (Proto-MAML's initialisation
when the adapter is meta-learned), by ProtoNet meta-training to save its head, and by ``gr-ft adapt``.

Example:
    >>> temperature = init_prototype_head(model, tokenizer, ["ACGT" * 25, "TTTT" * 25], [0, 1], 2, max_length=128)
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .protonet import DISTANCES, ProtoNetClassifier, compute_prototypes, margin_spread, prototype_logits

__all__ = ["embed_sequences", "prototype_head_weights", "set_prototype_head", "init_prototype_head"]


def embed_sequences(model: nn.Module, tokenizer, sequences: Sequence[str], max_length: int, crop: str = "start",
                    batch_size: int = 64) -> torch.Tensor:
    """Pooled embeddings (N, H), float32 on CPU, in eval mode (the head's input).

    Example:
        >>> embed_sequences(model, tokenizer, ["ACGT" * 25], max_length=128).shape
        torch.Size([1, 64])
    """
    return ProtoNetClassifier(model, tokenizer, max_length, batch_size=batch_size, crop=crop).embed(list(sequences))


def prototype_head_weights(prototypes: torch.Tensor, distance: str = "euclidean", temperature: float = 1.0,
                           embedding_norm: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight (N, H), bias (N,))`` of a linear head that scores like the prototypes.

    euclidean: exact, ``W_c = 2 mu_c / T``, ``b_c = -||mu_c||^2 / T``. cosine: ``W_c = mu_c / (||mu_c|| T s)``
    with ``s`` the typical embedding norm: the same class ranking, probabilities scaled for queries
    of norm ``s``.

    Example:
        >>> prototype_head_weights(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        (tensor([[2., 0.],
                [0., 4.]]), tensor([-1., -4.]))
    """
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; choose one of {sorted(DISTANCES)}")
    if distance == "euclidean":
        return 2 * prototypes / temperature, -prototypes.pow(2).sum(-1) / temperature
    unit = prototypes / prototypes.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return unit / (temperature * embedding_norm), torch.zeros(len(prototypes))


def _head_linear(model: nn.Module) -> nn.Linear:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.task_head
    if hasattr(head, "modules_to_save"):  # peft's wrapper: the copy that trains and is saved
        head = head.modules_to_save[head.active_adapter if isinstance(head.active_adapter, str)
                                    else head.active_adapter[0]]
    linear = head[-1]
    assert isinstance(linear, nn.Linear), type(linear)
    return linear


def set_prototype_head(model: nn.Module, prototypes: torch.Tensor, distance: str = "euclidean",
                       temperature: float = 1.0, embedding_norm: float = 1.0) -> None:
    """Overwrite the classification head with the prototype classifier (see :func:`prototype_head_weights`).

    Example:
        >>> set_prototype_head(model, compute_prototypes(embed_sequences(model, tok, seqs, 128), labels, 2))
    """
    linear = _head_linear(model)
    if linear.out_features != len(prototypes) or linear.in_features != prototypes.shape[1]:
        raise ValueError(f"{len(prototypes)} prototypes of size {prototypes.shape[1]} do not fit the head "
                         f"({linear.out_features} outputs over {linear.in_features} features)")
    weight, bias = prototype_head_weights(prototypes.float(), distance, temperature, embedding_norm)
    with torch.no_grad():
        linear.weight.copy_(weight.to(linear.weight))
        linear.bias.copy_(bias.to(linear.bias))


def init_prototype_head(model: nn.Module, tokenizer, sequences: Sequence[str], labels: Sequence[int],
                        num_labels: int, *, max_length: int, crop: str = "start", distance: str = "euclidean",
                        temperature: Optional[float] = None) -> float:
    """Put the support set's prototype classifier into the head; returns the temperature used.

    ``temperature=None`` calibrates it on the support itself: the sd of the support's logit margins
    at temperature 1, so the head starts with logits of unit spread whatever the embedding scale
    (a random backbone's embeddings lie close together). Fine-tuning from here is Proto-MAML's
    initialisation (Triantafillou et al. 2020) when the adapter is meta-learned.

    Example:
        >>> init_prototype_head(model, tokenizer, ["ACGT" * 25, "TTTT" * 25], [0, 1], 2, max_length=128)
        0.0123
    """
    embeddings = embed_sequences(model, tokenizer, sequences, max_length, crop)
    ids = torch.as_tensor(list(labels))
    prototypes = compute_prototypes(embeddings, ids, num_labels)
    if temperature is None:
        temperature = margin_spread(prototype_logits(embeddings, prototypes, distance, 1.0))
    set_prototype_head(model, prototypes, distance, temperature, float(embeddings.norm(dim=-1).mean()))
    return temperature
