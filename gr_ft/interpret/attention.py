"""Attention maps per layer and head, projected from tokens to bases.

The backbone is run with ``output_attentions=True``. PyTorch's SDPA kernels (gr-ft's default for
fresh backbones) never materialise the attention matrix, and transformers returns no attentions
for them, so for this call the backbone is switched to the ``eager`` implementation (same
weights, same outputs up to float rounding) and switched back afterwards.

Each token-level map A (T x T, rows = queries, each row sums to 1 over keys) becomes a base-level
map ``P.T @ A @ P`` (L x L) with the projection of :mod:`gr_ft.interpret.projection`: every token's
row and column are spread evenly over the bases it covers (the full window for k-mers), and rows
and columns of special tokens ([CLS], [SEP]) are dropped, so a base-level row sums to the attention
its tokens paid to non-special tokens. ``received`` is the column sum of the base-level map: how
much attention each base receives from all bases, per layer and head.

Example:
    >>> result = attention_maps(load_run("runs/demo"), ["TATAAAAGGC" * 10])
    >>> result.maps.shape        # N, layers, heads (1 = their mean), L, L
    (1, 2, 1, 100, 100)
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from ..utils import progress_bar
from .attribution import _encode
from .ism import _padded
from .projection import project_attention
from .targets import inference_model

__all__ = ["AttentionResult", "attention_maps", "eager_attention"]

logger = logging.getLogger(__name__)


@dataclass
class AttentionResult:
    """Base-level attention of N sequences."""

    maps: np.ndarray
    """N x layers x heads x L x L (heads = 1 when averaged): attention from query base i to key base j."""
    received: np.ndarray
    """N x layers x all heads x L: attention each base receives (column sums of the per-head base maps)."""
    lengths: np.ndarray
    layers: list[int]
    """Which layers (0-based) are in ``maps``."""
    heads_averaged: bool


def _backbone(model: torch.nn.Module) -> torch.nn.Module:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.backbone


@contextlib.contextmanager
def eager_attention(backbone) -> Iterator[None]:
    """Run ``backbone`` with eager attention inside the block (SDPA returns no attention weights)."""
    previous = getattr(backbone.config, "_attn_implementation", None)
    switch = previous not in (None, "eager") and hasattr(backbone, "set_attn_implementation")
    if switch:
        logger.info("switching attention from %s to eager to read attention weights", previous)
        backbone.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            backbone.set_attn_implementation(previous)


def _token_attentions(backbone, input_ids, attention_mask) -> torch.Tensor:
    """B x layers x heads x T x T attention weights."""
    with torch.inference_mode():
        out = backbone(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
    attentions = getattr(out, "attentions", None)
    if not attentions:
        raise ValueError(f"backbone {type(backbone).__name__} returned no attention weights (it may not be a "
                         f"transformer, e.g. HyenaDNA or Caduceus); use --method ism, ig, ixg or saliency")
    return torch.stack(attentions, dim=1).float()


def _pad_maps(maps: list[np.ndarray], lengths: list[int]) -> np.ndarray:
    width = max(lengths)
    out = np.full((len(maps),) + maps[0].shape[:-2] + (width, width), np.nan, dtype=np.float32)
    for row, (item, length) in enumerate(zip(maps, lengths)):
        out[row, ..., :length, :length] = item
    return out


def attention_maps(predictor, sequences: Sequence[str], layers: Optional[list[int]] = None,
                   average_heads: bool = True, batch_size: int = 16, progress: bool = False) -> AttentionResult:
    """Base-level attention maps of each sequence, per layer (and per head unless ``average_heads``).

        >>> attention_maps(load_run("runs/demo"), ["ACGT" * 25], layers=[-1]).maps.shape
        (1, 1, 1, 100, 100)
    """
    sequences = [s.strip().upper() for s in sequences]
    model = inference_model(predictor.model, merge=True)
    backbone = _backbone(model)
    encoded = _encode(predictor, sequences, None)
    pad_id = predictor.tokenizer.pad_token_id if predictor.tokenizer.pad_token_id is not None else 0
    maps, received, chosen = [], [], None
    with eager_attention(backbone):
        for begin in progress_bar(range(0, len(sequences), batch_size), desc="attention", unit="batch", enabled=progress):
            ids = encoded.ids[begin : begin + batch_size]
            weights = _token_attentions(backbone, *_padded(ids, pad_id)).numpy()  # B, layers, heads, T, T
            if chosen is None:
                chosen = _choose_layers(layers, weights.shape[1])
            for row, token_ids in enumerate(ids):
                number = len(token_ids)
                base = project_attention(weights[row, :, :, :number, :number], encoded.windows[begin + row],
                                         len(sequences[begin + row]))  # layers, heads, L, L
                received.append(base.sum(-2))
                picked = base[chosen]
                maps.append(picked.mean(1, keepdims=True) if average_heads else picked)
    lengths = [len(s) for s in sequences]
    return AttentionResult(maps=_pad_maps(maps, lengths), received=_pad_rows(received, lengths),
                           lengths=np.array(lengths), layers=chosen, heads_averaged=average_heads)


def _choose_layers(layers: Optional[list[int]], count: int) -> list[int]:
    """0-based layer indices from user input (negative counts from the end); all layers by default."""
    if layers is None:
        return list(range(count))
    bad = [layer for layer in layers if not -count <= layer < count]
    if bad or not layers:
        raise ValueError(f"layers {bad or layers} do not exist: the backbone has {count} layers (0..{count - 1}, or "
                         f"-1 for the last); fix --layers")
    return sorted({layer % count for layer in layers})


def _pad_rows(rows: list[np.ndarray], lengths: list[int]) -> np.ndarray:
    out = np.full((len(rows),) + rows[0].shape[:-1] + (max(lengths),), np.nan, dtype=np.float32)
    for i, (row, length) in enumerate(zip(rows, lengths)):
        out[i, ..., :length] = row
    return out
