"""Pictures a person looks at: ISM mutation maps, attribution logos and base-level attention maps.

- :func:`plot_mutation_map`: letters x bases heatmap of ISM effects (blue = the mutant lowers the
  output, red = raises it, centred on 0), the reference letter of each base marked with a dot.
- :func:`plot_attribution_logo`: a sequence logo (logomaker) where each base's reference letter is
  drawn as tall as its attribution, above the axis when positive, below when negative.
- :func:`plot_attention_map`: an L x L heatmap of base-level attention (query bases on rows).
- :func:`plot_motif_logos`: a motif found by ``gr-ft motifs``: its contribution logo (CWM), its
  information-content logo, and the best JASPAR match's information-content logo.

Every PNG is written to a temporary sibling and moved into place with ``os.replace``. Figures are
built with ``matplotlib.figure.Figure`` (no pyplot state, no display needed).

Example:
    >>> result = ism(predictor, [sequence])
    >>> plot_mutation_map(result.selected()[0], sequence, result.letters, "out/seq1_ism.png", title="seq1")
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["plot_mutation_map", "plot_attribution_logo", "plot_attention_map", "plot_motif_logos", "ism_importance"]

MAX_WIDTH_INCHES = 40.0
INCHES_PER_BASE = 0.12


def _width(length: int) -> float:
    return float(np.clip(length * INCHES_PER_BASE + 1.5, 6.0, MAX_WIDTH_INCHES))


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        figure.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _position_ticks(ax, length: int) -> None:
    step = max(1, int(np.ceil(length / 25 / 5)) * 5)
    ticks = np.arange(0, length, step)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t + 1) for t in ticks])
    ax.set_xlabel("position (1-based)")


def plot_mutation_map(effects: np.ndarray, sequence: str, letters: str, path: str | os.PathLike,
                      title: str = "", label: str = "effect on output") -> Path:
    """Heatmap of one sequence's ISM effects (L x A, ``IsmResult.selected()[i]``), reference letters dotted."""
    length = len(sequence)
    values = np.asarray(effects, dtype=float)[:length].T  # A, L
    limit = float(np.nanmax(np.abs(values))) or 1.0
    figure = Figure(figsize=(_width(length), 1.2 + 0.28 * len(letters)))
    ax = figure.subplots()
    image = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    reference = [(p, letters.index(b)) for p, b in enumerate(sequence) if b in letters]
    if reference:
        xs, ys = zip(*reference)
        ax.scatter(xs, ys, s=6, c="black", marker="o", label="reference base")
    ax.set_yticks(range(len(letters)))
    ax.set_yticklabels(list(letters))
    _position_ticks(ax, length)
    ax.set_title(title)
    figure.colorbar(image, ax=ax, label=label, fraction=0.02, pad=0.01)
    return _save(figure, path)


def ism_importance(effects: np.ndarray, sequence: str, letters: str) -> np.ndarray:
    """Per-base importance from ISM (L): minus the mean effect of substituting the reference base.

    Positive where mutating the base lowers the output (the base supports it).
    """
    substitutions = [i for i, letter in enumerate(letters) if letter != "-"]
    values = np.asarray(effects, dtype=float)[: len(sequence)][:, substitutions]  # L, A
    counts = np.array([len(substitutions) - (b in letters) for b in sequence], dtype=float)
    return -np.nansum(values, axis=1) / np.maximum(counts, 1.0)


def plot_attribution_logo(values: np.ndarray, sequence: str, path: str | os.PathLike, title: str = "",
                          label: str = "attribution", letters: Optional[str] = None) -> Path:
    """Logo of per-base values (L): each reference letter scaled by its value (below the axis if negative)."""
    from .targets import require

    logomaker = require("logomaker")
    length = len(sequence)
    values = np.nan_to_num(np.asarray(values, dtype=float)[:length])
    letters = letters or "".join(sorted(set(sequence) | set("ACGT")))
    matrix = pd.DataFrame(0.0, index=range(length), columns=list(letters))
    for position, base in enumerate(sequence):
        if base in matrix.columns:
            matrix.loc[position, base] = values[position]
    figure = Figure(figsize=(_width(length), 2.4))
    ax = figure.subplots()
    logomaker.Logo(matrix, ax=ax, color_scheme="classic" if set(letters) <= set("ACGTN") else "chemistry",
                   flip_below=False)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlim(-0.5, length - 0.5)
    _position_ticks(ax, length)
    ax.set_ylabel(label)
    ax.set_title(title)
    return _save(figure, path)


def plot_attention_map(attention: np.ndarray, sequence: str, path: str | os.PathLike, title: str = "") -> Path:
    """Heatmap of one L x L base-level attention map (rows: query bases, columns: key bases)."""
    length = len(sequence)
    side = float(np.clip(length * 0.05 + 2.0, 4.0, 14.0))
    figure = Figure(figsize=(side + 1.0, side))
    ax = figure.subplots()
    image = ax.imshow(np.asarray(attention, dtype=float)[:length, :length], cmap="viridis", interpolation="nearest")
    _position_ticks(ax, length)
    ax.set_yticks(ax.get_xticks())
    ax.set_yticklabels([label.get_text() for label in ax.get_xticklabels()])
    ax.set_ylabel("query position (1-based)")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, label="attention", fraction=0.04)
    return _save(figure, path)


def information_logo(ppm: np.ndarray) -> np.ndarray:
    """W x 4 probabilities -> letter heights in bits (probability x information content of the position)."""
    ppm = np.clip(np.asarray(ppm, dtype=float), 1e-9, None)
    ppm = ppm / ppm.sum(1, keepdims=True)
    bits = 2.0 + (ppm * np.log2(ppm)).sum(1)
    return ppm * bits[:, None]


def plot_motif_logos(cwm: np.ndarray, ppm: np.ndarray, path: str | os.PathLike, title: str = "",
                     match: Optional[tuple[str, np.ndarray]] = None) -> Path:
    """Logos of one motif (W x 4 ACGT matrices): contribution (CWM), bits of its PPM, and ``(label, ppm)`` of a match."""
    from .targets import require

    logomaker = require("logomaker")
    panels = [("contribution", np.asarray(cwm, dtype=float)), ("bits", information_logo(ppm))]
    if match is not None:
        panels.append((f"bits\n{match[0]}", information_logo(match[1])))
    width = max(len(m) for _, m in panels)
    figure = Figure(figsize=(float(np.clip(width * 0.32 + 1.5, 3.5, 12.0)), 1.5 * len(panels) + 0.4))
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (label, matrix) in zip(axes, panels):
        logomaker.Logo(pd.DataFrame(matrix, columns=list("ACGT")), ax=ax, color_scheme="classic", flip_below=False)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylabel(label, fontsize=8)
        ax.set_xticks([])
    if match is not None:
        axes[-1].set_ylim(0, 2)
    axes[1].set_ylim(0, 2)
    axes[0].set_title(title, fontsize=9)
    return _save(figure, path)
