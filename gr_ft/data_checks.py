"""Dataset checks before training: counts, class balance, duplicates on both strands, label conflicts, shortcuts.

A score on a benchmark means little when test rows (or their reverse complements, or near copies)
sit in train, when one sequence carries two labels, or when a trivial feature such as length or GC
content already separates the classes. :func:`check_splits` measures each of these:

- **counts**: rows, distinct sequences, duplicate rows, lengths and class balance per split;
- **label conflicts**: sequences that carry more than one label (within and across splits);
- **cross-split overlap**: for each split pair (earlier, later), rows of the later split with an
  exact copy, an exact reverse-complement copy (DNA), or a near copy on either strand (k-mer Jaccard
  >= ``near_threshold``, candidates from :mod:`gr_ft.leakage`'s MinHash LSH, Jaccard then exact);
- **protein identity overlap**: rows of the later split with an earlier-split sequence at estimated
  identity >= ``identity`` (an approximation: exact 4-mer Jaccard turned into identity by
  :func:`gr_ft.leakage.identity_to_jaccard`, no alignment; use MMseqs2/CD-HIT for real identity);
- **shortcuts**: dev AUROC of a logistic regression that sees one trivial feature set only (length,
  GC content, mono-/di-nucleotide composition, or amino-acid composition), macro one-vs-rest for
  several classes. Near 0.5 is good; a high value means the classes differ in that feature, so a
  model can score that well without reading the sequence's order.

Example:
    >>> splits = load_checked_splits("../shared/data/promoter/gue_prom_300_tata", "auto")
    >>> report = check_splits(splits, CheckConfig(alphabet="dna"))
    >>> report["summary"]["near-dup"], report["summary"]["shortcut-auroc"]
    (0.0016, 0.62)
    >>> print(format_report(report))
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from .leakage import DEFAULT_K, identity_to_jaccard, kmer_sets, near_duplicate_pairs
from .utils import atomic_write_text

__all__ = ["CheckConfig", "FAIL_ON_METRICS", "check_splits", "format_report", "parse_fail_on", "failed_rules",
           "load_checked_splits", "reverse_complement", "shortcut_features", "finetune_data_checks", "check_data_main",
           "load_splits_any_alphabet"]

logger = logging.getLogger(__name__)

SPLIT_ORDER = ("train", "dev", "test")
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
IDENTITY_K = 4
"""k of the protein identity-overlap estimate (4-mers: unrelated proteins share almost none)."""

FAIL_ON_METRICS: dict[str, str] = {
    "exact-dup": "largest fraction of a later split's rows with an exact copy in an earlier split (DNA: either strand)",
    "near-dup": "largest fraction of a later split's rows with an exact or near copy in an earlier split "
                "(DNA: either strand)",
    "within-dup": "largest fraction of duplicate rows inside one split",
    "label-conflict": "fraction of distinct sequences (all splits) that carry more than one label",
    "shortcut-auroc": "highest dev AUROC of a one-feature-set logistic regression (length, GC, composition)",
    "identity-overlap": "protein only: largest fraction of a later split's rows with an earlier-split sequence at "
                        "estimated identity >= --identity",
}
"""Summary metrics a ``--fail-on NAME>VALUE`` rule can test, with what each measures."""

WARN_AT: dict[str, float] = {"exact-dup": 0.0, "near-dup": 0.01, "within-dup": 0.01, "label-conflict": 0.0,
                             "identity-overlap": 0.01}
"""Warn when a summary metric exceeds this value (``shortcut-auroc`` uses ``CheckConfig.shortcut_warn_auroc``)."""


@dataclass
class CheckConfig:
    """How :func:`check_splits` measures; defaults are those of ``gr-ft check-data``."""

    alphabet: str = "dna"
    """dna or protein: DNA checks both strands and GC / nucleotide composition; protein checks identity overlap."""
    near_threshold: float = 0.8
    """k-mer Jaccard at or above which two (non-identical) sequences count as near duplicates."""
    k: Optional[int] = None
    """k of the near-duplicate k-mers; empty: 6 for DNA, 3 for protein."""
    identity: float = 0.7
    """Protein identity-overlap threshold (estimated from 4-mer Jaccard)."""
    check_identity: bool = True
    """Run the protein identity-overlap check (the most expensive part)."""
    max_rows: Optional[int] = 50_000
    """Rows per split used by the shortcut checks and as the later split of an overlap pair (a seeded sample, so
    overlap fractions stay unbiased estimates); counts and conflicts always use every row."""
    max_reference_rows: Optional[int] = None
    """Rows of the earlier split of an overlap pair (the one searched for copies); empty: all. A sample misses
    copies, so a cap makes overlap an underestimate (the report says so)."""
    shortcut_warn_auroc: float = 0.7
    """Warn when a shortcut feature's dev AUROC reaches this value."""
    seed: int = 0
    num_perm: int = 64
    """MinHash permutations of the near-duplicate search."""

    def __post_init__(self):
        if self.alphabet not in ("dna", "protein"):
            raise ValueError(f"alphabet must be dna or protein, got {self.alphabet!r}")
        if not 0 < self.near_threshold <= 1:
            raise ValueError(f"near threshold must be in (0, 1], got {self.near_threshold}")
        if not 0 < self.identity <= 1:
            raise ValueError(f"identity must be in (0, 1], got {self.identity}")
        for name in ("max_rows", "max_reference_rows"):
            value = getattr(self, name)
            if value is not None and value < 10:
                raise ValueError(f"{name.replace('_', ' ')} must be >= 10 (or empty for all rows), got {value}")
        if not 0.5 <= self.shortcut_warn_auroc <= 1:
            raise ValueError(f"shortcut warning AUROC must be in [0.5, 1], got {self.shortcut_warn_auroc}")


