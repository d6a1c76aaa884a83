"""Tests for gr_ft.synthetic: determinism, shapes, planted grammar, learnability."""

from __future__ import annotations

import gzip
import itertools
import re

import numpy as np
import pandas as pd
import pytest

from gr_ft import synthetic
from gr_ft.synthetic import (
    CELL_TYPE_TFS,
    ENHANCER_TF_CONSENSUS,
    ENHANCER_TF_MOTIFS,
    LOCALIZATION_CLASSES,
    MOTIF_CONSENSUS,
    MOTIFS,
    SYNTHETIC_TASKS,
    make_task,
    write_task,
)

DNA_TASKS = ("promoter", "tf_binding", "cell_type", "cell_type_panel", "splice", "splice_positions")
PROTEIN_TASKS = ("ptm", "localization")
AMINO_ACIDS = set("ACDEFGHIKLMNPQRSTVWY")
IUPAC_CLASSES = {"R": "[AG]", "Y": "[CT]", "S": "[CG]", "W": "[AT]", "K": "[GT]", "M": "[AC]", "N": "[ACGT]"}
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def iupac_regex(consensus: str) -> str:
    return "".join(IUPAC_CLASSES.get(code, code) for code in consensus)


def count_sites(sequence: str, consensus: str, max_mismatches: int | None = None) -> int:
    """Matches of an IUPAC consensus on either strand; by default 1 mismatch for 8+ bp motifs."""
    if max_mismatches is None:
        max_mismatches = 1 if len(consensus) >= 8 else 0
    allowed = np.array([[base in re.sub("[][]", "", IUPAC_CLASSES.get(c, c)) for base in "ACGT"] for c in consensus])
    total = 0
    for strand in (sequence, sequence.translate(COMPLEMENT)[::-1]):
        idx = np.array(["ACGT".index(b) for b in strand])
        windows = np.lib.stride_tricks.sliding_window_view(idx, len(consensus))  # positions, motif length
        matched = allowed[np.arange(len(consensus)), windows].sum(axis=1)
        total += int((matched >= len(consensus) - max_mismatches).sum())
    return total


def count_site_loci(sequences: pd.Series, consensus: str) -> np.ndarray:
    """Per sequence (all of one length): places where a consensus matches on either strand, with the mismatches
    count_sites allows; a palindromic site is counted once, not once per strand."""
    max_mismatches = 1 if len(consensus) >= 8 else 0
    allowed = np.array([[base in re.sub("[][]", "", IUPAC_CLASSES.get(c, c)) for base in "ACGT"] for c in consensus])
    lookup = np.zeros(256, dtype=np.int64)
    lookup[np.frombuffer(b"ACGT", dtype=np.uint8)] = np.arange(4)
    idx = lookup[np.frombuffer("".join(sequences).encode(), dtype=np.uint8).reshape(len(sequences), -1)]  # N, L
    positions = idx.shape[1] - len(consensus) + 1
    hits = np.zeros((len(sequences), positions), dtype=bool)
    for strand, flip in ((idx, False), ((3 - idx)[:, ::-1], True)):
        matched = sum(allowed[j][strand[:, j : j + positions]].astype(int) for j in range(len(consensus)))  # N, P
        matched = matched >= len(consensus) - max_mismatches
        hits |= matched[:, ::-1] if flip else matched  # reverse-strand window i starts at forward L - m - i
    return hits.sum(axis=1)


def gc_content(sequence: str) -> float:
    return (sequence.count("G") + sequence.count("C")) / len(sequence)


# ---------------------------------------------------------------- general properties


@pytest.mark.parametrize("name", sorted(SYNTHETIC_TASKS))
def test_same_seed_same_frame_other_seed_differs(name):
    first = make_task(name, 24, seed=3)
    pd.testing.assert_frame_equal(first, make_task(name, 24, seed=3))
    assert not first.equals(make_task(name, 24, seed=4))


