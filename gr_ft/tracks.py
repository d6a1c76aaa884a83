"""Genome-wide prediction: windows streamed from a FASTA through a run's model, written as BED or bedGraph.

Windows come from a BED file (each interval one window, as it is) or are tiled over regions (the
whole genome by default): window ``i`` of a region starting at ``start`` is
``[start + i * stride, start + i * stride + window)`` (0-based, half-open); windows that would run
past the region's end are not made, so a tail shorter than a window is not scored (logged).
Windows are generated lazily and predicted ``batch_windows`` at a time through the prediction
engine (:mod:`gr_ft.inference`), so memory stays flat in genome size; a window longer than the
model's positions is read in sliding windows and aggregated, as ``gr-ft predict`` does. A window
holding an N (or any non-ACGT base) is not predicted and not written (counted and logged).

Outputs per window are the task's: class probabilities (``prob_<class>``; sigmoid per class for
multi-label) or the regression ``value``.

- ``bed``: one file, ``chrom start end name`` plus one column per output, a ``#`` header line first;
  ``name`` is the BED input's name column, or ``.``.
- ``bedgraph``: one track per output, ``<stem>.<output>.bedgraph`` beside ``--output`` (just ``--output``
  for a single output), each with a ``track`` line. bedGraph intervals must not overlap, so a tiled
  window's value is written on its central ``stride`` bases (``[start + (window - stride) // 2, + stride)``;
  the window itself when stride >= window); BED-input intervals are written as they are.

Example:
    >>> genome = open_genome("genome.fa.gz")
    >>> plan = TilePlan(window_bp=200, stride_bp=100)
    >>> batches = tiled_windows(genome, [parse_region("chr1", genome)], plan)
    >>> predict_genome(load_run("runs/demo"), batches, "scores.bed", fmt="bed", tiled_stride=plan.stride_bp).windows
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import torch

from .genome import Genome, Interval
from .utils import atomic_writer, progress_bar

__all__ = ["TilePlan", "TrackSummary", "TRACK_FORMATS", "tiled_windows", "bed_windows", "predict_genome",
           "output_names", "output_values", "bedgraph_paths", "count_tiles"]

logger = logging.getLogger(__name__)

TRACK_FORMATS = ("bed", "bedgraph")
_ACGT = frozenset("ACGT")


@dataclass
class TilePlan:
    """Windows tiled over regions."""

    window_bp: int
    """Bases per window (--window)."""
    stride_bp: Optional[int] = None
    """Bases between window starts (--stride); None = window_bp (adjacent windows)."""

    def __post_init__(self):
        if self.window_bp < 1:
            raise ValueError(f"--window must be >= 1 bp, got {self.window_bp}")
        if self.stride_bp is None:
            self.stride_bp = self.window_bp
        if self.stride_bp < 1:
            raise ValueError(f"--stride must be >= 1 bp, got {self.stride_bp}")


@dataclass
class TrackSummary:
    """What one genome-wide prediction did."""

    windows: int = 0
    """Windows predicted and written."""
    skipped_n: int = 0
    """Windows holding a non-ACGT base (not predicted)."""
    bases: int = 0
    """Bases of the predicted windows (overlaps counted again)."""
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------- windows


def count_tiles(region: Interval, plan: TilePlan) -> int:
    """Windows of ``plan`` that fit in ``region``."""
    return 0 if region.length < plan.window_bp else (region.length - plan.window_bp) // plan.stride_bp + 1


def tiled_windows(genome: Genome, regions: Iterable[Interval], plan: TilePlan,
                  batch_windows: int = 256) -> Iterator[list[tuple[Interval, str]]]:
    """Batches of (window, sequence) tiled over each region; one genome read per batch."""
    for region in regions:
        starts = range(region.start, region.end - plan.window_bp + 1, plan.stride_bp)  # lazy
        tail = region.end - (starts[-1] + plan.window_bp) if starts else region.length
        if tail:
            logger.info("%s:%d-%d: the last %d bp fit no whole window and are not scored", region.chrom,
                        region.start, region.end, tail)
        for first in range(0, len(starts), batch_windows):
            chunk = starts[first : first + batch_windows]
            block = genome.fetch(region.chrom, chunk[0], chunk[-1] + plan.window_bp)
            yield [(Interval(region.chrom, s, s + plan.window_bp), block[s - chunk[0] : s - chunk[0] + plan.window_bp])
                   for s in chunk]


def bed_windows(genome: Genome, intervals: Iterable[Interval],
                batch_windows: int = 256) -> Iterator[list[tuple[Interval, str]]]:
    """Batches of (interval, sequence), one window per BED interval."""
    batch: list[tuple[Interval, str]] = []
    for interval in intervals:
        batch.append((interval, genome.fetch(interval.chrom, interval.start, interval.end)))
        if len(batch) == batch_windows:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------- outputs


def output_names(spec) -> list[str]:
    """Column names of the task's outputs: ``prob_<class>`` per class, or ``value`` for regression."""
    if spec.problem_type == "regression":
        return ["value"] if spec.num_labels == 1 else [f"value_{i}" for i in range(spec.num_labels)]
    return [f"prob_{name}" for name in spec.names]