# ---------------------------------------------------------------- strands


def reverse_complement(sequence: str) -> str:
    """The reverse complement of an upper-case DNA sequence (N stays N).

    Example:
        >>> reverse_complement("AACGN")
        'NCGTT'
    """
    return sequence.translate(_COMPLEMENT)[::-1]


# ---------------------------------------------------------------- counts and label conflicts


def _label_balance(labels: pd.Series, problem_type: str) -> dict[str, Any]:
    if problem_type == "regression":
        values = pd.to_numeric(labels, errors="coerce").dropna()
        if len(values) < 2:
            return {"mean": None, "sd": None}
        return {"mean": round(float(values.mean()), 4), "sd": round(float(values.std()), 4)}
    counts = labels.astype(str).value_counts()
    return {str(name): int(n) for name, n in counts.items()}


def split_counts(frame: pd.DataFrame, problem_type: str) -> dict[str, Any]:
    """Rows, distinct sequences, duplicate rows, length range and class balance of one split."""
    lengths = frame["sequence"].str.len()
    unique = int(frame["sequence"].nunique())
    return {
        "rows": len(frame), "unique_sequences": unique, "duplicate_rows": len(frame) - unique,
        "length": {"min": int(lengths.min()), "median": float(lengths.median()), "max": int(lengths.max())},
        "labels": _label_balance(frame["label"], problem_type),
    }