@pytest.mark.parametrize("name", DNA_TASKS)
def test_dna_tasks_have_fixed_length_and_acgt_alphabet(name):
    length_bp = 300 if name == "splice_positions" else 120
    frame = make_task(name, 30, seed=1, length_bp=length_bp)
    assert (frame.sequence.str.len() == length_bp).all()
    assert set("".join(frame.sequence)) == set("ACGT")


@pytest.mark.parametrize("name", PROTEIN_TASKS)
def test_protein_tasks_use_the_twenty_amino_acids(name):
    frame = make_task(name, 60, seed=1)
    assert set("".join(frame.sequence)) <= AMINO_ACIDS
    assert len(set("".join(frame.sequence))) >= 18


@pytest.mark.parametrize(
    ("name", "n_classes"), [("promoter", 2), ("tf_binding", 2), ("splice", 3), ("localization", 6)]
)
def test_classes_are_balanced(name, n_classes):
    counts = make_task(name, 61, seed=2).label.value_counts()
    assert len(counts) == n_classes
    assert counts.max() - counts.min() <= 1


def test_pwms_are_probability_matrices_matching_their_consensus():
    for name, pwm in MOTIFS.items():
        assert pwm.shape == (len(MOTIF_CONSENSUS[name]), 4)
        np.testing.assert_allclose(pwm.sum(axis=1), 1.0)
        assert (pwm > 0).all(), f"{name} needs a pseudo-count"
    assert MOTIFS["AP1"][0].argmax() == 3  # T of TGASTCA


def test_sampled_sites_mostly_match_consensus_but_vary():
    rng = np.random.default_rng(0)
    sites = [synthetic.sample_site(MOTIFS["CTCF"], rng) for _ in range(300)]
    exact = np.mean([re.fullmatch(iupac_regex(MOTIF_CONSENSUS["CTCF"]), s) is not None for s in sites])
    assert 0.2 < exact < 0.9
    assert len(set(sites)) > 100


def test_unknown_names_raise_and_list_choices():
    with pytest.raises(ValueError, match=r"choose one of \['cell_type'"):
        make_task("enhancer", 10)
    with pytest.raises(ValueError, match="CTCF"):
        synthetic.tf_binding_sequences(10, tf="Sox2")
    with pytest.raises(ValueError, match="HepG2"):
        synthetic.cell_type_sequences(10, cell_types=["liver"])
    with pytest.raises(ValueError, match="length_bp"):
        synthetic.promoter_sequences(10, length_bp=30)


# ---------------------------------------------------------------- planted grammar


def test_promoter_positives_have_tata_near_minus_30_and_negatives_rarely():
    frame = synthetic.promoter_sequences(400, length_bp=100, seed=5)
    window = frame.sequence.str[100 - 56 : 100 - 46 + 6]  # TATA starts 46-56 bp from the 3' end
    has_tata = window.str.contains("TATA[AT]A")
    assert has_tata[frame.label == 1].mean() > 0.6
    assert has_tata[frame.label == 0].mean() < 0.05


def test_promoter_decoys_put_tata_elsewhere():
    frame = synthetic.promoter_sequences(1000, seed=5)
    negatives = frame.sequence[frame.label == 0]
    anywhere = negatives.str.contains("TATA[AT]A")
    near_minus_30 = negatives.str[44:62].str.contains("TATA[AT]A")
    assert anywhere.mean() > 0.08  # decoys exist...
    assert near_minus_30.sum() / anywhere.sum() < 0.06  # ...but not at -30 (chance hits only)


def test_promoter_gc_content_matches_between_classes():
    frame = synthetic.promoter_sequences(400, seed=6)
    gc = frame.sequence.map(gc_content)
    assert abs(gc[frame.label == 1].mean() - gc[frame.label == 0].mean()) < 0.02


