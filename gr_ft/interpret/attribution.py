"""Gradient attributions (captum) on the input embeddings, projected from tokens to nucleotides.

Three methods, all taken at the output of the backbone's input-embedding layer
(``model.backbone.get_input_embeddings()``, found through peft wrappers by :func:`embedding_layer`),
because token ids are not differentiable:

- ``ig``: integrated gradients (``captum.attr.LayerIntegratedGradients``), ``n_steps`` Gauss-Legendre
  steps, from one of two baselines (``baseline=``):

  - ``"pad"`` (default): every non-special token replaced by ``[PAD]`` (whose embedding is the zero
    vector in BERT- and ESM-style models, the usual all-zero reference), special tokens and the
    attention mask kept;
  - ``"shuffle"``: the mean over ``references`` dinucleotide shuffles of the sequence itself
    (tangermeme's ``dinucleotide_shuffle``, seeded per sequence; first and last base kept), each
    re-tokenized with the run's tokenizer - the DeepLIFT/DeepSHAP convention of the field: a reference
    with the sequence's composition, so attributions measure order (motifs), not the presence of bases.
    For k-mer, nucleotide and residue tokens the shuffle has the input's token count; a BPE shuffle
    has its own pieces, so its body tokens are laid onto the input's positions in order (cut or padded
    with ``[PAD]``), which keeps IG exact but pairs pieces that cover different bases. DNA only.

  Completeness: the token attributions sum to output(input) - output(baseline) (the mean over the
  references) up to ``convergence_delta``, which is returned.
- ``ixg``: input x gradient (``LayerGradientXActivation``), the first-order term of the same sum.
- ``saliency``: the magnitude of the gradient, ``|d output / d embedding|`` (``LayerGradientXActivation``
  with ``multiply_by_inputs=False``, then the absolute value).

Each gives one value per token and hidden unit; these are **summed over the hidden dimension** to one
value per token (saliency sums absolute values, so it is never negative), then **projected to bases**
by :mod:`gr_ft.interpret.projection`: each token's value is spread evenly over the bases it covers
(1 for nucleotide and protein tokens, the piece for BPE, the full k-mer window for k-mer tokens,
rebuilt from the centre base ``token_spans`` reports) and summed per base. Special tokens cover
no base; their values stay in ``tokens``. Per sequence, ``bases.sum() == tokens[non-special].sum()``.

Example:
    >>> result = attribute(load_run("runs/demo"), ["TATAAAAGGC" * 10], method="ig")
    >>> result.bases.shape, result.tokens.shape   # N x L per base, N x T per token
    ((1, 100), (1, 97))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from ..backbones import spec_for_model
from ..data import encode_sequences
from ..utils import progress_bar
from .ism import DNA_LETTERS, _padded
from .projection import project_tokens, token_windows
from .targets import Target, check_target, require, inference_model, resolve_class_indices, task_outputs

__all__ = ["ATTRIBUTION_METHODS", "IG_BASELINES", "AttributionResult", "attribute", "embedding_layer",
           "shuffled_references"]

logger = logging.getLogger(__name__)

ATTRIBUTION_METHODS = ("ig", "ixg", "saliency")
IG_BASELINES = ("pad", "shuffle")


@dataclass
class AttributionResult:
    """Attributions of N sequences to their tokens and bases."""

    method: str
    bases: np.ndarray
    """N x L: attribution per base (the projection of ``tokens``); NaN past each sequence's end."""
    tokens: np.ndarray
    """N x T: attribution per token, special tokens included; NaN past each sequence's last token."""
    token_starts: np.ndarray
    """N x T: first base each token covers (full-sequence coordinates); -1 for special tokens and padding."""
    token_ends: np.ndarray
    """N x T: one past the last base each token covers; -1 for special tokens and padding."""
    lengths: np.ndarray
    class_indices: np.ndarray
    """N: the output explained for each sequence (see ``Target``)."""
    target: Target = field(default_factory=Target)
    convergence_delta: Optional[np.ndarray] = None
    """N, integrated gradients only: sum of attributions - (output(input) - output(baseline))."""


def embedding_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The input-embedding module of a (peft-wrapped or merged) ``SequenceModel``.

        >>> embedding_layer(load_run("runs/demo").model)
        Embedding(4101, 128, padding_idx=0)
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(inner, "backbone", None)
    if backbone is None or not hasattr(backbone, "get_input_embeddings"):
        raise ValueError(f"{type(inner).__name__} has no backbone with get_input_embeddings(); attributions need a "
                         f"gr-ft SequenceModel")
    layer = spec_for_model(backbone).input_embeddings(backbone)  # the registry knows code without the getter (HyenaDNA)
    if layer is None:
        raise ValueError(f"backbone {type(backbone).__name__} returns no input embeddings; attributions need them")
    return layer


def _scalar_forward(model, problem_type: str, output: str):
    """The function captum differentiates: B, C outputs (at one token for per-position tasks)."""

    def forward(input_ids, attention_mask, token_index):
        values = task_outputs(model(input_ids=input_ids, attention_mask=attention_mask)["logits"], problem_type, output)
        if problem_type == "token_classification":
            values = values[torch.arange(values.shape[0]), token_index]
        return values

    return forward


