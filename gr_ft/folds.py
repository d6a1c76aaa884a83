"""K-fold cross-validation whose folds are similarity clusters, so no near copy spans two folds.

    gr-ft finetune --config recipes/configs/demo.yaml data.folds=5
    # -> output_dir/fold_0 ... fold_4 (run folders), output_dir/fold_data/fold_N/{train,dev,test}.csv.gz,
    #    output_dir/folds_summary.json (mean ± sd of every test metric and of the dev primary metric)

train and dev are pooled and clustered greedily by exact k-mer Jaccard, the way
:func:`gr_ft.leakage.cluster_split` does (k=12 at identity 0.8 for DNA, k=4 at identity 0.5 for protein;
an approximation of CD-HIT/MMseqs2 without alignment); whole clusters are dealt to K folds of about
equal size. Fold i is dev for run i, the other folds are its train; the test split is the same in every run.

Example:
    >>> fold = cluster_folds(frame["sequence"].tolist(), k_folds=5, seed=0)
    >>> np.bincount(fold)
    array([600, 600, 600, 600, 600])
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from .config import FinetuneConfig
from .data_checks import load_splits_any_alphabet
from .utils import atomic_write_text
from .leakage import CLUSTER_K, _assign_clusters, greedy_clusters, identity_to_jaccard, kmer_sets, similar_pairs
from .seeds import summarise_seeds

__all__ = ["cluster_folds", "run_folds", "FOLD_IDENTITY"]

logger = logging.getLogger(__name__)
FOLD_IDENTITY: dict[str, float] = {"dna": 0.8, "protein": 0.5}
"""Sequences at or above this (estimated) identity share a cluster, hence a fold."""
SUMMARY_FILE = "folds_summary.json"


def cluster_folds(sequences: list[str], k_folds: int, seed: int = 0, alphabet: str = "dna",
                  identity: Optional[float] = None) -> np.ndarray:
    """Fold index (0..k_folds-1) per sequence; similar sequences (one cluster) always share a fold.

    Example:
        >>> cluster_folds(["ACGT" * 10, "ACGT" * 10, "GGCC" * 10, "TTAA" * 10], k_folds=2).tolist()
        [0, 0, 1, 1]
    """
    if k_folds < 2:
        raise ValueError(f"data.folds must be >= 2 for cross-validation, got {k_folds}")
    k = CLUSTER_K[alphabet]
    threshold = identity_to_jaccard(identity or FOLD_IDENTITY[alphabet], k)
    matrix = kmer_sets([sequences], k).matrices[0]
    lengths = np.fromiter(map(len, sequences), int, len(sequences))
    cluster = greedy_clusters(lengths, similar_pairs(matrix, threshold))
    if cluster.max() + 1 < k_folds:
        raise ValueError(f"data.folds={k_folds} but train+dev form only {cluster.max() + 1} similarity clusters; "
                         f"use fewer folds")
    return _assign_clusters(cluster, [1 / k_folds] * k_folds, seed)


def _write_fold_data(cfg: FinetuneConfig, out: Path) -> tuple[list[Path], dict[str, Any]]:
    """Pool train+dev, deal clusters to folds, write each fold's train/dev/test CSVs; returns folders and stats."""
    splits, alphabet = load_splits_any_alphabet(cfg.data, cfg.train.seed)
    columns = [cfg.data.sequence_column, cfg.data.label_column]
    pool = pd.concat([splits["train"].frame[columns], splits["dev"].frame[columns]], ignore_index=True)
    fold = cluster_folds(pool[cfg.data.sequence_column].tolist(), cfg.data.folds, cfg.train.seed, alphabet)
    folders = []
    for i in range(cfg.data.folds):
        folder = out / "fold_data" / f"fold_{i}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in (("train", pool[fold != i]), ("dev", pool[fold == i]), ("test", splits["test"].frame[columns])):
            tmp = folder / f".{name}.csv.gz.tmp"
            frame.to_csv(tmp, index=False, compression="gzip")
            tmp.replace(folder / f"{name}.csv.gz")
        folders.append(folder)
    return folders, {"alphabet": alphabet, "identity": FOLD_IDENTITY[alphabet], "fold_rows": np.bincount(fold).tolist()}


def run_folds(cfg: FinetuneConfig, finetune=None) -> dict[str, Any]:
    """One run per fold (``output_dir/fold_N``); writes and returns ``output_dir/folds_summary.json``."""
    if finetune is None:
        from .recipes.finetune_lora import finetune
    out = Path(cfg.output_dir)
    folders, stats = _write_fold_data(cfg, out)
    runs = []
    for i, folder in enumerate(folders):
        data = dataclasses.replace(cfg.data, path=str(folder), folds=0, labels_file=None)
        run_cfg = dataclasses.replace(cfg, output_dir=str(out / f"fold_{i}"), data=data)
        finished = Path(run_cfg.output_dir) / "metrics.json"
        if finished.exists() and not cfg.overwrite:
            runs.append((i, json.loads(finished.read_text())))
            continue
        runs.append((i, finetune(run_cfg)))
    primary = next((k for k in runs[0][1] if k.startswith("dev_")), None)
    summary = {"folds": cfg.data.folds, "runs": [str(out / f"fold_{i}") for i in range(len(folders))], **stats,
               "test": summarise_seeds(runs), "sd": "sample standard deviation over folds (n-1)"}
    if primary:
        values = [m[primary] for _, m in runs if m.get(primary) is not None]
        summary[primary] = {"mean": round(statistics.mean(values), 4), "sd": round(statistics.stdev(values), 4),
                            "values": [round(v, 4) for v in values]}
    atomic_write_text(out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary
