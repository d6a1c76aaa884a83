"""From tokens to nucleotides: the rule every gr-ft attribution and attention map follows.

A language model scores *tokens*; a biologist asks about *bases*. gr-ft's tokenizer reports,
for every token, the span of the sequence it stands for (``SequenceTokenizer.encode(...)
["token_spans"]``), and this module turns token values into per-base values with one rule:

**Each token's value is spread evenly over the bases it covers and summed per base.**

- nucleotide / protein tokens cover one base (residue) each: the value lands on that base.
- BPE tokens cover their whole piece (``"TATAAA"`` = 6 bases): each base gets value / 6.
- overlapping k-mer tokens (DNABERT) cover k bases each. ``token_spans`` reports only a k-mer's
  *centre* base, so the full window is rebuilt from the centre and k: a k-mer starting at base j
  is reported as ``(j + (k - 1) // 2, j + (k - 1) // 2 + 1)`` and covers ``[j, j + k)``. Each of its
  k bases gets value / k; a base inside k overlapping k-mers collects k shares.
- special tokens ([CLS], [SEP], <eos>, padding) cover no base and are dropped; their values are
  kept at token level by the callers.

The rule conserves the total: the per-base values sum to the sum over non-special tokens. It is
one linear map, the T x L matrix ``P`` of :func:`projection_matrix` (row t = 1/width over the
bases token t covers, zero for specials): token values ``v`` (T) become ``v @ P`` (L), and a
T x T attention map ``A`` becomes ``P.T @ A @ P`` (L x L).

Example:
    >>> tok = SequenceTokenizer.from_pretrained("kmer3")
    >>> enc = tok.encode(["ACGTA"])
    >>> windows = token_windows(enc["token_spans"][0], tok, 5)   # [None, (0, 3), (1, 4), (2, 5), None]
    >>> project_tokens(np.array([9.0, 3.0, 3.0, 3.0, 9.0]), windows, 5)
    array([1., 2., 3., 2., 1.])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Window", "token_windows", "projection_matrix", "project_tokens", "project_attention"]

Window = tuple[int, int] | None
"""Half-open ``(start, end)`` of the bases a token covers, or None for a special token."""


def _kmer_window(span: tuple[int, int], k: int, length: int) -> tuple[int, int]:
    """The k bases of a k-mer whose centre base ``span`` reports (see the module docstring)."""
    start = span[0] - (k - 1) // 2
    return max(start, 0), min(start + k, length)


def token_windows(spans: Sequence[Window], tokenizer, length: int, offset: int = 0) -> list[Window]:
    """The bases each token covers, in coordinates of the full sequence of ``length`` bases.

    ``spans`` are one sequence's ``token_spans``; ``offset`` is where the tokenized crop starts
    in the full sequence (``gr_ft.data.encode_sequences`` returns it). For k-mer tokenizers the
    k-mer window is rebuilt from the reported centre base.

        >>> token_windows([None, (1, 2), (2, 3), None], SequenceTokenizer.from_pretrained("kmer3"), 4)
        [None, (0, 3), (1, 4), None]
    """
    windows: list[Window] = []
    for span in spans:
        if span is None:
            windows.append(None)
            continue
        span = (span[0] + offset, span[1] + offset)
        if tokenizer.kind == "kmer":
            span = _kmer_window(span, tokenizer.k, length)
        windows.append(span if span[1] > span[0] else None)
    return windows


def projection_matrix(windows: Sequence[Window], length: int) -> np.ndarray:
    """T x L matrix: row t holds 1/width on the bases token t covers, zeros for special tokens.

        >>> projection_matrix([None, (0, 2), (2, 3)], 3)
        array([[0. , 0. , 0. ],
               [0.5, 0.5, 0. ],
               [0. , 0. , 1. ]])
    """
    matrix = np.zeros((len(windows), length), dtype=np.float64)
    for row, window in enumerate(windows):
        if window is not None:
            start, end = window
            matrix[row, start:end] = 1.0 / (end - start)
    return matrix


def project_tokens(values: np.ndarray, windows: Sequence[Window], length: int) -> np.ndarray:
    """Per-base values from per-token values (T, ...) -> (L, ...); the total over non-special tokens is kept.

        >>> project_tokens(np.array([5.0, 2.0, 1.0]), [None, (0, 2), (2, 3)], 3)
        array([1., 1., 1.])
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] != len(windows):
        raise ValueError(f"got values for {values.shape[0]} tokens but {len(windows)} token windows")
    matrix = projection_matrix(windows, length)  # T, L
    return np.tensordot(matrix, values, axes=([0], [0]))  # L, ...


def project_attention(attention: np.ndarray, windows: Sequence[Window], length: int) -> np.ndarray:
    """Per-base attention (..., L, L) from token attention (..., T, T): ``P.T @ A @ P``.

    Entry (i, j) is the attention that query base i pays to key base j, each token's row and
    column spread evenly over its bases; rows and columns of special tokens are dropped.

        >>> project_attention(np.eye(3), [None, (0, 2), (2, 3)], 3).sum()
        2.0
    """
    attention = np.asarray(attention, dtype=np.float64)
    if attention.shape[-1] != len(windows) or attention.shape[-2] != len(windows):
        raise ValueError(f"attention of shape {attention.shape} does not match {len(windows)} tokens")
    matrix = projection_matrix(windows, length)  # T, L
    return np.einsum("ti,...tu,uj->...ij", matrix, attention, matrix)
