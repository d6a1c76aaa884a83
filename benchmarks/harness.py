"""Shared pieces of the benchmark scripts: task data (optionally capped), mean ± sd over seeds, a resumable
results file, and the win/tie/lose call between a model and the baselines.

Used by ``benchmarks/baselines_quick.py`` (one dataset, the two baselines) and ``benchmarks/task_suite.py``
(every task x model x seed, written up as ``docs/benchmarks.md``).

Example:
    >>> splits, alphabet = load_task_splits("../shared/data/promoter/gue_prom_core_all")
    >>> capped = cap_splits(splits, max_train_rows=2000, max_eval_rows=1000, seed=0)
    >>> write_splits(capped, "runs/task_suite/data/prom_core_all")       # what every model then reads
    >>> mean_sd([0.5, 0.7])                                               # sample sd (ddof=1)
    (0.6, 0.1414213562373095)
    >>> call_outcome((0.70, 0.01), (0.60, 0.02), min_margin=0.01)        # LM vs best baseline
    'wins'
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np
import pandas as pd
from filelock import FileLock

from gr_ft.config import DataConfig
from gr_ft.data import LabeledSplit, load_splits
from gr_ft.evaluation import metric_direction

__all__ = [
    "DNA_LETTERS",
    "SPLITS",
    "load_task_splits",
    "describe_splits",
    "cap_rows",
    "cap_splits",
    "write_splits",
    "mean_sd",
    "format_mean_sd",
    "ResultsFile",
    "aggregate_runs",
    "Verdict",
    "call_outcome",
    "compare_to_baselines",
]

DNA_LETTERS = frozenset("ACGTN")
SPLITS = ("train", "dev", "test")
OUTCOMES = ("wins", "ties", "loses")


# ---------------------------------------------------------------- task data


def load_task_splits(path: str | Path, alphabet: str = "auto") -> tuple[dict[str, LabeledSplit], str]:
    """Validated train/dev/test splits of a dataset folder, and the alphabet (auto: dna if every letter is ACGTN).

    Example:
        >>> splits, alphabet = load_task_splits("../shared/data/ptm/musitedeep_phospho_Y")
        >>> alphabet, len(splits["test"].frame)
        ('protein', 4360)
    """
    splits = load_splits(DataConfig(path=str(path)), alphabet="protein" if alphabet == "auto" else alphabet, seed=0)
    if alphabet == "auto":
        letters = set().union(*(set("".join(s.frame["sequence"])) for s in splits.values()))
        alphabet = "dna" if letters <= DNA_LETTERS else "protein"
    return splits, alphabet


def describe_splits(splits: Mapping[str, LabeledSplit], spec, alphabet: str) -> str:
    """One line per split: rows, label counts and the length range."""
    lines = [f"{spec.problem_type} task, {alphabet}, labels {spec.names}"]
    for name, split in splits.items():
        counts = split.frame["label"].astype(str).value_counts().sort_index().to_dict()
        lengths = split.frame["sequence"].str.len()
        lines.append(f"  {name}: {len(split.frame)} rows from {split.source}; labels {counts}; "
                     f"length {lengths.min()}-{lengths.max()}")
    return "\n".join(lines)


def _class_quotas(counts: pd.Series, max_rows: int) -> pd.Series:
    """Rows to draw per class: proportional (largest remainder), at least one of every class present."""
    share = counts / counts.sum() * max_rows
    quota = np.floor(share).astype(int)
    leftover = max_rows - int(quota.sum())
    for label in (share - quota).sort_values(ascending=False, kind="stable").index[:leftover]:
        quota[label] += 1
    return quota.clip(lower=1, upper=counts)


def cap_rows(frame: pd.DataFrame, max_rows: Optional[int], seed: int, label_column: str = "label") -> pd.DataFrame:
    """A seeded, label-stratified sample of at most ~``max_rows`` rows, in the original row order.

    Each label keeps its share of the rows; a class too rare for its share still keeps one row, so the
    sample can exceed ``max_rows`` by at most the number of classes. ``None`` or a short frame: unchanged.

    Example:
        >>> frame = pd.DataFrame({"sequence": list("ACGTACGTAC"), "label": [0] * 8 + [1] * 2})
        >>> cap_rows(frame, 5, seed=0)["label"].tolist()
        [0, 0, 0, 0, 1]
    """
    if max_rows is None or len(frame) <= max_rows:
        return frame
    rng = np.random.default_rng(seed)
    labels = frame[label_column].astype(str).to_numpy()
    counts = pd.Series(labels).value_counts().sort_index()
    keep = []
    for label, n in _class_quotas(counts, max_rows).items():
        keep.append(rng.choice(np.flatnonzero(labels == label), size=int(n), replace=False))
    return frame.iloc[np.sort(np.concatenate(keep))]


def cap_splits(splits: Mapping[str, LabeledSplit], max_train_rows: Optional[int], max_eval_rows: Optional[int],
               seed: int = 0) -> dict[str, LabeledSplit]:
    """Train capped at ``max_train_rows``, dev and test at ``max_eval_rows`` (see :func:`cap_rows`)."""
    capped = {}
    for offset, name in enumerate(SPLITS):
        limit = max_train_rows if name == "train" else max_eval_rows
        frame = cap_rows(splits[name].frame, limit, seed + offset)
        source = splits[name].source if len(frame) == len(splits[name].frame) else \
            f"{splits[name].source} ({len(frame)} of {len(splits[name].frame)} rows, seed {seed + offset})"
        capped[name] = LabeledSplit(frame.reset_index(drop=True), source)
    return capped


def _write_atomic(path: Path, write) -> None:
    """Call ``write(temp_path)`` for a temp file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_splits(splits: Mapping[str, LabeledSplit], out_dir: str | Path) -> Path:
    """Write ``{train,dev,test}.csv.gz`` (columns sequence,label; byte-reproducible gzip) under ``out_dir``."""
    out_dir = Path(out_dir)
    for name in SPLITS:
        frame = splits[name].frame[["sequence", "label"]]
        _write_atomic(out_dir / f"{name}.csv.gz", lambda tmp, frame=frame: frame.to_csv(
            tmp, index=False, compression={"method": "gzip", "mtime": 0}))
    return out_dir