def _baseline_ids(input_ids: torch.Tensor, special_ids: list[int], baseline_id: int) -> torch.Tensor:
    """Every non-special token replaced by ``baseline_id``; specials and padding stay."""
    keep = torch.isin(input_ids, torch.tensor(special_ids))
    return torch.where(keep, input_ids, torch.full_like(input_ids, baseline_id))


def shuffled_references(sequences: Sequence[str], n: int, seed: int = 0) -> list[list[str]]:
    """``n`` dinucleotide shuffles of each DNA sequence (tangermeme; sequence i seeded ``seed + i``).

    The shuffles keep each sequence's length, base composition, dinucleotide counts and first and last
    base; N is shuffled like a fifth letter (tangermeme's ``allow_N``).

        >>> [len(s) for s in shuffled_references(["ACGTTGCATTAGGCAT"], 2)[0]]   # two shuffles of one sequence
        [16, 16]
    """
    ersatz, utils = require("tangermeme.ersatz"), require("tangermeme.utils")
    references = []
    for number, sequence in enumerate(sequences):
        one_hot = utils.one_hot_encode(sequence, alphabet=list(DNA_LETTERS)).unsqueeze(0)
        try:
            shuffles = ersatz.dinucleotide_shuffle(one_hot, n=n, random_state=[seed + number], allow_N=True)[0]
        except ValueError as err:  # e.g. every shuffle of a short or repetitive sequence is the sequence itself
            raise ValueError(f"sequence {number + 1} ({len(sequence)} bp): no dinucleotide shuffle reference ({err}); "
                             f"use the pad baseline for it") from err
        references.append([utils.characters(s, alphabet=list(DNA_LETTERS), allow_N=True) for s in shuffles])
    return references


def _laid_onto(reference: list[int], ids: list[int], special_ids: set[int], pad_id: int) -> list[int]:
    """``reference``'s body tokens placed on ``ids``' non-special positions in order (cut, or padded with pad_id)."""
    body = iter([token for token in reference if token not in special_ids])
    return [token if token in special_ids else next(body, pad_id) for token in ids]


def _shuffle_baselines(predictor, sequences: list[str], input_ids: list[list[int]], n: int, seed: int,
                       pad_id: int) -> list[list[list[int]]]:
    """Per reference r, per sequence: the token ids of its r-th dinucleotide shuffle, shaped like the input's."""
    tokenizer, data = predictor.tokenizer, predictor.cfg.data
    if tokenizer.alphabet != "dna":
        raise ValueError("baseline='shuffle' shuffles dinucleotides and needs a DNA model; this run reads proteins: "
                         "use baseline='pad' (--ig-baseline pad)")
    shuffles = [ref for refs in zip(*shuffled_references(sequences, n, seed)) for ref in refs]  # reference-major
    shuffled_ids = encode_sequences(tokenizer, shuffles, data.max_length, data.crop)[0]["input_ids"]  # one call
    special = set(tokenizer.special_token_ids)
    return [[_laid_onto(ref, ids, special, pad_id) for ref, ids in zip(shuffled_ids[r * len(sequences):], input_ids)]
            for r in range(n)]


def _token_attributions(method: str, forward, layer, input_ids, attention_mask, token_index, *, targets,
                        baselines: list[torch.Tensor], n_steps: int):
    """B x T attributions summed over the hidden dimension (and the IG convergence delta, B).

    Integrated gradients runs once per baseline (B x T token ids each) and returns the means.
    """
    captum_attr = require("captum.attr")
    LayerGradientXActivation, LayerIntegratedGradients = (captum_attr.LayerGradientXActivation,
                                                          captum_attr.LayerIntegratedGradients)
    extra = (attention_mask, token_index)
    if method == "ig":
        explainer = LayerIntegratedGradients(forward, layer)
        values, deltas = 0.0, 0.0
        for baseline in baselines:
            value, delta = explainer.attribute(input_ids, baselines=baseline, target=targets,
                                               additional_forward_args=extra, n_steps=n_steps,
                                               return_convergence_delta=True)
            values, deltas = values + value.sum(-1), deltas + delta
        return values / len(baselines), deltas / len(baselines)
    explainer = LayerGradientXActivation(forward, layer, multiply_by_inputs=method == "ixg")
    values = explainer.attribute(input_ids, target=targets, additional_forward_args=extra)
    return (values.sum(-1) if method == "ixg" else values.abs().sum(-1)), None


def _position_tokens(spans_list, starts, position: Optional[int]) -> list[int]:
    """Index of the token covering ``position`` in each sequence (0 when there is no position)."""
    if position is None:
        return [0] * len(spans_list)
    found = []
    for number, (spans, start) in enumerate(zip(spans_list, starts), start=1):
        hits = [i for i, s in enumerate(spans) if s is not None and s[0] + start <= position < s[1] + start]
        if not hits:
            raise ValueError(f"sequence {number}: --position {position} is outside the bases the model sees")
        found.append(hits[0])
    return found