def test_tf_binding_positives_hold_the_site_on_either_strand():
    frame = synthetic.tf_binding_sequences(300, tf="CTCF", seed=7)
    consensus = MOTIF_CONSENSUS["CTCF"]
    has_site = frame.sequence.map(lambda s: count_sites(s, consensus, max_mismatches=2) > 0)
    assert has_site[frame.label == 1].mean() > 0.85
    assert has_site[frame.label == 0].mean() < 0.05
    forward = frame.sequence.str.contains(iupac_regex(consensus[:8]))
    reverse = frame.sequence.map(lambda s: s.translate(COMPLEMENT)[::-1]).str.contains(iupac_regex(consensus[:8]))
    assert 0.2 < forward[frame.label == 1].mean() < 0.45  # about half of the sites are on each strand
    assert 0.2 < (reverse & ~forward)[frame.label == 1].mean() < 0.45


def test_tf_binding_gc_matched_negatives_carry_the_sites_composition_but_no_site():
    plain = synthetic.make_task("tf_binding", 3000, seed=7)
    matched = synthetic.make_task("tf_binding_gc_matched", 3000, seed=7)

    def gc_gap(frame):
        gc = frame.sequence.map(gc_content)
        return gc[frame.label == 1].mean() - gc[frame.label == 0].mean()

    assert gc_gap(plain) > 0.03  # the GC-rich CTCF site raises the positives' GC...
    assert abs(gc_gap(matched)) < 0.005  # ...unless each negative carries its shuffled bases
    has_site = matched.sequence.map(lambda s: count_sites(s, MOTIF_CONSENSUS["CTCF"], max_mismatches=2) > 0)
    assert has_site[matched.label == 1].mean() > 0.85 and has_site[matched.label == 0].mean() < 0.05


def test_cell_type_labels_follow_active_tf_sites():
    frame = synthetic.cell_type_sequences(800, seed=8)
    assert set(frame.columns) == {"sequence", "label", "cell_type"}
    for cell_type, group in frame.groupby("cell_type"):
        assert abs(group.label.mean() - 0.5) < 0.02
        consensuses = [MOTIF_CONSENSUS[tf] for tf in CELL_TYPE_TFS[cell_type]]
        active = group.sequence.map(lambda s: sum(count_sites(s, c) for c in consensuses))
        assert active[group.label == 1].mean() > active[group.label == 0].mean() + 1.0, cell_type
        assert (active[group.label == 1] >= 2).mean() > 0.7 > 0.35 > (active[group.label == 0] >= 2).mean()


def test_cell_type_negatives_include_enhancers_of_other_cell_types():
    frame = synthetic.cell_type_sequences(400, cell_types=["HepG2"], seed=9)
    negatives = frame.sequence[frame.label == 0]
    gata_or_ets = negatives.map(lambda s: count_sites(s, "WGATAR") + count_sites(s, "CCGGAAGT"))
    assert (frame.cell_type == "HepG2").all()
    assert (gata_or_ets > 0).mean() > 0.2


# ---------------------------------------------------------------- a panel of cell types over shared motifs


def test_cell_type_panel_is_seeded_distinct_small_tf_combinations():
    panel = synthetic.cell_type_panel(24, seed=3)
    assert panel == synthetic.cell_type_panel(24, seed=3) != synthetic.cell_type_panel(24, seed=4)
    assert list(panel) == [f"cell{i:02d}" for i in range(1, 25)]
    assert len(set(panel.values())) == 24  # no two cell types share a TF combination
    assert all(2 <= len(tfs) <= 3 and len(set(tfs)) == len(tfs) for tfs in panel.values())
    assert set().union(*panel.values()) <= set(ENHANCER_TF_CONSENSUS)
    assert len(synthetic.cell_type_panel(100, seed=0)) == 100 and list(synthetic.cell_type_panel(100))[-1] == "cell100"


def test_cell_type_panel_rejects_impossible_requests():
    with pytest.raises(ValueError, match="distinct TF subsets"):
        synthetic.cell_type_panel(5, pool=["AP1", "GATA", "ETS"])  # only 3 pairs + 1 triple
    with pytest.raises(ValueError, match="choose one of"):
        synthetic.cell_type_panel(2, pool=["AP1", "GATA", "Sox2"])
    with pytest.raises(ValueError, match="n_cell_types"):
        synthetic.cell_type_panel(0)
    with pytest.raises(ValueError, match="cell01"):
        synthetic.cell_type_panel_sequences(10, cell_types=["HepG2"])


