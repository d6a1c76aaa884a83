"""Train/dev/test leakage: exact duplicates, k-mer near-duplicates, and similarity-clustered splits.

A benchmark score means little if test sequences (or near copies of them) sit in train. This
module measures that and can build splits that avoid it:

- :func:`leakage_report` counts identical sequences inside and across splits (and shared
  sequences whose labels disagree), then finds near-duplicate pairs across splits whose k-mer
  sets have Jaccard similarity >= ``threshold``. Candidates come from MinHash signatures
  (numpy, no datasketch) with LSH banding; every candidate's Jaccard is then computed exactly,
  so reported pairs are exact and only recall is probabilistic (the report states the
  detection probability at the threshold). ~50k x 6k sequences of 70 bp take a few seconds.
- :func:`cluster_split` groups sequences greedily by k-mer Jaccard (longest first, each
  sequence joins the first representative it resembles, as CD-HIT does) and assigns whole
  clusters to train/dev/test, so no cluster spans two splits. It approximates CD-HIT/MMseqs2:
  identity is turned into a k-mer Jaccard threshold (see :func:`identity_to_jaccard`), with no
  alignment. Use MMseqs2/CD-HIT for publication-grade splits.

Example:
    >>> splits = load_splits(DataConfig(path="../shared/data/promoter/gue_prom_core_all"), "dna")
    >>> report = leakage_report(splits, threshold=0.8)
    >>> report["pairs"]["train-test"]["exact_shared_sequences"]
    42
    >>> print(format_leakage_report(report))
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

__all__ = [
    "DEFAULT_K",
    "KmerSets",
    "kmer_sets",
    "minhash_signatures",
    "lsh_rows_per_band",
    "near_duplicate_pairs",
    "leakage_report",
    "format_leakage_report",
    "identity_to_jaccard",
    "similar_pairs",
    "greedy_clusters",
    "cluster_split",
]

logger = logging.getLogger(__name__)

DEFAULT_K: dict[str, int] = {"dna": 6, "protein": 3}
"""k for near-duplicate search: one substitution in a 70 bp DNA or 33 aa window keeps Jaccard > 0.8."""
CLUSTER_K: dict[str, int] = {"dna": 12, "protein": 4}
"""k for clustering: long enough that unrelated sequences share almost no k-mers (for DNA use identity >= 0.8)."""
SPLIT_ORDER = ("train", "dev", "test")
DNA_LETTERS = frozenset("ACGTN")
MIN_DETECTION_PROBABILITY = 0.99
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_EMPTY = np.iinfo(np.uint64).max  # signature of a sequence shorter than k


# ---------------------------------------------------------------- k-mer sets


@dataclass
class KmerSets:
    """Binary k-mer incidence of several groups of sequences over one shared k-mer vocabulary."""

    matrices: list[sparse.csr_matrix]
    """One (sequences, k-mers) 0/1 matrix per group; column j is the k-mer ``codes[j]``."""
    codes: np.ndarray
    """Integer code (base |alphabet|) of each column's k-mer, uint64."""
    k: int


def _symbol_ids(sequences: Sequence[str]) -> tuple[np.ndarray, int]:
    """Concatenated letters as small integers 0..base-1, and base (the number of distinct letters)."""
    letters = np.frombuffer("".join(sequences).encode("ascii"), dtype=np.uint8)
    present = np.unique(letters)
    lookup = np.zeros(256, dtype=np.uint64)
    lookup[present] = np.arange(len(present), dtype=np.uint64)
    return lookup[letters], max(len(present), 2)