def label_conflicts(frames: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """Sequences with more than one distinct label: per split, and across all splits together."""
    out: dict[str, Any] = {"within": {}, "examples": []}
    for name, frame in frames.items():
        per_sequence = frame.groupby("sequence")["label"].nunique()
        out["within"][name] = int((per_sequence > 1).sum())
    everything = pd.concat([f[["sequence", "label"]].assign(split=n) for n, f in frames.items()])
    everything["label"] = everything["label"].astype(str)
    per_sequence = everything.groupby("sequence")["label"].nunique()
    conflicted = per_sequence[per_sequence > 1].index
    out["all_splits"] = len(conflicted)
    out["fraction"] = len(conflicted) / max(len(per_sequence), 1)
    rows = everything[everything["sequence"].isin(conflicted[:5])]
    for sequence, group in rows.groupby("sequence"):
        out["examples"].append({"sequence": _short(sequence),
                                "labels": sorted(f"{s}:{l}" for s, l in zip(group["split"], group["label"]))})
    return out


def _short(sequence: str, width: int = 50) -> str:
    return sequence if len(sequence) <= width else sequence[: width - 3] + "..."


# ---------------------------------------------------------------- cross-split overlap


def _near_rows(sequences_a: list[str], groups_b: list[list[str]], cfg: CheckConfig, k: int) -> np.ndarray:
    """Rows of split b (any strand in ``groups_b``) with a near copy (k-mer Jaccard >= threshold) in split a."""
    sets = kmer_sets([sequences_a, *groups_b], k)
    hit = np.zeros(len(groups_b[0]), dtype=bool)
    for group in range(1, len(groups_b) + 1):
        pairs = near_duplicate_pairs(sets, 0, group, cfg.near_threshold, cfg.num_perm, cfg.seed)
        hit[pairs["b_index"].to_numpy()] = True
    return hit


def _identity_rows(sequences_a: list[str], sequences_b: list[str], identity: float, chunk_rows: int = 500) -> np.ndarray:
    """Rows of b with a sequence of a at estimated identity >= ``identity`` (exact 4-mer Jaccard, no alignment)."""
    sets = kmer_sets([sequences_a, sequences_b], IDENTITY_K)
    mat_a, mat_b = sets.matrices
    threshold = identity_to_jaccard(identity, IDENTITY_K)
    sizes_a, sizes_b = np.diff(mat_a.indptr), np.diff(mat_b.indptr)
    transposed = mat_a.T.tocsr()
    hit = np.zeros(mat_b.shape[0], dtype=bool)
    for start in range(0, mat_b.shape[0], chunk_rows):
        shared = (mat_b[start : start + chunk_rows] @ transposed).tocoo()  # chunk rows x rows of a
        rows = shared.row + start
        union = sizes_b[rows] + sizes_a[shared.col] - shared.data
        hit[rows[shared.data >= threshold * union]] = True
    return hit


def pair_overlap(first: pd.DataFrame, second: pd.DataFrame, cfg: CheckConfig) -> dict[str, Any]:
    """Rows of ``second`` with an exact, reverse-complement (DNA) or near copy in ``first``; protein identity too."""
    seqs_a, seqs_b = first["sequence"].tolist(), second["sequence"].tolist()
    known = set(seqs_a)
    exact = np.fromiter((s in known for s in seqs_b), bool, len(seqs_b))
    strands = [seqs_b]
    revcomp = np.zeros(len(seqs_b), dtype=bool)
    if cfg.alphabet == "dna":
        rc_b = [reverse_complement(s) for s in seqs_b]
        revcomp = np.fromiter((r in known for r in rc_b), bool, len(rc_b)) & ~exact
        strands.append(rc_b)
    k = cfg.k or DEFAULT_K[cfg.alphabet]
    near = _near_rows(seqs_a, strands, cfg, k) & ~exact & ~revcomp
    leaked = exact | revcomp | near
    out = {
        "rows": len(seqs_b), "exact_rows": int(exact.sum()), "revcomp_rows": int(revcomp.sum()),
        "near_rows": int(near.sum()), "leaked_rows": int(leaked.sum()),
        "exact_fraction": float((exact | revcomp).mean()), "leaked_fraction": float(leaked.mean()),
        "examples": {kind: [_short(seqs_b[i]) for i in np.flatnonzero(mask)[:3]]
                     for kind, mask in (("exact", exact), ("revcomp", revcomp), ("near", near)) if mask.any()},
    }
    if cfg.alphabet == "protein" and cfg.check_identity:
        identity = _identity_rows(seqs_a, seqs_b, cfg.identity)
        out["identity_rows"] = int(identity.sum())
        out["identity_fraction"] = float(identity.mean())
    return out


# ---------------------------------------------------------------- shortcuts


def _composition(sequences: Sequence[str], letters: str, n: int) -> np.ndarray:
    """(sequences, len(letters)**n) frequencies of overlapping n-grams over ``letters`` (others ignored)."""
    from itertools import product

    from sklearn.feature_extraction.text import CountVectorizer

    vocabulary = ["".join(p) for p in product(letters, repeat=n)]
    counts = CountVectorizer(analyzer="char", ngram_range=(n, n), lowercase=False, vocabulary=vocabulary)
    matrix = counts.transform(sequences).toarray().astype(np.float64)
    return matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)


def shortcut_features(sequences: Sequence[str], alphabet: str) -> dict[str, np.ndarray]:
    """Trivial feature sets per sequence: length, and GC / mono- / di-nucleotide or amino-acid composition.

    Example:
        >>> shortcut_features(["GGCA", "ATAT"], "dna")["gc_content"].ravel().tolist()
        [0.75, 0.0]
    """
    features = {"length": np.log(np.fromiter(map(len, sequences), float, len(sequences)))[:, None]}
    if alphabet == "dna":
        mono = _composition(sequences, "ACGT", 1)
        features["gc_content"] = mono[:, [1, 2]].sum(axis=1, keepdims=True)
        features["mononucleotide"] = mono
        features["dinucleotide"] = _composition(sequences, "ACGT", 2)
    else:
        features["amino_acid_composition"] = _composition(sequences, "ACDEFGHIKLMNPQRSTVWY", 1)
    return features


def _fit_auroc(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x_train, y_train)
    scores = model.predict_proba(x_eval)
    if len(model.classes_) == 2:
        return float(roc_auc_score(y_eval, scores[:, 1]))
    return float(roc_auc_score(y_eval, scores, multi_class="ovr", average="macro", labels=model.classes_))


def shortcut_aurocs(train: pd.DataFrame, dev: pd.DataFrame, cfg: CheckConfig) -> dict[str, Any]:
    """Dev AUROC of a logistic regression trained on train for each trivial feature set alone."""
    y_train, y_dev = train["label"].astype(str).to_numpy(), dev["label"].astype(str).to_numpy()
    keep = np.isin(y_dev, np.unique(y_train))  # dev classes never seen in train cannot be scored
    if len(np.unique(y_train)) < 2 or len(np.unique(y_dev[keep])) < 2:
        return {"skipped": "train or dev has fewer than two classes"}
    x_train = shortcut_features(train["sequence"].tolist(), cfg.alphabet)
    x_dev = shortcut_features(dev["sequence"][keep].tolist(), cfg.alphabet)
    results = {}
    for name, values in x_train.items():
        if np.ptp(values, axis=0).max() == 0:  # constant feature (e.g. fixed length): no information
            results[name] = {"features": values.shape[1], "auroc": 0.5, "note": "constant in train"}
            continue
        auroc = _fit_auroc(values, y_train, x_dev[name], y_dev[keep])
        results[name] = {"features": values.shape[1], "auroc": round(auroc, 4)}
    return {"eval_split": "dev", "train_rows": len(train), "eval_rows": int(keep.sum()), "features": results}


# ---------------------------------------------------------------- the report


def _sample(frame: pd.DataFrame, max_rows: Optional[int], seed: int) -> pd.DataFrame:
    if max_rows is None or len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=seed).reset_index(drop=True)


def _problem_type(train: pd.DataFrame) -> str:
    from .labels import infer_label_spec

    try:
        return infer_label_spec(train["label"].tolist(), sequences=train["sequence"].tolist()).problem_type
    except ValueError:  # a single label: counts still make sense, shortcuts do not
        return "single_label"