# ---------------------------------------------------------------- mean ± sd


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """(mean, sample sd) of ``values``; the sd of a single value is nan.

    Example:
        >>> mean_sd([0.5, 0.7])
        (0.6, 0.1414213562373095)
    """
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return float(np.mean(values)), sd


def format_mean_sd(values: Iterable[float], digits: int = 3, plus_minus: str = "±") -> str:
    """'mean ± sd'; '-' in place of the sd of a single value.

    Example:
        >>> format_mean_sd([0.5, 0.7])
        '0.600 ± 0.141'
    """
    mean, sd = mean_sd(values)
    return f"{mean:.{digits}f} {plus_minus} {'-' if math.isnan(sd) else f'{sd:.{digits}f}'}"


# ---------------------------------------------------------------- resumable results


def _jsonable(value: Any) -> Any:
    """JSON round trip, so tuples compare equal to the lists read back from disk."""
    return json.loads(json.dumps(value, default=_to_builtin))


def _to_builtin(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


class ResultsFile:
    """A JSON file of ``{"budget", "tasks", "runs"}`` rewritten (atomically) after every change.

    ``budget`` holds every setting that changes a run's numbers; reopening a file made with another
    budget raises, so results from two budgets never end up averaged together.

    Example:
        >>> store = ResultsFile("runs/suite.json", budget={"max_train_rows": 2000, "epochs": 3})
        >>> store.finished("prom_core_all", "cnn", 0) is None
        True
        >>> store.record({"task": "prom_core_all", "model": "cnn", "seed": 0, "status": "ok", "test": {"mcc": 0.6}})
    """

    def __init__(self, path: str | Path, budget: Mapping[str, Any]):
        self.path = Path(path)
        self.budget = _jsonable(dict(budget))
        self.data: dict[str, Any] = {"budget": self.budget, "tasks": {}, "runs": []}
        self.reload()

    def reload(self) -> None:
        """Take the file's contents (if any) as ``data``; a file of another budget raises."""
        if not self.path.exists():
            return
        saved = json.loads(self.path.read_text())
        if saved.get("budget") != self.budget:
            raise ValueError(
                f"{self.path} holds results of another budget {saved.get('budget')}, not {self.budget}; "
                f"pass the same budget flags to resume, or another results path to start afresh"
            )
        self.data = saved

    def _lock(self) -> FileLock:
        """An exclusive lock for this results path (its lock file lives in the temp folder, keyed by the path)."""
        key = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:16]
        return FileLock(Path(tempfile.gettempdir()) / f"gr_ft_results_{key}.lock")

    def update(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Re-read the file, apply ``change`` to its data and save, all under a lock.

        Several suite processes (say, one per CPU core, each with its own ``--tasks``) can therefore share
        one results file without losing each other's records.
        """
        with self._lock():
            self.reload()
            change(self.data)
            self.save()

    @classmethod
    def load(cls, path: str | Path) -> "ResultsFile":
        """Open an existing results file whatever its budget (for re-rendering a report)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"results file {path} does not exist; run the benchmark first")
        return cls(path, json.loads(path.read_text())["budget"])

    @property
    def runs(self) -> list[dict]:
        return self.data["runs"]

    @property
    def tasks(self) -> dict[str, dict]:
        return self.data["tasks"]

    def finished(self, task: str, model: str, seed: int) -> Optional[dict]:
        """The successful record of (task, model, seed), or None (failed runs are run again)."""
        for run in self.runs:
            if (run["task"], run["model"], run["seed"]) == (task, model, seed) and run.get("status") == "ok":
                return run
        return None

    def record(self, run: Mapping[str, Any]) -> None:
        """Add (or replace) the record of ``run["task"], run["model"], run["seed"]`` and save."""
        key = (run["task"], run["model"], run["seed"])
        record = _jsonable(dict(run))

        def replace(data: dict[str, Any]) -> None:
            data["runs"] = [r for r in data["runs"] if (r["task"], r["model"], r["seed"]) != key] + [record]

        self.update(replace)

    def set_task(self, task: str, info: Mapping[str, Any]) -> None:
        """Store per-task facts (data source, rows used, leakage summary) and save."""
        entry = _jsonable(dict(info))
        self.update(lambda data: data["tasks"].__setitem__(task, entry))

    def save(self) -> None:
        text = json.dumps(self.data, indent=1, default=_to_builtin)
        _write_atomic(self.path, lambda tmp: Path(tmp).write_text(text))


