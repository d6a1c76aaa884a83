"""Leakage report and clustered splits on planted, known-answer data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import shared_data
from gr_ft.leakage import (
    cluster_split,
    format_leakage_report,
    identity_to_jaccard,
    kmer_sets,
    leakage_report,
    lsh_rows_per_band,
    minhash_signatures,
)

DNA = np.array(list("ACGT"))
AMINO = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


def random_sequences(n: int, length: int, seed: int, letters: np.ndarray = DNA) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(row) for row in rng.choice(letters, size=(n, length))]


def mutate(sequence: str, positions: list[int], letters: np.ndarray = DNA) -> str:
    """Substitute each given position with the next letter (a guaranteed change)."""
    out = list(sequence)
    for p in positions:
        out[p] = letters[(list(letters).index(out[p]) + 1) % len(letters)]
    return "".join(out)


def frame(sequences: list[str], label: str = "0") -> pd.DataFrame:
    return pd.DataFrame({"sequence": sequences, "label": [label] * len(sequences)})


@pytest.fixture(scope="module")
def planted():
    """train 300 random 100 bp; dev: 3 exact copies + 4 one-substitution copies of train + 50 new; test: 60 new."""
    train = random_sequences(300, 100, seed=1)
    dev = train[:3] + [mutate(s, [50]) for s in train[10:14]] + random_sequences(50, 100, seed=2)
    test = random_sequences(60, 100, seed=3)
    return {"train": frame(train), "dev": frame(dev, "1"), "test": frame(test)}


def test_kmer_sets_count_distinct_kmers_within_each_sequence():
    sets = kmer_sets([["ACGTA"], ["ACGTT", "GG", "AAAA"]], k=3)
    assert [m.sum(axis=1).A1.tolist() for m in sets.matrices] == [[3], [3, 0, 1]]


def test_minhash_estimates_jaccard():
    sequences = random_sequences(50, 100, seed=0)
    copies = [mutate(s, [20, 60]) for s in sequences]
    sets = kmer_sets([sequences, copies], k=6)
    a, b = sets.matrices
    shared = a.multiply(b).sum(axis=1).A1
    exact = shared / (a.sum(axis=1).A1 + b.sum(axis=1).A1 - shared)
    sig_a, sig_b = (minhash_signatures(m, sets.codes, num_perm=128) for m in (a, b))
    assert abs((sig_a == sig_b).mean(axis=1).mean() - exact.mean()) < 0.03


def test_lsh_banding_detects_pairs_at_the_threshold():
    bands, rows, detect = lsh_rows_per_band(0.8, 64)
    assert bands * rows <= 64 and detect >= 0.99


def test_report_finds_planted_exact_and_near_duplicates(planted):
    report = leakage_report(planted, threshold=0.8)
    pair = report["pairs"]["train-dev"]
    assert pair["exact_shared_sequences"] == 3 and pair["exact_rows"] == {"train": 3, "dev": 3}
    assert pair["label_conflicts"] == 3  # train says 0, dev says 1
    assert pair["near_pairs"] == 4 and pair["near_rows"] == {"dev": 4}
    assert pair["leaked_rows"] == {"dev": 7}
    assert all(e["jaccard"] >= 0.8 for e in pair["near_examples"])
    for clean in ("train-test", "dev-test"):
        entry = report["pairs"][clean]
        assert entry["exact_shared_sequences"] == 0 and entry["near_pairs"] == 0 and entry["leaked_rows"] == {"test": 0}
    assert report["sampled"] == {}
    text = format_leakage_report(report)
    assert "train-dev: 3 shared sequences" in text and "no sampling" in text


def test_within_split_duplicates_and_conflicts_are_counted():
    train = pd.DataFrame({"sequence": ["ACGTACGTAA", "ACGTACGTAA", "TTTTGGGGCC"], "label": ["0", "1", "0"]})
    report = leakage_report({"train": train, "test": frame(["CCCCAAAAGG"])})
    assert report["splits"]["train"]["duplicate_rows"] == 1
    assert report["splits"]["train"]["conflicting_label_sequences"] == 1


def test_disjoint_random_sets_have_no_leakage():
    report = leakage_report({"train": frame(random_sequences(500, 70, seed=5)),
                             "test": frame(random_sequences(100, 70, seed=6))})
    assert report["pairs"]["train-test"]["leaked_rows"] == {"test": 0}


def test_sampling_is_reported():
    report = leakage_report({"train": frame(random_sequences(200, 50, seed=7)), "test": frame(random_sequences(20, 50, seed=8))},
                            max_rows_per_split=100)
    assert report["sampled"] == {"train": {"used": 100, "total": 200}}
    assert "SAMPLED: train 100 of 200 rows" in format_leakage_report(report)


def test_identity_to_jaccard_is_monotone():
    assert identity_to_jaccard(1.0, 4) == 1.0
    assert identity_to_jaccard(0.5, 4) < identity_to_jaccard(0.9, 4) < 1.0


def test_cluster_split_keeps_planted_clusters_together():
    rng = np.random.default_rng(0)
    seeds = random_sequences(40, 120, seed=11, letters=AMINO)
    rows = []
    for cluster, parent in enumerate(seeds):  # 4 members per family at ~85-90 % identity to the parent
        for _ in range(4):
            changed = rng.choice(120, size=int(rng.integers(12, 18)), replace=False).tolist()
            rows.append({"sequence": mutate(parent, changed, AMINO), "label": "x", "family": cluster})
    parts = cluster_split(pd.DataFrame(rows), identity=0.5, fractions=(0.6, 0.2, 0.2), seed=0)
    split_of_family = pd.concat([p.assign(split=n) for n, p in parts.items()]).groupby("family")["split"].nunique()
    assert (split_of_family == 1).all()
    assert {n: len(p) for n, p in parts.items()} == {"train": 96, "dev": 32, "test": 32}
    assert all("cluster" in p.columns for p in parts.values())


def test_cluster_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        cluster_split(frame(["ACGT"]), fractions=(0.8, 0.3, 0.1))


@pytest.mark.data
def test_gue_prom_core_all_exact_overlap_matches_its_readme():
    from gr_ft.config import DataConfig
    from gr_ft.data import load_splits

    splits = load_splits(DataConfig(path=str(shared_data("promoter/gue_prom_core_all"))), "dna")
    report = leakage_report(splits)
    shared = {pair: entry["exact_shared_sequences"] for pair, entry in report["pairs"].items()}
    assert shared == {"train-dev": 54, "train-test": 42, "dev-test": 8}  # README "Identical sequences shared"
    assert report["seconds"] < 60