def check_splits(splits: Mapping[str, Any], cfg: CheckConfig) -> dict[str, Any]:
    """Run every check on ``splits`` (name -> DataFrame or LabeledSplit with sequence and label columns).

    Example:
        >>> report = check_splits({"train": train_df, "dev": dev_df, "test": test_df}, CheckConfig("dna"))
        >>> report["summary"]["exact-dup"]
        0.0
    """
    started = time.time()
    frames = {n: getattr(splits[n], "frame", splits[n]) for n in SPLIT_ORDER if n in splits}
    problem_type = _problem_type(frames["train"])
    sampled = {n: _sample(f, cfg.max_rows, cfg.seed) for n, f in frames.items()}
    reference = {n: _sample(f, cfg.max_reference_rows, cfg.seed) for n, f in frames.items()}
    report: dict[str, Any] = {
        "config": asdict(cfg), "problem_type": problem_type,
        "k": cfg.k or DEFAULT_K[cfg.alphabet],
        "splits": {n: split_counts(f, problem_type) for n, f in frames.items()},
        "sampled": {n: {"used": len(sampled[n]), "total": len(f)} for n, f in frames.items() if len(sampled[n]) < len(f)},
        "reference_sampled": {n: {"used": len(reference[n]), "total": len(f)} for n, f in frames.items()
                              if len(reference[n]) < len(f)},
        "label_conflicts": label_conflicts(frames),
        "overlap": {},
    }
    names = list(frames)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            report["overlap"][f"{first}-{second}"] = pair_overlap(reference[first], sampled[second], cfg)
    if problem_type in ("binary", "multiclass") and "dev" in sampled:
        report["shortcuts"] = shortcut_aurocs(sampled["train"], sampled["dev"], cfg)
    else:
        report["shortcuts"] = {"skipped": f"labels are {problem_type}, not single-label classes"}
    report["summary"] = _summary(report)
    report["warnings"] = _warnings(report, cfg)
    report["seconds"] = round(time.time() - started, 2)
    return report


def _summary(report: Mapping[str, Any]) -> dict[str, Optional[float]]:
    overlap = report["overlap"].values()
    shortcuts = report["shortcuts"].get("features", {})
    identity = [o["identity_fraction"] for o in overlap if "identity_fraction" in o]
    return {
        "exact-dup": round(max((o["exact_fraction"] for o in overlap), default=0.0), 6),
        "near-dup": round(max((o["leaked_fraction"] for o in overlap), default=0.0), 6),
        "within-dup": round(max(s["duplicate_rows"] / s["rows"] for s in report["splits"].values()), 6),
        "label-conflict": round(report["label_conflicts"]["fraction"], 6),
        "shortcut-auroc": max((f["auroc"] for f in shortcuts.values()), default=None),
        "identity-overlap": round(max(identity), 6) if identity else None,
    }


def _warnings(report: Mapping[str, Any], cfg: CheckConfig) -> list[str]:
    warnings = []
    for name, value in report["summary"].items():
        limit = cfg.shortcut_warn_auroc if name == "shortcut-auroc" else WARN_AT[name]
        exceeded = value is not None and (value >= limit if name == "shortcut-auroc" else value > limit)
        if exceeded:
            warnings.append(f"{name} = {value:.4g} (warning {'at >=' if name == 'shortcut-auroc' else 'above'} "
                            f"{limit:g}): {FAIL_ON_METRICS[name]}")
    return warnings


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]


def _balance_text(labels: Mapping[str, Any], rows: int) -> str:
    if "mean" in labels and "sd" in labels:
        return f"mean {labels['mean']} sd {labels['sd']}"
    parts = [f"{name} {100 * n / rows:.1f}%" for name, n in list(labels.items())[:6]]
    return ", ".join(parts) + (f", ... ({len(labels)} classes)" if len(labels) > 6 else "")


