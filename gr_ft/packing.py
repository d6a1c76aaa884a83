"""Packed training (``train.packing``): a batch's sequences in one row, attention that never crosses a boundary.

A packed batch is the padding-free layout of transformers' ``DataCollatorWithFlattening``: the batch's sequences
concatenated into one row (1, T) with no padding, position ids restarting for every sequence, and the sequence
boundaries as ``cu_seq_lens_q`` / ``cu_seq_lens_k`` (the keyword arguments transformers' attention functions
receive, as its flash-attention path reads them). The attention function registered here,
:data:`PACKED_ATTENTION`, runs SDPA once per sequence on that row: the result of a block-diagonal mask without
computing the masked blocks. Without boundary arguments it is transformers' own SDPA, so evaluation and prediction
of the same model are unchanged. Pooling (mean or CLS) is per sequence, so the head sees one vector per original
sequence and the loss is the unpacked one.

Only families whose attention goes through transformers' attention interface and whose positions come from
``position_ids`` can pack (the ``packing_position_start`` of their :class:`~gr_ft.backbones.BackboneSpec`).

Example:
    >>> enable_packing(model)                                  # a SequenceModel on an ESM or BERT backbone
    >>> collate = PackedCollator(model.spec.packing_position_start(model.config), "multiclass")
    >>> batch = collate([{"input_ids": [0, 5, 6, 2], "labels": 1}, {"input_ids": [0, 7, 2], "labels": 0}])
    >>> batch["input_ids"].shape, batch["cu_seq_lens_q"].tolist()
    (torch.Size([1, 7]), [0, 4, 7])
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from transformers import AttentionInterface, DataCollatorWithFlattening
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from .backbones import BACKBONES, BackboneSpec, token_states

__all__ = [
    "PACKED_ATTENTION",
    "PACKED_KEYS",
    "packable_families",
    "check_packing",
    "enable_packing",
    "PackedCollator",
    "PackedTokenBudgetBatchSampler",
    "make_packed_dataloader",
    "packed_token_states",
    "pool_segments",
]

logger = logging.getLogger(__name__)

PACKED_ATTENTION = "gr_ft_packed_sdpa"
"""Name of the packing-aware attention in transformers' ``AttentionInterface`` (and its mask in
``AttentionMaskInterface``: transformers' SDPA mask, used for ordinary padded batches)."""

PACKED_KEYS = ("position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
"""Keys of a packed batch that go to the backbone beside ``input_ids``."""


def packed_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: Optional[torch.Tensor], *, dropout: float = 0.0,
                          scaling: Optional[float] = None, cu_seq_lens_q: Optional[torch.Tensor] = None,
                          **kwargs) -> tuple[torch.Tensor, None]:
    """SDPA per packed sequence when ``cu_seq_lens_q`` marks the boundaries, else transformers' SDPA.

    query/key/value: 1, heads, T, head_dim; returns 1, T, heads, head_dim (the layout of transformers' SDPA).
    Each sequence attends only to itself and runs SDPA's unmasked (fused) kernel (:func:`packed_sdpa_mask` gives
    a packed row no mask).
    """
    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if query.shape[0] != 1 or attention_mask is not None:
        raise ValueError("a packed batch is one row without an attention mask (gr_ft.packing.PackedCollator)")
    bounds = cu_seq_lens_q.tolist()
    pieces = [F.scaled_dot_product_attention(query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
                                             dropout_p=dropout, scale=scaling)
              for start, end in zip(bounds[:-1], bounds[1:])]
    return torch.cat(pieces, dim=2).transpose(1, 2).contiguous(), None


def packed_sdpa_mask(batch_size: int, q_length: int, kv_length: int, *args,
                     attention_mask: Optional[torch.Tensor] = None, **kwargs) -> Optional[torch.Tensor]:
    """transformers' SDPA mask, except for one row without padding, which needs none: a packed row (split at its
    boundaries by :func:`packed_sdpa_attention`; transformers 5.25 would build its block-diagonal T x T mask) or a
    single unpadded sequence."""
    if batch_size == 1 and attention_mask is None:
        return None
    return sdpa_mask(batch_size, q_length, kv_length, *args, attention_mask=attention_mask, **kwargs)


AttentionInterface.register(PACKED_ATTENTION, packed_sdpa_attention)
AttentionMaskInterface.register(PACKED_ATTENTION, packed_sdpa_mask)


def packable_families() -> list[str]:
    """Backbone families that can train packed (their spec has a ``packing_position_start``).

    Example:
        >>> "esm" in packable_families(), "hyenadna" in packable_families()
        (True, False)
    """
    return sorted(name for name, spec in BACKBONES.items() if spec.packing_position_start is not None)


def check_packing(spec: BackboneSpec) -> None:
    """Refuse ``train.packing=true`` for a family that cannot pack, naming those that can."""
    if spec.packing_position_start is None:
        why = (" (it takes no attention mask)" if not spec.takes_attention_mask else
               " (its attention or positions do not go through transformers' attention interface and position_ids)")
        raise ValueError(f"train.packing=true: the {spec.name} backbone cannot pack sequences{why}; families that can: "
                         f"{', '.join(packable_families())}. Set train.packing=false (length-grouped batches, "
                         f"train.bucket_by_length, or train.batch_tokens also cut padding)")


def enable_packing(model: torch.nn.Module) -> None:
    """Switch a :class:`~gr_ft.modeling.SequenceModel`'s backbone to :data:`PACKED_ATTENTION` (after
    :func:`check_packing`). Unpacked batches still run transformers' SDPA; a backbone with attention dropout
    keeps it (dropout per sequence, as unpacked)."""
    check_packing(model.spec)
    model.backbone.set_attn_implementation(PACKED_ATTENTION)