# ---------------------------------------------------------------- aggregation and verdicts


def aggregate_runs(runs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(task, model) -> ``{"seeds": [...], "<metric>": (mean, sd), ..., "wall_time_s": (mean, sd)}`` over ok runs.

    Every test metric that all seeds of the group report is aggregated.

    Example:
        >>> aggregate_runs([{"task": "t", "model": "m", "seed": s, "status": "ok", "test": {"mcc": v},
        ...                  "wall_time_s": 2.0} for s, v in [(0, 0.5), (1, 0.7)]])[("t", "m")]["mcc"]
        (0.6, 0.1414213562373095)
    """
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for run in runs:
        if run.get("status") == "ok":
            groups[(run["task"], run["model"])].append(run)
    summary = {}
    for key, group in groups.items():
        group = sorted(group, key=lambda r: r["seed"])
        names = set.intersection(*(set(r["test"]) for r in group))
        stats: dict[str, Any] = {"seeds": [r["seed"] for r in group]}
        for name in sorted(names):
            stats[name] = mean_sd(r["test"][name] for r in group)
        stats["wall_time_s"] = mean_sd(r["wall_time_s"] for r in group)
        summary[key] = stats
    return summary


@dataclass
class Verdict:
    """How one model compares with the strongest baseline on one task's headline metric."""

    task: str
    model: str
    opponent: str
    """The baseline with the best mean on ``metric``."""
    metric: str
    model_stats: tuple[float, float]
    """(mean, sd) of the model over seeds."""
    opponent_stats: tuple[float, float]
    margin: float
    """Differences within ± margin are ties."""
    outcome: str
    """wins, ties or loses."""

    @property
    def delta(self) -> float:
        """Model mean minus opponent mean."""
        return self.model_stats[0] - self.opponent_stats[0]


def _sd_or_zero(sd: float) -> float:
    return 0.0 if math.isnan(sd) else sd


def call_outcome(model_stats: tuple[float, float], opponent_stats: tuple[float, float], min_margin: float = 0.01,
                 direction: str = "max") -> str:
    """wins / ties / loses: a win needs the better mean by more than the margin.

    margin = max(min_margin, sqrt(sd_model² + sd_opponent²)), the sd of the difference of two single runs
    (an sd of one seed counts as 0), so differences inside the seed-to-seed noise are ties.

    Example:
        >>> call_outcome((0.62, 0.03), (0.60, 0.02))    # 0.02 apart, noise 0.036: a tie
        'ties'
    """
    margin = max(min_margin, math.hypot(_sd_or_zero(model_stats[1]), _sd_or_zero(opponent_stats[1])))
    gain = model_stats[0] - opponent_stats[0]
    if direction == "min":
        gain = -gain
    if gain > margin:
        return "wins"
    return "loses" if gain < -margin else "ties"


def compare_to_baselines(summary: Mapping[tuple[str, str], Mapping[str, Any]], task: str, model: str,
                         baselines: Iterable[str], metric: str, min_margin: float = 0.01) -> Optional[Verdict]:
    """The :class:`Verdict` of ``model`` against the best of ``baselines`` on ``task``; None if either is missing.

    Example:
        >>> summary = aggregate_runs(runs)
        >>> verdict = compare_to_baselines(summary, "prom_core_all", "lm_lora", ["kmer_logreg", "cnn"], "mcc")
        >>> verdict.outcome, verdict.opponent, round(verdict.delta, 3)
        ('loses', 'kmer_logreg', -0.104)
    """
    direction = metric_direction(metric)
    if (task, model) not in summary or metric not in summary[(task, model)]:
        return None
    scored = [(name, summary[(task, name)][metric]) for name in baselines
              if (task, name) in summary and metric in summary[(task, name)]]
    if not scored:
        return None
    pick = max if direction == "max" else min
    opponent, opponent_stats = pick(scored, key=lambda item: item[1][0])
    model_stats = summary[(task, model)][metric]
    margin = max(min_margin, math.hypot(_sd_or_zero(model_stats[1]), _sd_or_zero(opponent_stats[1])))
    outcome = call_outcome(model_stats, opponent_stats, min_margin, direction)
    return Verdict(task, model, opponent, metric, tuple(model_stats), tuple(opponent_stats), margin, outcome)