def output_values(problem_type: str, logits: torch.Tensor) -> np.ndarray:
    """(N, C) outputs on the scale ``gr-ft predict`` reports: softmax, sigmoid (multi-label) or the value."""
    logits = logits.float()
    if problem_type == "regression":
        return logits.numpy()
    if problem_type == "multilabel":
        return logits.sigmoid().numpy()
    return logits.softmax(-1).numpy()


def bedgraph_paths(output: str | Path, names: list[str]) -> list[Path]:
    """One file per output: ``scores.bedgraph`` -> ``scores.prob_1.bedgraph``; a single output keeps the name."""
    output = Path(output)
    if len(names) == 1:
        return [output]
    suffix = output.suffix or ".bedgraph"
    return [output.with_name(f"{output.name.removesuffix(output.suffix)}.{name}{suffix}") for name in names]


def _bedgraph_interval(window: Interval, tiled_stride: Optional[int]) -> tuple[int, int]:
    if tiled_stride is None or tiled_stride >= window.length:
        return window.start, window.end
    start = window.start + (window.length - tiled_stride) // 2
    return start, start + tiled_stride


class _Writers:
    """The open output file(s) of one format; each row is written as it is predicted."""

    def __init__(self, stack: contextlib.ExitStack, output: str, fmt: str, names: list[str],
                 tiled_stride: Optional[int], description: str):
        self.fmt, self.names, self.tiled_stride = fmt, names, tiled_stride
        if fmt == "bed":
            self.paths = [Path(output)]
            self.handles = [stack.enter_context(atomic_writer(output))]
            self.handles[0].write("#chrom\tstart\tend\tname\t" + "\t".join(names) + "\n")
        else:
            self.paths = bedgraph_paths(output, names)
            self.handles = [stack.enter_context(atomic_writer(p)) for p in self.paths]
            for handle, name in zip(self.handles, names):
                handle.write(f'track type=bedGraph name="{name}" description="{description} {name}"\n')

    def write(self, windows: list[Interval], values: np.ndarray) -> None:
        if self.fmt == "bed":
            self.handles[0].write("".join(
                f"{w.chrom}\t{w.start}\t{w.end}\t{w.name or '.'}\t" + "\t".join(f"{v:.6g}" for v in row) + "\n"
                for w, row in zip(windows, values.tolist())))
            return
        spans = [_bedgraph_interval(w, self.tiled_stride) for w in windows]
        for column, handle in enumerate(self.handles):
            handle.write("".join(f"{w.chrom}\t{a}\t{b}\t{row[column]:.6g}\n"
                                 for w, (a, b), row in zip(windows, spans, values.tolist())))


def predict_genome(predictor, batches: Iterable[list[tuple[Interval, str]]], output: str | Path, *, fmt: str = "bed",
                   tiled_stride: Optional[int] = None, total_windows: Optional[int] = None,
                   progress: bool = True) -> TrackSummary:
    """Predict every window of ``batches`` (from :func:`tiled_windows` or :func:`bed_windows`) and write them.

    ``tiled_stride``: the plan's stride for tiled windows (bedGraph then writes each window's central
    ``stride`` bases), None for BED intervals. Files appear only when everything is written.

        >>> predict_genome(load_run("runs/demo"), bed_windows(genome, read_bed("peaks.bed", genome)), "peaks.scored.bed")
    """
    if fmt not in TRACK_FORMATS:
        raise ValueError(f"--format must be one of {list(TRACK_FORMATS)}, got {fmt!r}")
    spec = predictor.spec
    if spec.problem_type == "token_classification":
        raise ValueError("genome-wide prediction writes one value per window; a per-position (token classification) "
                         "model has one per base: use gr-ft predict --input on the sequences instead")
    names = output_names(spec)
    summary, began = TrackSummary(), time.perf_counter()
    with contextlib.ExitStack() as stack:
        writers = _Writers(stack, str(output), fmt, names, tiled_stride, f"gr-ft predict {spec.problem_type}")
        bar = stack.enter_context(progress_bar(total=total_windows, desc="windows", unit="win", enabled=progress))
        for batch in batches:
            kept = [(w, s) for w, s in batch if set(s) <= _ACGT]
            summary.skipped_n += len(batch) - len(kept)
            if kept:
                logits = predictor.engine.run([s for _, s in kept]).logits
                writers.write([w for w, _ in kept], output_values(spec.problem_type, logits))
                summary.windows += len(kept)
                summary.bases += sum(w.length for w, _ in kept)
            bar.update(len(batch))
    summary.files = writers.paths
    summary.seconds = time.perf_counter() - began
    if summary.skipped_n:
        logger.info("%d windows hold N or another non-ACGT base and were not predicted", summary.skipped_n)
    return summary