@dataclass
class _Encoded:
    ids: list[list[int]]
    windows: list[list]
    token_index: list[int]


def _encode(predictor, sequences: list[str], position: Optional[int]) -> _Encoded:
    cfg = predictor.cfg
    encoded, starts = encode_sequences(predictor.tokenizer, sequences, cfg.data.max_length, cfg.data.crop)
    windows = [token_windows(spans, predictor.tokenizer, len(seq), offset)
               for spans, seq, offset in zip(encoded["token_spans"], sequences, starts)]
    return _Encoded(encoded["input_ids"], windows, _position_tokens(encoded["token_spans"], starts, position))


def _reference_outputs(model, encoded: _Encoded, pad_id: int, problem_type: str, output: str, batch_size: int):
    forward = _scalar_forward(model, problem_type, output)
    rows = []
    with torch.inference_mode():
        for begin in range(0, len(encoded.ids), batch_size):
            input_ids, attention_mask = _padded(encoded.ids[begin : begin + batch_size], pad_id)
            rows.append(forward(input_ids, attention_mask, torch.tensor(encoded.token_index[begin : begin + batch_size])))
    return torch.cat(rows).numpy()


def _fill(rows: list[np.ndarray], fill, dtype) -> np.ndarray:
    out = np.full((len(rows), max(len(r) for r in rows)), fill, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def attribute(predictor, sequences: Sequence[str], method: str = "ig", *, target: Optional[Target] = None,
              n_steps: int = 50, batch_size: int = 8, merge_adapter: bool = True, baseline: str = "pad",
              references: int = 10, seed: int = 0, progress: bool = False) -> AttributionResult:
    """Attribute each sequence's target output to its tokens and bases with ``ig``, ``ixg`` or ``saliency``.

    ``batch_size`` counts sequences per captum call (integrated gradients runs ``n_steps`` copies of each,
    once per reference). ``baseline``, ``references`` and ``seed`` choose integrated gradients' baseline
    (module docstring); ``"shuffle"`` costs ``references`` times the ``"pad"`` baseline.

        >>> attribute(load_run("runs/demo"), ["ACGT" * 25], method="saliency").bases.shape
        (1, 100)
    """
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {list(ATTRIBUTION_METHODS)}")
    if baseline not in IG_BASELINES:
        raise ValueError(f"unknown integrated-gradients baseline {baseline!r}; choose one of {list(IG_BASELINES)}")
    if references < 1:
        raise ValueError(f"references={references}: need at least 1 shuffled reference")
    target = target or Target()
    spec, tokenizer = predictor.spec, predictor.tokenizer
    check_target(target, spec.problem_type, spec.num_labels)
    sequences = [s.strip().upper() for s in sequences]
    model = inference_model(predictor.model, merge_adapter)
    layer = embedding_layer(model)
    encoded = _encode(predictor, sequences, target.position)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    reference = _reference_outputs(model, encoded, pad_id, spec.problem_type, target.output, batch_size)
    classes = resolve_class_indices(target, spec.problem_type, reference)
    forward = _scalar_forward(model, spec.problem_type, target.output)
    shuffled = (_shuffle_baselines(predictor, sequences, encoded.ids, references, seed, pad_id)
                if method == "ig" and baseline == "shuffle" else None)
    token_rows, deltas = [], []
    for begin in progress_bar(range(0, len(sequences), batch_size), desc=method, unit="batch", enabled=progress):
        chunk = slice(begin, begin + batch_size)
        input_ids, attention_mask = _padded(encoded.ids[chunk], pad_id)
        if shuffled is None:
            baselines = [_baseline_ids(input_ids, tokenizer.special_token_ids, pad_id)]
        else:
            baselines = [_padded(rows[chunk], pad_id)[0] for rows in shuffled]
        values, delta = _token_attributions(
            method, forward, layer, input_ids, attention_mask, torch.tensor(encoded.token_index[chunk]),
            targets=classes[chunk].tolist(), baselines=baselines, n_steps=n_steps)
        token_rows += [row[: len(ids)] for row, ids in zip(values.detach().double().numpy(), encoded.ids[chunk])]
        deltas += [] if delta is None else delta.detach().double().numpy().tolist()
    bases = [project_tokens(row, windows, len(seq)) for row, windows, seq in zip(token_rows, encoded.windows, sequences)]
    starts = [[-1 if w is None else w[0] for w in windows] for windows in encoded.windows]
    ends = [[-1 if w is None else w[1] for w in windows] for windows in encoded.windows]
    return AttributionResult(
        method=method, bases=_fill(bases, np.nan, np.float64), tokens=_fill(token_rows, np.nan, np.float64),
        token_starts=_fill(starts, -1, np.int64), token_ends=_fill(ends, -1, np.int64),
        lengths=np.array([len(s) for s in sequences]), class_indices=classes, target=target,
        convergence_delta=np.array(deltas) if deltas else None,
    )