def test_default_panel_held_out_cell_types_reuse_meta_train_motifs_in_new_combinations():
    """The split benchmarks/fewshot_curves.py uses: cell16-cell20 held out, every one of their TFs meta-trained on."""
    panel = synthetic.cell_type_panel()
    held_out = ["cell16", "cell17", "cell18", "cell19", "cell20"]
    seen = set().union(*(panel[c] for c in panel if c not in held_out))
    assert all(set(panel[c]) <= seen for c in held_out)
    assert not {panel[c] for c in held_out} & {panel[c] for c in panel if c not in held_out}


def test_pool_motifs_are_pwms_of_their_consensus_and_reuse_the_named_ones():
    assert len(ENHANCER_TF_MOTIFS) == 16
    for name, pwm in ENHANCER_TF_MOTIFS.items():
        assert pwm.shape == (len(ENHANCER_TF_CONSENSUS[name]), 4)
        np.testing.assert_allclose(pwm.sum(axis=1), 1.0)
        if name in MOTIFS:
            assert pwm is MOTIFS[name]


def _active_and_other_sites(group: pd.DataFrame, active_tfs) -> tuple[pd.Series, pd.Series]:
    """Per row: site loci of the cell type's active TFs, and of the rest of the pool."""
    active = [ENHANCER_TF_CONSENSUS[tf] for tf in active_tfs]
    other = [c for tf, c in ENHANCER_TF_CONSENSUS.items() if tf not in active_tfs]
    count = lambda consensuses: pd.Series(sum(count_site_loci(group.sequence, c) for c in consensuses),  # noqa
                                          index=group.index)
    return count(active), count(other)


@pytest.mark.parametrize(("n_cell_types", "seed", "panel_seed"), [(12, 8, 0), (6, 0, 1), (6, 1, 1)])
def test_cell_type_panel_labels_follow_the_cell_types_active_tf_sites(n_cell_types, seed, panel_seed):
    """Positives hold 2-3 sites of their cell type's TFs, negatives 0-1 (plus more of the other pool TFs).

    A consensus scan finds ~50-90% of the planted sites (they are PWM samples), so the bounds have headroom
    under what is measured (active difference >= 1.2, >= 2 sites: +0.48 or more; seeds of the parameters).
    Two row seeds of one panel_seed check that the panel, not the rows' seed, decides which TFs are active.
    """
    frame = synthetic.cell_type_panel_sequences(100 * n_cell_types, n_cell_types, seed=seed, panel_seed=panel_seed)
    panel = synthetic.cell_type_panel(n_cell_types, seed=panel_seed)
    assert set(frame.columns) == {"sequence", "label", "cell_type"}
    assert sorted(frame.cell_type.unique()) == sorted(panel)
    for cell_type, group in frame.groupby("cell_type"):
        assert abs(group.label.mean() - 0.5) < 0.02
        active, other = _active_and_other_sites(group, panel[cell_type])
        positive, negative = group.label == 1, group.label == 0
        assert active[positive].mean() > active[negative].mean() + 1.0, cell_type
        assert (active[positive] >= 2).mean() > (active[negative] >= 2).mean() + 0.3, cell_type
        assert other[positive].mean() < other[negative].mean() + 0.5, cell_type  # other TFs' sites do not mark it


def test_splice_windows_centre_on_gt_or_ag_with_context():
    frame = synthetic.splice_windows(300, length_bp=400, seed=10)
    centre = 200
    donors, acceptors, nones = (frame.sequence[frame.label == k] for k in ("donor", "acceptor", "none"))
    assert (donors.str[centre : centre + 2] == "GT").all()
    assert (acceptors.str[centre - 2 : centre] == "AG").all()
    pyrimidines = lambda seqs: seqs.str[centre - 16 : centre - 2].map(lambda s: (s.count("C") + s.count("T")) / 14)
    assert pyrimidines(acceptors).mean() > 0.85
    assert pyrimidines(nones).mean() < 0.65
    decoys = (nones.str[centre : centre + 2] == "GT") | (nones.str[centre - 2 : centre] == "AG")
    assert decoys.all()