def format_report(report: Mapping[str, Any], source: str = "") -> str:
    """A readable text report of :func:`check_splits` (tables), ending with the warnings."""
    cfg = report["config"]
    lines = [f"data check{' of ' + source if source else ''}: {cfg['alphabet']}, {report['problem_type']} labels"]
    lines += _table(["split", "rows", "unique", "dup rows", "length min/median/max", "labels"],
                    [[n, s["rows"], s["unique_sequences"], s["duplicate_rows"],
                      f"{s['length']['min']}/{s['length']['median']:g}/{s['length']['max']}",
                      _balance_text(s["labels"], s["rows"])] for n, s in report["splits"].items()])
    conflicts = report["label_conflicts"]
    lines.append(f"label conflicts (one sequence, several labels): {conflicts['all_splits']} sequences across all "
                 f"splits; within " + ", ".join(f"{n} {c}" for n, c in conflicts["within"].items()))
    lines += [f"    {e['sequence']}: {', '.join(e['labels'])}" for e in conflicts["examples"][:3]]
    strands = "either strand" if cfg["alphabet"] == "dna" else "same sequence"
    lines.append(f"overlap: rows of the later split with a copy in the earlier one ({strands}); near = k-mer "
                 f"Jaccard >= {cfg['near_threshold']} with k={report['k']} (MinHash LSH candidates, exact Jaccard)")
    if report["sampled"]:
        lines.append("  SAMPLED as the later split and for shortcuts (fractions are estimates): " + ", ".join(
            f"{n} {s['used']} of {s['total']} rows" for n, s in report["sampled"].items()))
    if report["reference_sampled"]:
        lines.append("  SAMPLED as the earlier split searched for copies (overlap is UNDERESTIMATED): " + ", ".join(
            f"{n} {s['used']} of {s['total']} rows" for n, s in report["reference_sampled"].items()))
    header = ["pair", "rows", "exact", "rev-comp", "near", "leaked", "leaked %"]
    with_identity = any("identity_rows" in o for o in report["overlap"].values())
    if with_identity:
        header += [f"identity>={cfg['identity']:g} %"]
    rows = []
    for pair, o in report["overlap"].items():
        row = [pair, o["rows"], o["exact_rows"], o["revcomp_rows"] if cfg["alphabet"] == "dna" else "-",
               o["near_rows"], o["leaked_rows"], f"{100 * o['leaked_fraction']:.2f}"]
        rows.append(row + ([f"{100 * o['identity_fraction']:.2f}"] if with_identity else []))
    lines += _table(header, rows)
    if with_identity:
        lines.append("  identity is estimated from exact 4-mer Jaccard (no alignment): an approximation of "
                     "CD-HIT/MMseqs2 identity")
    lines += _shortcut_lines(report["shortcuts"], cfg["shortcut_warn_auroc"])
    lines.append("summary: " + "  ".join(f"{k} {'-' if v is None else f'{v:.4g}'}" for k, v in report["summary"].items()))
    lines += [f"WARNING {w}" for w in report["warnings"]] or ["no warnings"]
    lines.append(f"({report['seconds']} s)")
    return "\n".join(lines)


def _shortcut_lines(shortcuts: Mapping[str, Any], warn_at: float) -> list[str]:
    if "skipped" in shortcuts:
        return [f"shortcuts: skipped ({shortcuts['skipped']})"]
    lines = [f"shortcuts: logistic regression on one feature set, fit on train ({shortcuts['train_rows']} rows), "
             f"AUROC on dev ({shortcuts['eval_rows']} rows; macro one-vs-rest for several classes); 0.5 = no signal, "
             f"warning at >= {warn_at:g}"]
    lines += _table(["feature", "dims", "dev AUROC", ""],
                    [[name, f["features"], f"{f['auroc']:.3f}", "WARN" if f["auroc"] >= warn_at else f.get("note", "")]
                     for name, f in shortcuts["features"].items()])
    return lines


# ---------------------------------------------------------------- thresholds

_RULE = re.compile(r"^\s*([a-z-]+)\s*>\s*([0-9.eE+-]+)\s*$")