class PackedCollator:
    """Features of one batch -> one packed row (``DataCollatorWithFlattening``) plus per-sequence labels.

    Returns ``input_ids`` and ``attention_mask`` (all ones; counted as real tokens, not passed to the backbone)
    of shape 1, T; ``position_ids`` restarting at ``position_start`` for each sequence; ``cu_seq_lens_q/k`` and
    ``max_length_q/k``; ``labels``: one per sequence (B or B, C), or for per-position tasks the concatenated token
    labels (1, T).
    """

    def __init__(self, position_start: int, problem_type: str):
        self.problem_type = problem_type
        self.flatten = DataCollatorWithFlattening(return_position_ids=True, return_flash_attn_kwargs=True,
                                                  position_ids_start=position_start)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.flatten([{"input_ids": list(f["input_ids"])} for f in features])
        batch.pop("labels")  # the flattening collator's next-token labels; ours are the task's
        batch["attention_mask"] = torch.ones_like(batch["input_ids"])
        labels = [f["labels"] for f in features]
        if self.problem_type == "token_classification":
            batch["labels"] = torch.tensor([token for row in labels for token in row])[None]
        else:
            batch["labels"] = torch.tensor(labels)
        return batch


class PackedTokenBudgetBatchSampler:
    """Batches of at most ``max_tokens`` real tokens (no padding exists in a packed row) and ``max_rows`` sequences.

    Formed once from a seeded random order (packing needs no length grouping), served in a new seeded order every
    epoch (``set_epoch``), so every epoch and every resume sees the same batches. A sequence longer than the budget
    is a batch of its own.

    Example:
        >>> sampler = PackedTokenBudgetBatchSampler([10, 500, 20, 480], max_tokens=1000, max_rows=32, seed=0)
        >>> all(sum([10, 500, 20, 480][i] for i in b) <= 1000 for b in sampler)
        True
    """

    def __init__(self, lengths: list[int], max_tokens: int, max_rows: int, seed: int, data: Optional[Dataset] = None):
        self.seed, self.data, self.epoch = seed, data, 0
        self.sampler = self  # accelerate's loader calls batch_sampler.sampler.set_epoch
        self.batches: list[list[int]] = []
        batch: list[int] = []
        tokens = 0
        for index in np.random.default_rng(seed).permutation(len(lengths)).tolist():
            if batch and (tokens + lengths[index] > max_tokens or len(batch) == max_rows):
                self.batches.append(batch)
                batch, tokens = [], 0
            batch.append(index)
            tokens += lengths[index]
        if batch:
            self.batches.append(batch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.data, "set_epoch"):
            self.data.set_epoch(epoch)

    def __iter__(self):
        order = torch.randperm(len(self.batches), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        return (list(self.batches[i]) for i in order.tolist())

    def __len__(self) -> int:
        return len(self.batches)


def make_packed_dataloader(data: Dataset, position_start: int, batch_size: int, seed: int = 0,
                           batch_tokens: Optional[int] = None, num_workers: int = 0) -> DataLoader:
    """A training loader of packed batches: ``batch_size`` sequences in a seeded random order per epoch, or with
    ``batch_tokens`` at most that many real tokens per batch (:class:`PackedTokenBudgetBatchSampler`).

    Example:
        >>> loader = make_packed_dataloader(train, position_start=0, batch_size=16, seed=0)
    """
    from .data import EpochRandomSampler

    collate = PackedCollator(position_start, data.problem_type)
    if batch_tokens is not None:
        batches = PackedTokenBudgetBatchSampler(data.lengths, batch_tokens, batch_size, seed, data)
        return DataLoader(data, batch_sampler=batches, collate_fn=collate, num_workers=num_workers)
    return DataLoader(data, batch_size=batch_size, sampler=EpochRandomSampler(data, seed), collate_fn=collate,
                      num_workers=num_workers)


def packed_token_states(spec: BackboneSpec, backbone: torch.nn.Module, input_ids: torch.Tensor,
                        packed: dict[str, Any]) -> torch.Tensor:
    """Token states of a packed row, 1, T, H: the backbone gets the positions and boundaries, no attention mask."""
    if backbone.config._attn_implementation != PACKED_ATTENTION:
        raise ValueError("a packed batch reached a backbone without packed attention; call "
                         "gr_ft.packing.enable_packing(model) first (train.packing=true does)")
    return token_states(spec, backbone, input_ids, None, **packed)


def pool_segments(hidden: torch.Tensor, cu_seq_lens: torch.Tensor, pooling: str) -> torch.Tensor:
    """One vector per packed sequence, B, H, from the states of a packed row (1, T, H): the mean over each
    sequence's tokens (specials included, as unpacked mean pooling over the attention mask) or its first (CLS) token.

    Example:
        >>> pool_segments(torch.arange(4.0).view(1, 4, 1), torch.tensor([0, 1, 4]), "mean").flatten().tolist()
        [0.0, 2.0]
    """
    states, bounds = hidden[0], cu_seq_lens.long()
    if pooling == "cls":
        return states[bounds[:-1]]
    lengths = bounds[1:] - bounds[:-1]
    segment = torch.repeat_interleave(torch.arange(len(lengths), device=states.device), lengths)
    sums = torch.zeros(len(lengths), states.shape[-1], dtype=states.dtype, device=states.device)
    sums = sums.index_add(0, segment, states)
    return sums / lengths.unsqueeze(-1).to(states.dtype)