def test_splice_position_labels_mark_g_of_gt_and_ag():
    frame = synthetic.splice_position_labels(40, length_bp=400, seed=11)
    for sequence, labels in zip(frame.sequence, frame.label):
        assert len(labels) == len(sequence) and set(labels) <= set("012")
        donors = [i for i, c in enumerate(labels) if c == "1"]
        acceptors = [i for i, c in enumerate(labels) if c == "2"]
        assert len(donors) == len(acceptors) >= 2
        assert all(sequence[i : i + 2] == "GT" for i in donors)
        assert all(sequence[i - 1 : i + 1] == "AG" for i in acceptors)
        assert all(a < d for a, d in zip(acceptors, donors))  # each exon: acceptor, then donor


def ptm_motifs_at_centre(window: str) -> list[str]:
    c = len(window) // 2
    checks = {
        "PKA": window[c - 3 : c - 1] == "RR" and window[c] in "ST",
        "CK2": window[c] in "ST" and window[c + 3] in "DE",
        "proline_directed": window[c] in "ST" and window[c + 1] == "P",
        "Abl": window[c - 1] in "IVL" and window[c] == "Y" and window[c + 3] in "PF",
    }
    return [name for name, hit in checks.items() if hit]


def test_ptm_windows_centre_on_sty_and_label_kinase_motifs():
    frame = synthetic.ptm_windows(1000, window=33, positive_fraction=0.08, seed=12)
    assert (frame.sequence.str.len() == 33).all()
    assert frame.sequence.str[16].isin(list("STY")).all()
    assert abs(frame.label.mean() - 0.08) < 0.005
    motifs = frame.sequence.map(ptm_motifs_at_centre)
    assert motifs[frame.label == 1].map(len).gt(0).all()
    assert motifs[frame.label == 0].map(len).eq(0).all()


def test_localization_signals_are_present_where_planted():
    frame = synthetic.localization_proteins(300, seed=13, min_len=80, max_len=300)
    assert frame.sequence.str.len().between(80, 300).all()
    assert frame.sequence.str.startswith("M").all()
    by_class = {label: group.sequence for label, group in frame.groupby("label")}
    assert set(by_class) == set(LOCALIZATION_CLASSES)
    assert by_class["Peroxisome"].str.contains("[SAC][KRH][LM]$").all()
    assert by_class["Peroxisome"].str.endswith("SKL").mean() > 0.4  # the canonical PTS1 dominates
    assert by_class["Endoplasmic.reticulum"].str.endswith("KDEL").all()
    assert by_class["Extracellular"].str[:35].str.contains("[LAVIF]{7,}").all()
    assert not by_class["Extracellular"].str.endswith("KDEL").any()
    assert by_class["Nucleus"].str.contains(r"PKKKRKV|PAAKRVKLD|KR.{10}KKKK").all()
    assert by_class["Mitochondrion"].str[1:21].map(lambda s: s.count("R") >= 3 and not re.search("[DE]", s)).all()
    cytoplasm = by_class["Cytoplasm"]
    assert not cytoplasm.str.contains("[SAC][KRH][LM]$|KDEL$").any()
    assert not cytoplasm.str[:35].str.contains("[LAVIF]{7,}").any()


# ---------------------------------------------------------------- learnability


def kmer_counts(sequences: pd.Series, ks=(3, 4)) -> np.ndarray:
    vocab = {"".join(p): i for i, p in enumerate(p for k in ks for p in itertools.product("ACGT", repeat=k))}
    counts = np.zeros((len(sequences), len(vocab)))
    for row, sequence in enumerate(sequences):
        for k in ks:
            for i in range(len(sequence) - k + 1):
                counts[row, vocab[sequence[i : i + k]]] += 1
    return counts