def _kmer_occurrences(sequences: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, code) of every k-mer occurrence; windows that cross two sequences are dropped."""
    symbols, base = _symbol_ids(sequences)
    if base**k >= 2**63:
        raise ValueError(f"k={k} is too large for an alphabet of {base} letters; use k <= {int(63 / np.log2(base))}")
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    n_windows = len(symbols) - k + 1
    if n_windows <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    codes = np.zeros(n_windows, dtype=np.uint64)
    for offset in range(k):
        codes = codes * np.uint64(base) + symbols[offset : offset + n_windows]
    rows = np.repeat(np.arange(len(sequences)), lengths)[:n_windows]
    valid = np.arange(n_windows) + k <= np.cumsum(lengths)[rows]  # window ends inside its own sequence
    return rows[valid], codes[valid]


def kmer_sets(groups: Sequence[Sequence[str]], k: int) -> KmerSets:
    """Binary k-mer incidence matrices of several groups of sequences, sharing columns.

    Example:
        >>> sets = kmer_sets([["ACGTA"], ["ACGTT", "GG"]], k=3)
        >>> [m.sum(axis=1).A1.tolist() for m in sets.matrices]
        [[3], [3, 0]]
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    everything = [s for group in groups for s in group]
    rows, codes = _kmer_occurrences(everything, k)
    vocabulary, columns = np.unique(codes, return_inverse=True)
    ones = np.ones(len(rows), dtype=np.int32)
    incidence = sparse.csr_matrix((ones, (rows, columns.ravel())), shape=(len(everything), len(vocabulary)))
    incidence.sum_duplicates()
    incidence.data[:] = 1
    bounds = np.cumsum([0] + [len(g) for g in groups])
    matrices = [incidence[start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]
    return KmerSets(matrices, vocabulary, k)


# ---------------------------------------------------------------- MinHash + LSH


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-mixed 64-bit hash of each uint64 (wrapping arithmetic)."""
    x = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def minhash_signatures(matrix: sparse.csr_matrix, codes: np.ndarray, num_perm: int = 64,
                       seed: int = 0) -> np.ndarray:
    """(sequences, num_perm) MinHash signatures of each row's k-mer set; empty rows get all-max.

    The fraction of equal columns of two signatures estimates the Jaccard of their k-mer sets.

    Example:
        >>> sets = kmer_sets([["ACGTACGGT", "ACGTACGGA"]], k=3)
        >>> sig = minhash_signatures(sets.matrices[0], sets.codes, num_perm=128)
        >>> float((sig[0] == sig[1]).mean())  # estimates the true Jaccard 5/7 = 0.71 (sd 0.04)
        0.6484375
    """
    salts = _mix64(np.arange(1, num_perm + 1, dtype=np.uint64) + np.uint64(seed) * np.uint64(1_000_003))
    signatures = np.full((matrix.shape[0], num_perm), _EMPTY, dtype=np.uint64)
    filled = np.diff(matrix.indptr) > 0
    starts = matrix.indptr[:-1][filled]
    for p, salt in enumerate(salts):
        hashed = _mix64(codes ^ salt)  # one random permutation of the k-mer vocabulary
        signatures[filled, p] = np.minimum.reduceat(hashed[matrix.indices], starts)
    return signatures


def lsh_rows_per_band(threshold: float, num_perm: int) -> tuple[int, int, float]:
    """(bands, rows per band, P(candidate | Jaccard = threshold)) for LSH banding.

    Picks the most selective banding (fewest false candidates) that still flags a pair at the
    threshold with probability >= 0.99 (falls back to one row per band).

    Example:
        >>> lsh_rows_per_band(0.8, 64)[:2]
        (12, 5)
    """
    best = (num_perm, 1, 1 - (1 - threshold) ** num_perm)
    for rows in range(2, num_perm + 1):
        bands = num_perm // rows
        detect = 1 - (1 - threshold**rows) ** bands
        if detect >= MIN_DETECTION_PROBABILITY:
            best = (bands, rows, detect)
    return best


def _band_keys(signatures: np.ndarray, band: int, rows: int) -> np.ndarray:
    """One uint64 bucket key per sequence for band ``band`` (rows ``band*rows`` onward)."""
    key = np.zeros(len(signatures), dtype=np.uint64)
    for column in range(band * rows, (band + 1) * rows):
        key = _mix64(key ^ signatures[:, column])
    return key


def _lsh_candidates(sig_a: np.ndarray, sig_b: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, 2) index pairs (row of a, row of b) sharing a bucket in at least one band."""
    keep_a = np.flatnonzero(sig_a[:, 0] != _EMPTY)
    keep_b = np.flatnonzero(sig_b[:, 0] != _EMPTY)
    found = []
    for band in range(bands):
        left = pd.DataFrame({"key": _band_keys(sig_a[keep_a], band, rows), "a": keep_a})
        right = pd.DataFrame({"key": _band_keys(sig_b[keep_b], band, rows), "b": keep_b})
        found.append(left.merge(right, on="key")[["a", "b"]].to_numpy())
    pairs = np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def _pair_jaccard(mat_a: sparse.csr_matrix, mat_b: sparse.csr_matrix, pairs: np.ndarray,
                  chunk: int = 100_000) -> np.ndarray:
    """Exact Jaccard of the k-mer sets of each (row of a, row of b) pair."""
    sizes_a, sizes_b = np.diff(mat_a.indptr), np.diff(mat_b.indptr)
    shared = np.zeros(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), chunk):
        a, b = pairs[start : start + chunk, 0], pairs[start : start + chunk, 1]
        shared[start : start + chunk] = np.asarray(mat_a[a].multiply(mat_b[b]).sum(axis=1)).ravel()
    union = sizes_a[pairs[:, 0]] + sizes_b[pairs[:, 1]] - shared
    return np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)