def parse_fail_on(rules: Sequence[str]) -> list[tuple[str, float]]:
    """``["near-dup>0.05", "shortcut-auroc>0.8"]`` -> ``[("near-dup", 0.05), ("shortcut-auroc", 0.8)]``.

    Example:
        >>> parse_fail_on(["near-dup>0.05"])
        [('near-dup', 0.05)]
    """
    parsed = []
    for rule in rules:
        match = _RULE.match(rule)
        if not match:
            raise ValueError(f"--fail-on {rule!r} is not of the form NAME>VALUE (e.g. near-dup>0.05)")
        name, raw = match.groups()
        if name not in FAIL_ON_METRICS:
            raise ValueError(f"--fail-on {rule!r}: unknown check {name!r}; choose one of {sorted(FAIL_ON_METRICS)}")
        try:
            parsed.append((name, float(raw)))
        except ValueError:
            raise ValueError(f"--fail-on {rule!r}: {raw!r} is not a number") from None
    return parsed


def failed_rules(summary: Mapping[str, Optional[float]], rules: Sequence[tuple[str, float]]) -> list[str]:
    """The rules whose summary value exceeds the threshold, as readable lines (a metric not measured never fails)."""
    return [f"{name} = {summary[name]:.4g} > {limit:g}" for name, limit in rules
            if summary.get(name) is not None and summary[name] > limit]


# ---------------------------------------------------------------- loading and the CLI


def load_checked_splits(path: str, alphabet: str, label_column: str = "label", sequence_column: str = "sequence",
                        seed: int = 0) -> tuple[dict[str, pd.DataFrame], str]:
    """Splits read the way ``gr-ft finetune`` reads them (:func:`gr_ft.data.load_splits`), and the alphabet used.

    ``alphabet="auto"`` reads DNA and falls back to protein when a letter outside ACGTN appears.
    Columns are renamed to ``sequence`` and ``label``.
    """
    from .config import DataConfig

    data = DataConfig(path=path, alphabet=alphabet, label_column=label_column, sequence_column=sequence_column)
    splits, name = load_splits_any_alphabet(data, seed)
    frames = {n: s.frame.rename(columns={sequence_column: "sequence", label_column: "label"}) for n, s in splits.items()}
    return frames, name


def load_splits_any_alphabet(data, seed: int = 0) -> tuple[dict[str, Any], str]:
    """:func:`gr_ft.data.load_splits` with ``data.alphabet``; for ``auto``, DNA unless a letter outside ACGTN appears."""
    from .data import load_splits

    tried = ["dna", "protein"] if data.alphabet == "auto" else [data.alphabet]
    for i, name in enumerate(tried):
        try:
            return load_splits(data, name, seed), name
        except ValueError as err:
            if i + 1 == len(tried) or "invalid dna character" not in str(err):
                raise
    raise AssertionError("unreachable")


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gr-ft check-data", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check a labelled data set before training: counts and class balance, duplicates across splits "
                    "(reverse-complement aware for DNA), label conflicts, and shortcut features (length, GC, "
                    "composition). Exit 1 when a --fail-on rule is exceeded, 2 on bad input.",
        epilog="examples:\n  gr-ft check-data ../shared/data/promoter/gue_prom_300_tata\n"
               "  gr-ft check-data peaks.csv.gz --json checks.json --fail-on 'near-dup>0.05' --fail-on 'shortcut-auroc>0.8'\n"
               "  gr-ft check-data ../shared/data/ptm/musitedeep_phospho_Y --alphabet protein --identity 0.5\n"
               "checks for --fail-on:\n" + "\n".join(f"  {k:<17} {v}" for k, v in FAIL_ON_METRICS.items()) + "\n",
    )
    parser.add_argument("path", help="dataset folder with train/dev/test files, or one file (dev/test carved by seed)")
    parser.add_argument("--alphabet", choices=["dna", "protein", "auto"], default="auto")
    parser.add_argument("--json", metavar="OUT", help="also write the full report as JSON here")
    parser.add_argument("--fail-on", action="append", default=[], metavar="NAME>VALUE",
                        help="exit 1 when a summary value exceeds VALUE (repeatable)")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--sequence-column", default="sequence")
    parser.add_argument("--near-threshold", type=float, default=0.8, help="k-mer Jaccard of a near duplicate")
    parser.add_argument("--k", type=int, default=None, help="k-mer length (default 6 DNA, 3 protein)")
    parser.add_argument("--identity", type=float, default=0.7, help="protein identity-overlap threshold")
    parser.add_argument("--max-rows", type=int, default=50_000,
                        help="rows per split for shortcuts and as the later split of an overlap pair")
    parser.add_argument("--max-reference-rows", type=int, default=None,
                        help="rows of the earlier split searched for copies (default: all; a cap underestimates)")
    parser.add_argument("--shortcut-warn", type=float, default=0.7, help="warn at this shortcut dev AUROC")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def check_data_main(argv: list[str]) -> int:
    """``gr-ft check-data``: prints the report; returns 1 when a --fail-on rule is exceeded, else 0."""
    args = _parser().parse_args(argv)
    rules = parse_fail_on(args.fail_on)  # bad rules fail before any reading
    frames, alphabet = load_checked_splits(args.path, args.alphabet, args.label_column, args.sequence_column, args.seed)
    cfg = CheckConfig(alphabet=alphabet, near_threshold=args.near_threshold, k=args.k, identity=args.identity,
                      max_rows=args.max_rows, max_reference_rows=args.max_reference_rows,
                      shortcut_warn_auroc=args.shortcut_warn, seed=args.seed)
    report = check_splits(frames, cfg)
    report["source"] = args.path
    print(format_report(report, args.path))
    if args.json:
        atomic_write_text(args.json, json.dumps(_json_ready(report), indent=2) + "\n")
        print(f"wrote {args.json}")
    failed = failed_rules(report["summary"], rules)
    for line in failed:
        print(f"FAIL {line}")
    return 1 if failed else 0