def test_promoter_task_is_learnable_from_kmers_but_not_from_gc():
    linear_model = pytest.importorskip("sklearn.linear_model")
    frame = synthetic.promoter_sequences(1000, seed=14)
    y, train, test = frame.label.to_numpy(), slice(0, 700), slice(700, None)
    kmers = kmer_counts(frame.sequence)
    kmer_model = linear_model.LogisticRegression(C=0.1, max_iter=2000).fit(kmers[train], y[train])
    kmer_acc = kmer_model.score(kmers[test], y[test])
    gc = frame.sequence.map(gc_content).to_numpy()[:, None]
    gc_acc = linear_model.LogisticRegression().fit(gc[train], y[train]).score(gc[test], y[test])
    assert kmer_acc > 0.68
    assert gc_acc < 0.6
    assert kmer_acc - gc_acc > 0.12


# ---------------------------------------------------------------- files


def test_write_task_writes_gzip_csv_splits_atomically(tmp_path):
    out = write_task("splice", tmp_path / "splice", n_train=12, n_dev=6, n_test=6, seed=1)
    assert sorted(p.name for p in out.iterdir()) == ["dev.csv.gz", "test.csv.gz", "train.csv.gz"]
    with gzip.open(out / "train.csv.gz", "rt") as handle:
        assert handle.readline().strip() == "sequence,label"
    frames = {split: pd.read_csv(out / f"{split}.csv.gz") for split in ("train", "dev", "test")}
    assert [len(f) for f in frames.values()] == [12, 6, 6]
    assert set(frames["dev"].sequence).isdisjoint(frames["test"].sequence)  # different seeds
    pd.testing.assert_frame_equal(frames["train"], make_task("splice", 12, seed=synthetic.split_seed(1, "train")))


def test_write_task_is_reproducible_byte_for_byte(tmp_path):
    first = write_task("ptm", tmp_path / "a", n_train=20, n_dev=5, n_test=5)
    second = write_task("ptm", tmp_path / "b", n_train=20, n_dev=5, n_test=5)
    assert (first / "train.csv.gz").read_bytes() == (second / "train.csv.gz").read_bytes()


def test_write_task_cell_type_makes_one_folder_per_cell_type(tmp_path):
    out = write_task("cell_type", tmp_path / "ct", n_train=40, n_dev=8, n_test=8, length_bp=120)
    assert sorted(p.name for p in out.iterdir()) == sorted(CELL_TYPE_TFS)
    hepg2 = pd.read_csv(out / "HepG2" / "train.csv.gz")
    assert list(hepg2.columns) == ["sequence", "label", "cell_type"]
    assert (hepg2.cell_type == "HepG2").all() and len(hepg2) == 10
    assert not list(tmp_path.rglob("*.tmp"))


def test_write_task_cell_type_panel_makes_one_folder_per_panel_cell_type(tmp_path):
    out = write_task("cell_type_panel", tmp_path / "panel", n_train=80, n_dev=8, n_test=8, length_bp=120,
                     n_cell_types=4)
    assert sorted(p.name for p in out.iterdir()) == ["cell01", "cell02", "cell03", "cell04"]
    train = pd.read_csv(out / "cell03" / "train.csv.gz")
    assert (train.cell_type == "cell03").all() and len(train) == 20 and train.label.sum() == 10


def test_meta_tasks_synthetic_cell_type_panel_are_the_panel_cell_types():
    from gr_ft.config import load_config
    from gr_ft.meta.config import MetaTrainConfig
    from gr_ft.meta.recipe import load_tasks

    cfg = load_config(MetaTrainConfig, None, ["meta.tasks=synthetic:cell_type_panel", "meta.synthetic_size=80",
                                              "meta.synthetic_length_bp=60"])
    tasks = load_tasks(cfg, "train")
    assert tasks.names == sorted(synthetic.cell_type_panel())
    assert all(sorted(tasks[name].label) == ["0", "0", "1", "1"] for name in tasks.names)
    with pytest.raises(ValueError, match="synthetic:cell_type_panel"):
        load_config(MetaTrainConfig, None, ["meta.tasks=synthetic:cell_panel"])