def near_duplicate_pairs(sets: KmerSets, a: int, b: int, threshold: float, num_perm: int = 64,
                         seed: int = 0) -> pd.DataFrame:
    """Pairs (row ``a_index`` of group ``a``, row ``b_index`` of group ``b``) with k-mer Jaccard >= threshold.

    Example:
        >>> sets = kmer_sets([train_sequences, test_sequences], k=6)
        >>> near_duplicate_pairs(sets, 0, 1, threshold=0.8).head()   # a_index, b_index, jaccard
    """
    mat_a, mat_b = sets.matrices[a], sets.matrices[b]
    bands, rows, _ = lsh_rows_per_band(threshold, num_perm)
    sig_a = minhash_signatures(mat_a, sets.codes, num_perm, seed)
    sig_b = minhash_signatures(mat_b, sets.codes, num_perm, seed)
    candidates = _lsh_candidates(sig_a, sig_b, bands, rows)
    jaccard = _pair_jaccard(mat_a, mat_b, candidates)
    keep = jaccard >= threshold
    logger.debug("LSH: %d candidate pairs, %d at Jaccard >= %.2f", len(candidates), int(keep.sum()), threshold)
    return pd.DataFrame({"a_index": candidates[keep, 0], "b_index": candidates[keep, 1], "jaccard": jaccard[keep]})


# ---------------------------------------------------------------- the report


def _frame_of(split: Any) -> pd.DataFrame:
    """The DataFrame of a LabeledSplit (``.frame``) or a DataFrame itself; needs a sequence column."""
    frame = getattr(split, "frame", split)
    if not isinstance(frame, pd.DataFrame) or "sequence" not in frame.columns:
        raise TypeError("splits must map names to LabeledSplit or DataFrame objects with a 'sequence' column")
    return frame


def _guess_alphabet(frames: Sequence[pd.DataFrame]) -> str:
    """'dna' if every letter is in ACGTN, else 'protein'."""
    letters = set().union(*(set("".join(f["sequence"].astype(str))) for f in frames))
    return "dna" if letters <= DNA_LETTERS else "protein"