# ---------------------------------------------------------------- inside gr-ft finetune

FINETUNE_MAX_ROWS = 5000
"""Row cap per split of the checks ``gr-ft finetune`` runs at its start (shortcuts, later split of a pair)."""
FINETUNE_MAX_REFERENCE_ROWS = 50_000
"""Row cap of the earlier split searched for copies in ``gr-ft finetune``'s checks."""


def finetune_data_checks(cfg, tokenizer) -> Optional[dict[str, Any]]:
    """The cheap checks (counts, duplicates, shortcuts on <= 5000 rows per split, copies searched in <= 50000
    rows of the earlier split; no protein identity overlap) for ``metrics.json``.

    Returns None when ``cfg.data.check`` is false; logs each warning.

    Example:
        >>> finetune_data_checks(load_config(FinetuneConfig, None), tokenizer)["summary"]["near-dup"]
    """
    if not cfg.data.check:
        return None
    from .data import load_splits

    alphabet = cfg.data.alphabet if cfg.data.alphabet != "auto" else (
        "protein" if tokenizer.kind == "protein" else "dna")
    if cfg.data.problem_type == "token_classification":
        return {"skipped": "per-position labels"}
    splits = load_splits(cfg.data, alphabet, cfg.train.seed)
    frames = {n: s.frame.rename(columns={cfg.data.sequence_column: "sequence", cfg.data.label_column: "label"})
              for n, s in splits.items()}
    report = check_splits(frames, CheckConfig(alphabet=alphabet, max_rows=FINETUNE_MAX_ROWS, check_identity=False,
                                              max_reference_rows=FINETUNE_MAX_REFERENCE_ROWS, seed=cfg.train.seed))
    for warning in report["warnings"]:
        logger.warning("data check: %s", warning)
    return _json_ready({
        "summary": report["summary"], "warnings": report["warnings"], "max_rows_per_split": FINETUNE_MAX_ROWS,
        "max_reference_rows": FINETUNE_MAX_REFERENCE_ROWS,
        "splits": {n: {"rows": s["rows"], "duplicate_rows": s["duplicate_rows"], "labels": s["labels"]}
                   for n, s in report["splits"].items()},
        "shortcuts": {n: f["auroc"] for n, f in report["shortcuts"].get("features", {}).items()},
        "seconds": report["seconds"],
    })