def _sample_rows(frame: pd.DataFrame, max_rows: Optional[int], seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows, drawn without replacement with ``seed`` (all rows if None)."""
    if max_rows is None or len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=seed)


def _short(sequence: str, width: int = 60) -> str:
    return sequence if len(sequence) <= width else sequence[: width - 3] + "..."


def _split_summary(frame: pd.DataFrame) -> dict[str, int]:
    """Rows, distinct sequences, rows repeating an earlier row's sequence, and sequences with >1 label."""
    sequences = frame["sequence"]
    summary = {"rows": len(frame), "unique_sequences": int(sequences.nunique())}
    summary["duplicate_rows"] = summary["rows"] - summary["unique_sequences"]
    if "label" in frame.columns:
        labels_per_sequence = frame.groupby("sequence")["label"].nunique()
        summary["conflicting_label_sequences"] = int((labels_per_sequence > 1).sum())
    return summary


def _exact_overlap(first: pd.DataFrame, second: pd.DataFrame, names: tuple[str, str],
                   max_examples: int) -> dict[str, Any]:
    """Sequences present in both splits: counts, rows per split, label disagreements, examples."""
    shared = sorted(set(first["sequence"]) & set(second["sequence"]))
    out: dict[str, Any] = {
        "exact_shared_sequences": len(shared),
        "exact_rows": {names[0]: int(first["sequence"].isin(shared).sum()),
                       names[1]: int(second["sequence"].isin(shared).sum())},
    }
    examples = pd.DataFrame({"sequence": shared[:max_examples]})
    if "label" in first.columns and "label" in second.columns and shared:
        left = first[first["sequence"].isin(shared)].groupby("sequence")["label"].agg(lambda s: sorted(set(map(str, s))))
        right = second[second["sequence"].isin(shared)].groupby("sequence")["label"].agg(lambda s: sorted(set(map(str, s))))
        out["label_conflicts"] = int((left != right.reindex(left.index)).sum())
        examples[f"{names[0]}_labels"] = examples["sequence"].map(left)
        examples[f"{names[1]}_labels"] = examples["sequence"].map(right)
    examples["sequence"] = examples["sequence"].map(_short)
    out["exact_examples"] = examples.to_dict("records")
    return out


def _near_overlap(first: pd.DataFrame, second: pd.DataFrame, pairs: pd.DataFrame, names: tuple[str, str],
                  max_examples: int) -> dict[str, Any]:
    """Near (non-identical) pairs: counts, rows of the later split touched, and the closest examples."""
    seq_a = first["sequence"].to_numpy()[pairs["a_index"].to_numpy()]
    seq_b = second["sequence"].to_numpy()[pairs["b_index"].to_numpy()]
    near = pairs[seq_a != seq_b].sort_values("jaccard", ascending=False)
    exact_rows = second["sequence"].isin(set(first["sequence"])).to_numpy()
    near_rows = np.zeros(len(second), dtype=bool)
    near_rows[near["b_index"].to_numpy()] = True
    near_only = near_rows & ~exact_rows
    examples = []
    for a_index, b_index, jaccard in near.head(max_examples).itertuples(index=False):
        example = {"jaccard": round(float(jaccard), 3), names[0]: _short(first["sequence"].iloc[a_index]),
                   names[1]: _short(second["sequence"].iloc[b_index])}
        if "label" in first.columns and "label" in second.columns:
            example["labels"] = [str(first["label"].iloc[a_index]), str(second["label"].iloc[b_index])]
        examples.append(example)
    return {
        "near_pairs": len(near),
        "near_rows": {names[1]: int(near_only.sum())},
        "leaked_rows": {names[1]: int((exact_rows | near_rows).sum())},
        "leaked_fraction": {names[1]: float((exact_rows | near_rows).mean()) if len(second) else 0.0},
        "near_examples": examples,
    }


def leakage_report(splits: Mapping[str, Any], *, k: Optional[int] = None, threshold: float = 0.8,
                   num_perm: int = 64, max_examples: int = 5, max_rows_per_split: Optional[int] = None,
                   seed: int = 0) -> dict[str, Any]:
    """Exact and near-duplicate overlap within and across train/dev/test.

    ``splits`` maps split names to LabeledSplit (from ``load_splits``) or DataFrames with a
    ``sequence`` (and optionally ``label``) column. Near duplicates: k-mer Jaccard >= ``threshold``
    and not identical (``k`` defaults to 6 for DNA, 3 for protein). For each pair (earlier, later)
    ``leaked_rows`` counts rows of the later split with an exact or near copy in the earlier one.
    Splits longer than ``max_rows_per_split`` are subsampled (seeded); the report says so.

    Example:
        >>> report = leakage_report({"train": train_df, "test": test_df}, threshold=0.8)
        >>> report["pairs"]["train-test"]["leaked_rows"]["test"]
        3
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    started = time.time()
    names = [n for n in SPLIT_ORDER if n in splits] + sorted(set(splits) - set(SPLIT_ORDER))
    full = {name: _frame_of(splits[name]) for name in names}
    frames = {name: _sample_rows(f, max_rows_per_split, seed).reset_index(drop=True) for name, f in full.items()}
    alphabet = _guess_alphabet(list(frames.values()))
    k = DEFAULT_K[alphabet] if k is None else k
    sets = kmer_sets([frames[n]["sequence"].tolist() for n in names], k)
    bands, rows, detect = lsh_rows_per_band(threshold, num_perm)
    report: dict[str, Any] = {
        "alphabet": alphabet, "k": k, "threshold": threshold,
        "method": {"num_perm": num_perm, "bands": bands, "rows_per_band": rows,
                   "detection_probability_at_threshold": round(detect, 4), "jaccard": "exact for every candidate"},
        "sampled": {n: {"used": len(frames[n]), "total": len(full[n])} for n in names if len(frames[n]) < len(full[n])},
        "splits": {n: _split_summary(frames[n]) for n in names},
        "pairs": {},
    }
    for i, first in enumerate(names):
        for j in range(i + 1, len(names)):
            second = names[j]
            pairs = near_duplicate_pairs(sets, i, j, threshold, num_perm, seed)
            entry = _exact_overlap(frames[first], frames[second], (first, second), max_examples)
            entry.update(_near_overlap(frames[first], frames[second], pairs, (first, second), max_examples))
            report["pairs"][f"{first}-{second}"] = entry
    report["seconds"] = round(time.time() - started, 2)
    logger.info("leakage report over %s in %.1f s", names, report["seconds"])
    return report


def format_leakage_report(report: Mapping[str, Any]) -> str:
    """Plain-text summary of :func:`leakage_report` (one block per split and split pair).

    Example:
        >>> print(format_leakage_report(leakage_report(splits)))
        leakage report: dna, k=6, near-duplicate = k-mer Jaccard >= 0.8 ...
    """
    method = report["method"]
    lines = [
        f"leakage report: {report['alphabet']}, k={report['k']}, near-duplicate = k-mer Jaccard >= "
        f"{report['threshold']} (MinHash LSH {method['bands']}x{method['rows_per_band']}, detection probability "
        f"{method['detection_probability_at_threshold']} at the threshold; Jaccard exact)",
        "SAMPLED: " + ", ".join(f"{n} {s['used']} of {s['total']} rows" for n, s in report["sampled"].items())
        if report["sampled"] else "all rows used (no sampling)",
    ]
    for name, summary in report["splits"].items():
        conflicts = summary.get("conflicting_label_sequences")
        lines.append(f"  {name}: {summary['rows']} rows, {summary['duplicate_rows']} duplicate rows"
                     + (f", {conflicts} sequences with conflicting labels" if conflicts is not None else ""))
    for pair, entry in report["pairs"].items():
        later = pair.split("-", 1)[1]
        lines.append(
            f"  {pair}: {entry['exact_shared_sequences']} shared sequences ({entry['exact_rows'][later]} {later} rows"
            + (f", {entry['label_conflicts']} with different labels" if "label_conflicts" in entry else "")
            + f"); {entry['near_pairs']} near-duplicate pairs; {entry['leaked_rows'][later]} {later} rows "
            f"({100 * entry['leaked_fraction'][later]:.2f}%) have an exact or near copy"
        )
        for example in entry["near_examples"][:3]:
            lines.append(f"      J={example['jaccard']}: {' | '.join(str(v) for k, v in example.items() if k != 'jaccard')}")
    lines.append(f"  ({report['seconds']} s)")
    return "\n".join(lines)


# ---------------------------------------------------------------- clustered splits


def identity_to_jaccard(identity: float, k: int) -> float:
    """Expected k-mer Jaccard of two sequences at ``identity`` under independent substitutions.

    A k-mer survives with probability q = identity**k, so J = q / (2 - q). Indels, repeats and
    unequal lengths make real values differ; this is the approximation :func:`cluster_split` uses.

    Example:
        >>> round(identity_to_jaccard(0.5, k=4), 4)
        0.0323
    """
    if not 0 < identity <= 1:
        raise ValueError(f"identity must be in (0, 1], got {identity}")
    q = identity**k
    return q / (2 - q)


def similar_pairs(matrix: sparse.csr_matrix, threshold: float, chunk_rows: int = 2000) -> sparse.csr_matrix:
    """Symmetric 0/1 matrix of sequence pairs (i != j) whose k-mer Jaccard >= ``threshold``, computed exactly.

    Shared k-mer counts come from a sparse product in row chunks, so only pairs that share at
    least one k-mer cost anything (cheap when k is large enough that k-mers are rare).

    Example:
        >>> similar_pairs(kmer_sets([seqs], k=4).matrices[0], threshold=0.2).nnz
    """
    sizes = np.diff(matrix.indptr)
    transposed = matrix.T.tocsr()
    blocks = []
    for start in range(0, matrix.shape[0], chunk_rows):
        shared = (matrix[start : start + chunk_rows] @ transposed).tocoo()  # rows in chunk x all rows
        rows = shared.row + start
        union = sizes[rows] + sizes[shared.col] - shared.data
        keep = (shared.data >= threshold * union) & (rows != shared.col)
        blocks.append((rows[keep], shared.col[keep]))
    rows = np.concatenate([b[0] for b in blocks]) if blocks else np.zeros(0, int)
    cols = np.concatenate([b[1] for b in blocks]) if blocks else np.zeros(0, int)
    return sparse.csr_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(matrix.shape[0],) * 2)


def greedy_clusters(lengths: np.ndarray, neighbours: sparse.csr_matrix) -> np.ndarray:
    """CD-HIT-style cluster id per sequence: longest first, each joins the first representative it neighbours.

    Example:
        >>> greedy_clusters(np.array([5, 9, 7]), sparse.csr_matrix(np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]])))
        array([0, 0, 1])
    """
    cluster = np.full(len(lengths), -1, dtype=np.int64)
    next_id = 0
    for representative in np.argsort(-np.asarray(lengths), kind="stable"):
        if cluster[representative] >= 0:
            continue
        cluster[representative] = next_id
        members = neighbours.indices[neighbours.indptr[representative] : neighbours.indptr[representative + 1]]
        members = members[cluster[members] < 0]
        cluster[members] = next_id
        next_id += 1
    return cluster


def _assign_clusters(cluster: np.ndarray, fractions: Sequence[float], seed: int) -> np.ndarray:
    """Split index per sequence: whole clusters, largest first (ties random), to the split furthest below target."""
    ids, sizes = np.unique(cluster, return_counts=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    order = order[np.argsort(-sizes[order], kind="stable")]
    targets = np.asarray(fractions, dtype=float) * len(cluster)
    filled = np.zeros(len(fractions))
    split_of_cluster = np.zeros(len(ids), dtype=np.int64)
    for position in order:
        split = int(np.argmax(targets - filled))
        split_of_cluster[position] = split
        filled[split] += sizes[position]
    return split_of_cluster[np.searchsorted(ids, cluster)]


def cluster_split(frame: pd.DataFrame, identity: float = 0.5, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                  seed: int = 0, k: Optional[int] = None) -> dict[str, pd.DataFrame]:
    """Split ``frame`` into train/dev/test by similarity clusters, so no cluster spans two splits.

    Greedy CD-HIT-like clustering on exact k-mer Jaccard (k defaults to 4 for protein, 12 for
    DNA) at the threshold :func:`identity_to_jaccard` gives for ``identity``; an approximation
    to CD-HIT/MMseqs2 without alignment. Each returned frame gains a ``cluster`` column.

    Example:
        >>> parts = cluster_split(proteins, identity=0.5, fractions=(0.8, 0.1, 0.1), seed=42)
        >>> {name: len(part) for name, part in parts.items()}
        {'train': 7710, 'dev': 964, 'test': 964}
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers (train, dev, test) summing to 1, got {fractions}")
    frame = _frame_of(frame).reset_index(drop=True)
    sequences = frame["sequence"].astype(str).tolist()
    k = CLUSTER_K[_guess_alphabet([frame])] if k is None else k
    threshold = identity_to_jaccard(identity, k)
    matrix = kmer_sets([sequences], k).matrices[0]
    cluster = greedy_clusters(np.fromiter(map(len, sequences), int, len(sequences)), similar_pairs(matrix, threshold))
    split = _assign_clusters(cluster, fractions, seed)
    frame = frame.assign(cluster=cluster)
    parts = {name: frame[split == i].reset_index(drop=True) for i, name in enumerate(SPLIT_ORDER)}
    logger.info("cluster_split: %d sequences, %d clusters (k=%d, Jaccard >= %.3f for identity %.2f); sizes %s",
                len(frame), cluster.max() + 1, k, threshold, identity, {n: len(p) for n, p in parts.items()})
    return parts
