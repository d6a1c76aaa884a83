"""Synthetic regulatory sequences with a known, planted grammar.

gr-ft's default job trains on these so it needs no download. Every generator is
deterministic given ``seed`` (``numpy.random.default_rng``) and returns a DataFrame
with upper-case ``sequence`` and a ``label`` column (plus ``cell_type`` where noted).
Sites are sampled from position weight matrices built from published IUPAC consensus
strings, with a small pseudo-count so that no two planted sites are quite alike.

Example:
    >>> df = make_task("promoter", n=100, seed=0)
    >>> df.columns.tolist(), int(df.label.sum())
    (['sequence', 'label'], 50)
"""

from __future__ import annotations

import functools
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd

from .utils import check_output_folder

__all__ = [
    "CELL_TYPE_TASKS",
    "CELL_TYPE_TFS",
    "ENHANCER_TF_CONSENSUS",
    "ENHANCER_TF_MOTIFS",
    "KINASE_MOTIFS",
    "LOCALIZATION_CLASSES",
    "MOTIFS",
    "MOTIF_CONSENSUS",
    "SPLICE_CLASSES",
    "SPLITS",
    "SYNTHETIC_TASKS",
    "cell_type_panel",
    "cell_type_panel_sequences",
    "cell_type_sequences",
    "localization_proteins",
    "make_task",
    "promoter_sequences",
    "ptm_windows",
    "pwm_from_consensus",
    "sample_site",
    "splice_position_labels",
    "splice_windows",
    "split_seed",
    "tf_binding_sequences",
    "write_task",
]

DNA_ALPHABET = "ACGT"
PSEUDO_COUNT = 0.03  # per base, on a scale where a fixed consensus base counts 1
_DNA_BYTES = np.frombuffer(DNA_ALPHABET.encode(), dtype=np.uint8)
_IUPAC = {
    "A": "A", "C": "C", "G": "G", "T": "T", "R": "AG", "Y": "CT", "S": "CG", "W": "AT",
    "K": "GT", "M": "AC", "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG", "N": "ACGT",
}  # fmt: skip

# ---------------------------------------------------------------- motifs and PWMs

MOTIF_CONSENSUS: dict[str, str] = {
    # TATA box, bound by TBP ~30 bp upstream of the TSS (Bucher 1990, J Mol Biol 212:563)
    "TATA": "TATAWAWR",
    # Initiator spanning the TSS, A = +1 (Javahery et al. 1994, Mol Cell Biol 14:116)
    "Inr": "YYANWYY",
    # CCAAT box bound by NF-Y, ~-60..-100 (Bucher 1990; Mantovani 1998, NAR 26:1135)
    "CCAAT": "RRCCAATSR",
    # GC box bound by SP1 (Kadonaga et al. 1986, TIBS 11:20)
    "SP1": "GGGGCGGGG",
    # CTCF core motif (Kim et al. 2007, Cell 128:1231)
    "CTCF": "CCGCGNGGNGGCAG",
    # AP-1 / TPA-responsive element (Angel et al. 1987, Cell 49:729)
    "AP1": "TGASTCA",
    # CREB / cAMP-responsive element (Montminy et al. 1986, PNAS 83:6682)
    "CREB": "TGACGTCA",
    # GATA factors (Merika & Orkin 1993, Mol Cell Biol 13:3999)
    "GATA": "WGATAR",
    # HNF4A DR1 half-site core (Fang et al. 2012, NAR 40:5343)
    "HNF4A": "CAAAGKYCA",
    # NF-kB (Sen & Baltimore 1986, Cell 46:705; GGGRNWYYCC with the common TTT core)
    "NFKB": "GGGRNTTTCC",
    # FOXA forkhead core (Overdier et al. 1994, Mol Cell Biol 14:2755)
    "FOXA": "TGTTTAC",
    # ETS class I, GGAA core (Wei et al. 2010, EMBO J 29:2147)
    "ETS": "CCGGAAGT",
}


def pwm_from_consensus(consensus: str, pseudo_count: float = PSEUDO_COUNT) -> np.ndarray:
    """(L, 4) probabilities over ACGT from an IUPAC consensus, plus a pseudo-count.

    >>> pwm_from_consensus("TGASTCA").shape
    (7, 4)
    """
    if pseudo_count < 0:
        raise ValueError(f"pseudo_count must be >= 0, got {pseudo_count}")
    rows = []
    for code in consensus.upper():
        if code not in _IUPAC:
            raise ValueError(f"{code!r} in {consensus!r} is not an IUPAC code; use {''.join(_IUPAC)}")
        allowed = _IUPAC[code]
        rows.append([1.0 / len(allowed) if base in allowed else 0.0 for base in DNA_ALPHABET])
    counts = np.asarray(rows) + pseudo_count  # L, 4
    pwm = counts / counts.sum(axis=1, keepdims=True)
    pwm.setflags(write=False)
    return pwm


MOTIFS: dict[str, np.ndarray] = {name: pwm_from_consensus(c) for name, c in MOTIF_CONSENSUS.items()}

# Splice sites: the GT and AG dinucleotides are invariant, so they get no pseudo-count.
# Donor MAG|GURAGU, acceptor (Y)n N Y AG|G (Mount 1982, NAR 10:459).
_DONOR_PWM = np.vstack([pwm_from_consensus("MAG"), pwm_from_consensus("GT", 0.0), pwm_from_consensus("RAGT")])
_DONOR_G_INDEX = 3  # the G of GT; the exon ends just before it
_ACCEPTOR_PWM = np.vstack(
    [pwm_from_consensus("YYYYYYYYYYYYNY"), pwm_from_consensus("AG", 0.0), pwm_from_consensus("G")]
)
_ACCEPTOR_G_INDEX = 15  # the G of AG; the exon starts just after it


def _sample_site_idx(pwm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One site drawn from ``pwm`` as base indices (0..3 = ACGT)."""
    draws = rng.random(len(pwm))[:, None]  # L, 1
    idx = (draws >= np.cumsum(pwm, axis=1)).sum(axis=1)  # inverse-CDF per position
    return np.minimum(idx, 3).astype(np.uint8)


def sample_site(pwm: np.ndarray, rng: np.random.Generator) -> str:
    """Draw one binding site (a DNA string) from a (L, 4) ACGT probability matrix.

    >>> len(sample_site(MOTIFS["CTCF"], np.random.default_rng(0)))
    14
    """
    pwm = np.asarray(pwm, dtype=float)
    if pwm.ndim != 2 or pwm.shape[1] != 4:
        raise ValueError(f"pwm must have shape (L, 4) over ACGT, got {pwm.shape}")
    return _decode_dna(_sample_site_idx(pwm, rng))


# ---------------------------------------------------------------- DNA helpers


def _decode_dna(idx: np.ndarray) -> str:
    return _DNA_BYTES[idx].tobytes().decode("ascii")


def _base_probs(gc: float) -> np.ndarray:
    return np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])


def _random_dna(length_bp: int, rng: np.random.Generator, gc: float = 0.5) -> np.ndarray:
    return rng.choice(4, size=length_bp, p=_base_probs(gc)).astype(np.uint8)


def _jittered_gc(gc: float, rng: np.random.Generator, jitter: float = 0.05) -> float:
    """Per-sequence GC fraction, like isochores: a mean plus uniform jitter."""
    return float(np.clip(gc + rng.uniform(-jitter, jitter), 0.05, 0.95))


def _gc_fraction(seq: np.ndarray) -> float:
    return float(np.isin(seq, (1, 2)).mean())


def _reverse_complement(idx: np.ndarray) -> np.ndarray:
    return (3 - idx[::-1]).astype(np.uint8)


def _plant(seq: np.ndarray, site: np.ndarray, start: int) -> None:
    assert 0 <= start and start + len(site) <= len(seq), (start, len(site), len(seq))
    seq[start : start + len(site)] = site


def _nonoverlapping_starts(lengths: Sequence[int], length_bp: int, rng: np.random.Generator) -> list[int]:
    """Uniform random non-overlapping start positions for intervals of ``lengths``."""
    free = length_bp - int(np.sum(lengths))
    if free < 0:
        raise ValueError(f"length_bp={length_bp} is too short for sites of total length {sum(lengths)}")
    gaps = np.sort(rng.integers(0, free + 1, size=len(lengths)))  # free bases before each slot
    starts, offset = [0] * len(lengths), 0
    for slot, i in enumerate(rng.permutation(len(lengths))):
        starts[i] = int(gaps[slot]) + offset
        offset += int(lengths[i])
    return starts


def _sequence_with_sites(
    names: Iterable[str], length_bp: int, gc: float, rng: np.random.Generator, motifs: dict[str, np.ndarray] = MOTIFS,
    shuffled: Iterable[str] = (),
) -> str:
    """Background DNA holding one sampled site per TF name (a key of ``motifs``), each on a random strand, and one
    sampled site per name in ``shuffled`` with its bases shuffled (the site's composition without the motif)."""
    seq = _random_dna(length_bp, rng, gc)
    sites = [_sample_site_idx(motifs[name], rng) for name in names]
    sites += [rng.permutation(_sample_site_idx(motifs[name], rng)) for name in shuffled]
    sites = [_reverse_complement(s) if rng.random() < 0.5 else s for s in sites]
    for site, start in zip(sites, _nonoverlapping_starts([len(s) for s in sites], length_bp, rng)):
        _plant(seq, site, start)
    return _decode_dna(seq)


# ---------------------------------------------------------------- validation


def _check_at_least(name: str, value: int, minimum: int) -> None:
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_choice(name: str, value: str, choices: Iterable[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {sorted(choices)}")


def _balanced_labels(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Class indices 0..n_classes-1 whose counts differ by at most one, shuffled."""
    return rng.permutation(np.arange(n) % n_classes)


# ---------------------------------------------------------------- promoters


class PromoterElement(NamedTuple):
    start_rel_tss: int
    """Start of the element relative to the TSS (A of Inr = 0)."""
    jitter_bp: int
    """Uniform +- jitter around that start."""
    probability: float
    """Chance that a promoter carries the element."""


# Positional preferences in core promoters (Smale & Kadonaga 2003, Annu Rev Biochem 72:449).
PROMOTER_ELEMENTS: dict[str, PromoterElement] = {
    "CCAAT": PromoterElement(-69, 4, 0.5),
    "SP1": PromoterElement(-52, 3, 0.5),
    "TATA": PromoterElement(-31, 2, 1.0),
    "Inr": PromoterElement(-2, 0, 1.0),  # the A of YYANWYY sits on the TSS
}
PROMOTER_TSS_FROM_3PRIME_BP = 20
PROMOTER_TSS_JITTER_BP = 3
PROMOTER_GC = 0.56  # promoters are GC-richer than bulk DNA
PROMOTER_MIN_LENGTH_BP = 60
_DECOY_MIN_SHIFT_BP = 10  # decoys sit at least this far beyond the element's jitter window
_DECOY_MOTIFS = ("TATA", "TATA", "TATA", "Inr", "SP1", "CCAAT")  # TATA decoys are the hard ones


def _sample_tss(length_bp: int, rng: np.random.Generator) -> int:
    jitter = rng.integers(-PROMOTER_TSS_JITTER_BP, PROMOTER_TSS_JITTER_BP + 1)
    return int(length_bp - PROMOTER_TSS_FROM_3PRIME_BP + jitter)


def _promoter_positive(length_bp: int, rng: np.random.Generator) -> np.ndarray:
    """GC-rich background with TATA at -30, Inr at the TSS, optional GC and CCAAT boxes."""
    tss = _sample_tss(length_bp, rng)
    seq = _random_dna(length_bp, rng, _jittered_gc(PROMOTER_GC, rng))
    for name, element in PROMOTER_ELEMENTS.items():
        if rng.random() >= element.probability:
            continue
        start = tss + element.start_rel_tss + int(rng.integers(-element.jitter_bp, element.jitter_bp + 1))
        if 0 <= start <= length_bp - len(MOTIFS[name]):
            _plant(seq, _sample_site_idx(MOTIFS[name], rng), start)
    return seq


def _promoter_negative(length_bp: int, gc: float, decoy_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Background at ``gc``; some carry one promoter element away from its usual place."""
    seq = _random_dna(length_bp, rng, _jittered_gc(gc, rng))
    if rng.random() < decoy_fraction:
        name = _DECOY_MOTIFS[rng.integers(len(_DECOY_MOTIFS))]
        element = PROMOTER_ELEMENTS[name]
        usual = _sample_tss(length_bp, rng) + element.start_rel_tss
        starts = np.arange(length_bp - len(MOTIFS[name]) + 1)
        wrong = starts[np.abs(starts - usual) > element.jitter_bp + _DECOY_MIN_SHIFT_BP]
        _plant(seq, _sample_site_idx(MOTIFS[name], rng), int(rng.choice(wrong)))
    return seq


def promoter_sequences(n: int, length_bp: int = 100, seed: int = 0, decoy_fraction: float = 0.3) -> pd.DataFrame:
    """Balanced promoter (1) vs background (0) sequences; the TSS sits ~20 bp from the 3' end.

    Positives: TATA box at -31 +- 2, Inr on the TSS, optional GC box (-52) and CCAAT box
    (-69), on a GC-richer background. Negatives: background with the positives' mean GC
    content; ``decoy_fraction`` of them carry a single element at a wrong position.

    >>> promoter_sequences(4, seed=0).shape
    (4, 2)
    """
    _check_at_least("n", n, 1)
    _check_at_least("length_bp", length_bp, PROMOTER_MIN_LENGTH_BP)
    if not 0 <= decoy_fraction <= 1:
        raise ValueError(f"decoy_fraction must be in [0, 1], got {decoy_fraction}")
    rng = np.random.default_rng(seed)
    labels = _balanced_labels(n, 2, rng)
    positives = [_promoter_positive(length_bp, rng) for _ in range(int(labels.sum()))]
    gc = float(np.mean([_gc_fraction(s) for s in positives])) if positives else PROMOTER_GC
    negatives = [_promoter_negative(length_bp, gc, decoy_fraction, rng) for _ in range(n - len(positives))]
    pools = {1: iter(positives), 0: iter(negatives)}
    sequences = [_decode_dna(next(pools[int(label)])) for label in labels]
    return pd.DataFrame({"sequence": sequences, "label": labels.astype(int)})


# ---------------------------------------------------------------- TF binding


def tf_binding_sequences(
    n: int, tf: str = "CTCF", length_bp: int = 101, seed: int = 0, other_site_prob: float = 0.5,
    gc_matched: bool = False,
) -> pd.DataFrame:
    """Balanced sequences that hold (1) or lack (0) one sampled site of ``tf``.

    The site goes at a random position, reverse-complemented half the time. Both classes
    carry, with ``other_site_prob``, one site of another TF, so presence of *a* motif is
    not enough. ``gc_matched``: each negative carries a shuffled site of ``tf`` instead (its
    bases in random order), so base composition does not tell the classes apart (a GC-rich
    site such as CTCF's otherwise raises every positive's GC; task ``tf_binding_gc_matched``).
    Choices for ``tf``: the keys of ``MOTIFS``.

    >>> tf_binding_sequences(4, tf="GATA", seed=0).label.tolist().count(1)
    2
    """
    _check_at_least("n", n, 1)
    _check_choice("tf", tf, MOTIFS)
    _check_at_least("length_bp", length_bp, 2 * max(len(pwm) for pwm in MOTIFS.values()))
    rng = np.random.default_rng(seed)
    others = [name for name in MOTIFS if name not in (tf, "Inr")]  # Inr is too degenerate to count
    labels = _balanced_labels(n, 2, rng)
    sequences = []
    for label in labels:
        names = [tf] if label else []
        if rng.random() < other_site_prob:
            names.append(others[rng.integers(len(others))])
        shuffled = [tf] if gc_matched and not label else []
        sequences.append(_sequence_with_sites(names, length_bp, _jittered_gc(0.5, rng), rng, shuffled=shuffled))
    return pd.DataFrame({"sequence": sequences, "label": labels.astype(int)})


# ---------------------------------------------------------------- cell-type enhancers

# TFs whose sites drive enhancers in each cell type (ENCODE-style caricature):
# HepG2 liver: HNF4A, FOXA, CREB; K562 erythroleukemia: GATA1, AP-1 (NF-E2-like);
# GM12878 B lymphoblastoid: NF-kB, ETS (PU.1); HeLa cervical carcinoma: AP-1, SP1.
CELL_TYPE_TFS: dict[str, tuple[str, ...]] = {
    "HepG2": ("HNF4A", "FOXA", "CREB"),
    "K562": ("GATA", "AP1"),
    "GM12878": ("NFKB", "ETS"),
    "HeLa": ("AP1", "SP1"),
}
_ENHANCER_TFS = tuple(sorted({tf for tfs in CELL_TYPE_TFS.values() for tf in tfs}))


def _enhancer_site_names(
    active: Sequence[str], pool: Sequence[str], label: int, rng: np.random.Generator
) -> list[str]:
    """Positives: 2-3 active sites + 0-1 inactive; negatives: 0-1 active + 0-2 inactive (TFs of ``pool``)."""
    inactive = [tf for tf in pool if tf not in active]
    n_active = rng.integers(2, 4) if label else rng.integers(0, 2)
    n_inactive = rng.integers(0, 2) if label else rng.integers(0, 3)
    names = [active[i] for i in rng.integers(len(active), size=n_active)]
    return names + [inactive[i] for i in rng.integers(len(inactive), size=n_inactive)]


def cell_type_sequences(
    n: int, cell_types: Sequence[str] | None = None, length_bp: int = 200, seed: int = 0
) -> pd.DataFrame:
    """Enhancers active (1) or not (0) in a cell type; columns sequence, label, cell_type.

    Label 1 means the sequence holds >= 2 sites of TFs active in that row's cell type
    (``CELL_TYPE_TFS``); negatives hold at most one such site, plus sites of TFs active only
    elsewhere. ``n`` rows are spread evenly over cell types, balanced within each.

    >>> sorted(cell_type_sequences(8, seed=0).cell_type.unique())
    ['GM12878', 'HeLa', 'HepG2', 'K562']
    """
    return _enhancer_frame(n, CELL_TYPE_TFS, cell_types, length_bp, seed=seed, pool=_ENHANCER_TFS, motifs=MOTIFS)


def _enhancer_frame(n: int, active_tfs: dict[str, tuple[str, ...]], cell_types: Sequence[str] | None,
                    length_bp: int, *, seed: int, pool: Sequence[str], motifs: dict[str, np.ndarray]) -> pd.DataFrame:
    """Rows of enhancers labelled per cell type (``active_tfs``: cell type -> its active TFs of ``pool``), spread
    evenly over ``cell_types`` (default: all), balanced within each, in a seeded random order."""
    _check_at_least("n", n, 1)
    _check_at_least("length_bp", length_bp, 60)
    cell_types = list(active_tfs) if cell_types is None else list(cell_types)
    if not cell_types:
        raise ValueError("cell_types must name at least one cell type")
    for cell_type in cell_types:
        _check_choice("cell_type", cell_type, active_tfs)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        cell_type, label = cell_types[i % len(cell_types)], (i // len(cell_types)) % 2
        names = _enhancer_site_names(active_tfs[cell_type], pool, label, rng)
        rows.append((_sequence_with_sites(names, length_bp, _jittered_gc(0.45, rng), rng, motifs), label, cell_type))
    frame = pd.DataFrame(rows, columns=["sequence", "label", "cell_type"])
    return frame.iloc[rng.permutation(n)].reset_index(drop=True)


# A panel of many cell types over one pool of TFs, the way enhancer grammar is usually modelled: every cell type
# activates a small combination of TFs, the motifs themselves are shared. Cell types held out of meta-training
# then have TF combinations never seen there, made of motifs that were.
ENHANCER_TF_CONSENSUS: dict[str, str] = {
    **{tf: MOTIF_CONSENSUS[tf] for tf in ("AP1", "CREB", "ETS", "FOXA", "GATA", "HNF4A", "NFKB", "SP1")},
    # C/EBP palindrome (Osada et al. 1996, J Biol Chem 271:3891)
    "CEBP": "ATTGCGCAAT",
    # MYC/MAX E-box with its flanks (Blackwell et al. 1993, Mol Cell Biol 13:5216)
    "EBOX": "ACCACGTGGT",
    # RUNX / AML1 TGT/cGGT core (Meyers, Downing & Hiebert 1993, Mol Cell Biol 13:6336)
    "RUNX": "TGYGGTTW",
    # interferon-stimulated response element, bound by IRFs (Darnell, Kerr & Stark 1994, Science 264:1415)
    "IRF": "AGTTTCNNTTTC",
    # STAT1 gamma-activated site TTCCNGGAA (Decker, Kovarik & Meinke 1997, J Interferon Cytokine Res 17:121)
    "STAT": "TTCCNGGAA",
    # HNF1 palindrome (Tronche et al. 1997, J Mol Biol 266:231)
    "HNF1": "GTTAATNATTAAC",
    # glucocorticoid response element, inverted hexamer repeat (Beato 1989, Cell 56:335)
    "GRE": "AGAACANNNTGTTCT",
    # octamer bound by OCT1/OCT2 (Staudt et al. 1986, Nature 323:640)
    "OCT": "ATGCAAAT",
}
ENHANCER_TF_MOTIFS: dict[str, np.ndarray] = {
    name: MOTIFS[name] if name in MOTIFS else pwm_from_consensus(consensus)
    for name, consensus in ENHANCER_TF_CONSENSUS.items()
}
PANEL_TFS_PER_CELL_TYPE = (2, 3)
"""Each panel cell type activates this many TFs of the pool (inclusive range)."""


def cell_type_panel(
    n_cell_types: int = 20, seed: int = 0, pool: Sequence[str] | None = None
) -> dict[str, tuple[str, ...]]:
    """``n_cell_types`` cell types (``cell01``...), each activating a distinct random 2-3 TF subset of ``pool``.

    The panel depends on ``seed`` only; ``pool`` defaults to every TF of ``ENHANCER_TF_CONSENSUS``.

    >>> panel = cell_type_panel(20, seed=0)
    >>> len(panel), len(set(panel.values())), sorted({len(tfs) for tfs in panel.values()})
    (20, 20, [2, 3])
    """
    pool = sorted(ENHANCER_TF_CONSENSUS) if pool is None else list(pool)
    for tf in pool:
        _check_choice("pool TF", tf, ENHANCER_TF_CONSENSUS)
    low, high = PANEL_TFS_PER_CELL_TYPE
    if len(set(pool)) < high:
        raise ValueError(f"pool must name at least {high} distinct TFs, got {pool}")
    n_combinations = sum(math.comb(len(set(pool)), size) for size in range(low, high + 1))
    _check_at_least("n_cell_types", n_cell_types, 1)
    if n_cell_types > n_combinations:
        raise ValueError(f"n_cell_types={n_cell_types} exceeds the {n_combinations} distinct TF subsets of the pool")
    rng = np.random.default_rng(seed)
    combinations: list[tuple[str, ...]] = []
    while len(combinations) < n_cell_types:
        size = int(rng.integers(low, high + 1))
        subset = tuple(sorted(rng.choice(sorted(set(pool)), size=size, replace=False).tolist()))
        if subset not in combinations:
            combinations.append(subset)
    width = len(str(n_cell_types))
    return {f"cell{i + 1:0{max(2, width)}d}": tfs for i, tfs in enumerate(combinations)}


def cell_type_panel_sequences(
    n: int, n_cell_types: int = 20, cell_types: Sequence[str] | None = None, length_bp: int = 200, seed: int = 0,
    panel_seed: int = 0,
) -> pd.DataFrame:  # fmt: skip
    """Enhancers of a :func:`cell_type_panel`; columns sequence, label, cell_type (as :func:`cell_type_sequences`).

    Label 1: >= 2 sites of the row's cell type's active TFs; negatives hold at most one, plus sites of other pool
    TFs (0-2). ``panel_seed`` fixes which TFs each cell type activates (the same for every split); ``seed`` the
    rows. ``n`` rows are spread evenly over ``cell_types`` (default: all of the panel), balanced within each.

    >>> frame = cell_type_panel_sequences(40, seed=0)
    >>> frame.cell_type.nunique(), int(frame.label.sum())
    (20, 20)
    """
    _check_at_least("n", n, 1)  # before the panel is drawn
    return _enhancer_frame(n, cell_type_panel(n_cell_types, panel_seed), cell_types, length_bp, seed=seed,
                           pool=sorted(ENHANCER_TF_CONSENSUS), motifs=ENHANCER_TF_MOTIFS)


# ---------------------------------------------------------------- splicing

SPLICE_CLASSES = ("acceptor", "donor", "none")
SPLICE_GC = 0.45
_EXON_GC, _INTRON_GC = 0.52, 0.40
_EXON_LENGTH_RANGE_BP = (40, 100)
_ACCEPTOR_PAD_BP = _ACCEPTOR_G_INDEX + 1  # intron bases the acceptor site needs before an exon
_DONOR_PAD_BP = len(_DONOR_PWM) - _DONOR_G_INDEX  # intron bases the donor site needs after one


def _splice_window(kind: str, length_bp: int, rng: np.random.Generator) -> str:
    """Window whose centre is an exon end (donor), exon start (acceptor) or neither."""
    seq = _random_dna(length_bp, rng, SPLICE_GC)
    centre = length_bp // 2
    if kind == "donor":  # exon | GT at the centre
        _plant(seq, _sample_site_idx(_DONOR_PWM, rng), centre - _DONOR_G_INDEX)
    elif kind == "acceptor":  # polypyrimidine tract + YAG | exon at the centre
        _plant(seq, _sample_site_idx(_ACCEPTOR_PWM, rng), centre - 1 - _ACCEPTOR_G_INDEX)
    elif rng.random() < 0.5:  # decoy: a bare GT where a donor would be
        _plant(seq, np.array([2, 3], dtype=np.uint8), centre)
    else:  # decoy: a bare AG where an acceptor would be
        _plant(seq, np.array([0, 2], dtype=np.uint8), centre - 2)
    return _decode_dna(seq)


def splice_windows(n: int, length_bp: int = 400, seed: int = 0) -> pd.DataFrame:
    """Balanced 3-class splice windows (like GUE splice); labels "acceptor", "donor", "none".

    Donor: exon ending in MAG, then GTRAGT starting at index ``length_bp // 2``. Acceptor:
    polypyrimidine tract + YAG ending just before the centre, exon starting at it.
    None: background with a bare GT or AG decoy at the centre.

    >>> sorted(splice_windows(6, seed=0).label)
    ['acceptor', 'acceptor', 'donor', 'donor', 'none', 'none']
    """
    _check_at_least("n", n, 1)
    _check_at_least("length_bp", length_bp, 2 * len(_ACCEPTOR_PWM))
    rng = np.random.default_rng(seed)
    labels = [SPLICE_CLASSES[k] for k in _balanced_labels(n, len(SPLICE_CLASSES), rng)]
    sequences = [_splice_window(label, length_bp, rng) for label in labels]
    return pd.DataFrame({"sequence": sequences, "label": labels})


def _exon_intervals(length_bp: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Sorted half-open (start, end) exons, each with room for its splice sites."""
    max_padded = _EXON_LENGTH_RANGE_BP[1] + _ACCEPTOR_PAD_BP + _DONOR_PAD_BP
    n_exons = int(rng.integers(2, max(2, length_bp // (max_padded + 3)) + 1))
    exon_lengths = rng.integers(_EXON_LENGTH_RANGE_BP[0], _EXON_LENGTH_RANGE_BP[1] + 1, size=n_exons)
    padded = [int(length) + _ACCEPTOR_PAD_BP + _DONOR_PAD_BP for length in exon_lengths]
    starts = _nonoverlapping_starts(padded, length_bp, rng)
    return sorted((s + _ACCEPTOR_PAD_BP, s + _ACCEPTOR_PAD_BP + int(n)) for s, n in zip(starts, exon_lengths))


def _gene_with_splice_labels(length_bp: int, rng: np.random.Generator) -> tuple[str, str]:
    """Intron/exon sequence and its per-base labels: 1 = G of GT, 2 = G of AG, else 0."""
    seq = _random_dna(length_bp, rng, _INTRON_GC)
    labels = np.full(length_bp, ord("0"), dtype=np.uint8)
    for start, end in _exon_intervals(length_bp, rng):
        _plant(seq, _random_dna(end - start, rng, _EXON_GC), start)
        _plant(seq, _sample_site_idx(_ACCEPTOR_PWM, rng), start - 1 - _ACCEPTOR_G_INDEX)
        _plant(seq, _sample_site_idx(_DONOR_PWM, rng), end - _DONOR_G_INDEX)
        labels[start - 1], labels[end] = ord("2"), ord("1")
    return _decode_dna(seq), labels.tobytes().decode("ascii")


def splice_position_labels(n: int, length_bp: int = 400, seed: int = 0) -> pd.DataFrame:
    """Long sequences with 2+ exons; ``label`` is a per-base string of '0', '1', '2'.

    '1' marks the G of each donor GT, '2' the G of each acceptor AG; exons are 40-100 bp
    and there is one exon per ~125 bp (at least two).

    >>> df = splice_position_labels(2, seed=0); len(df.label[0]) == len(df.sequence[0])
    True
    """
    _check_at_least("n", n, 1)
    _check_at_least("length_bp", length_bp, 250)
    rng = np.random.default_rng(seed)
    rows = [_gene_with_splice_labels(length_bp, rng) for _ in range(n)]
    return pd.DataFrame(rows, columns=["sequence", "label"])


# ---------------------------------------------------------------- PTM sites

PROTEIN_ALPHABET = "ACDEFGHIKLMNPQRSTVWY"
# Approximate UniProtKB/Swiss-Prot amino-acid composition (%), in PROTEIN_ALPHABET order.
_AA_PERCENT = np.array(
    [8.25, 1.37, 5.45, 6.75, 3.86, 7.07, 2.27, 5.96, 5.84, 9.66,
     2.42, 4.06, 4.70, 3.93, 5.53, 6.56, 5.34, 6.87, 1.08, 2.92]
)  # fmt: skip
AA_FREQUENCIES = _AA_PERCENT / _AA_PERCENT.sum()
_AA_BYTES = np.frombuffer(PROTEIN_ALPHABET.encode(), dtype=np.uint8)

# Kinase substrate motifs as {offset from the phospho-acceptor: allowed residues}.
KINASE_MOTIFS: dict[str, dict[int, str]] = {
    "PKA": {-3: "R", -2: "R", 0: "ST"},  # R-R-X-S/T (Kemp et al. 1977, JBC 252:4888)
    "CK2": {0: "ST", 3: "DE"},  # S/T-X-X-D/E (Meggio & Pinna 2003, FASEB J 17:349)
    "proline_directed": {0: "ST", 1: "P"},  # S/T-P, CDKs and MAPKs
    "Abl": {-1: "IVL", 0: "Y", 3: "PF"},  # I/V/L-Y-X-X-P/F (Songyang et al. 1995, Nature 373:536)
}
_PTM_DECOY_FRACTION = 0.3


def _random_protein(length: int, rng: np.random.Generator) -> str:
    idx = rng.choice(len(PROTEIN_ALPHABET), size=length, p=AA_FREQUENCIES)
    return _AA_BYTES[idx].tobytes().decode("ascii")


def _sample_residue(rng: np.random.Generator, allowed: str = PROTEIN_ALPHABET) -> str:
    probs = np.array([AA_FREQUENCIES[PROTEIN_ALPHABET.index(aa)] for aa in allowed])
    return allowed[rng.choice(len(allowed), p=probs / probs.sum())]


def _matching_kinase_motifs(residues: Sequence[str], centre: int) -> list[str]:
    return [
        name
        for name, motif in KINASE_MOTIFS.items()
        if all(residues[centre + offset] in allowed for offset, allowed in motif.items())
    ]


def _break_kinase_motifs(residues: list[str], centre: int, rng: np.random.Generator) -> None:
    """Mutate flanks until no kinase motif matches; a mutation never creates a match."""
    while matches := _matching_kinase_motifs(residues, centre):
        offsets = [o for o in KINASE_MOTIFS[matches[0]] if o != 0]
        offset = offsets[rng.integers(len(offsets))]
        used = set("".join(motif.get(offset, "") for motif in KINASE_MOTIFS.values()))
        residues[centre + offset] = _sample_residue(rng, "".join(a for a in PROTEIN_ALPHABET if a not in used))


def _ptm_window(label: int, window: int, rng: np.random.Generator) -> str:
    """Window centred on S/T/Y; positives match a kinase motif, negatives (some near-misses) none."""
    residues, centre = list(_random_protein(window, rng)), window // 2
    residues[centre] = _sample_residue(rng, "STY")
    names = [n for n, m in KINASE_MOTIFS.items() if residues[centre] in m[0]]
    if label or rng.random() < _PTM_DECOY_FRACTION:
        for offset, allowed in KINASE_MOTIFS[names[rng.integers(len(names))]].items():
            if offset != 0:
                residues[centre + offset] = _sample_residue(rng, allowed)
    if not label:
        _break_kinase_motifs(residues, centre, rng)
    return "".join(residues)


def ptm_windows(n: int, window: int = 33, positive_fraction: float = 0.08, seed: int = 0) -> pd.DataFrame:
    """Protein windows centred (index ``window // 2``) on S/T/Y; label 1 = kinase motif.

    Positives match one of ``KINASE_MOTIFS`` (PKA R-R-X-S/T, CK2 S/T-X-X-D/E,
    proline-directed S/T-P, Abl I/V/L-Y-X-X-P/F); round(n * positive_fraction) rows are
    positive. Negatives match none; some are near-misses with one motif residue broken.

    >>> int(ptm_windows(100, seed=0).label.sum())
    8
    """
    _check_at_least("n", n, 1)
    _check_at_least("window", window, 7)
    if not 0 <= positive_fraction <= 1:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    rng = np.random.default_rng(seed)
    n_positive = int(round(n * positive_fraction))
    labels = rng.permutation(np.r_[np.ones(n_positive, int), np.zeros(n - n_positive, int)])
    sequences = [_ptm_window(int(label), window, rng) for label in labels]
    return pd.DataFrame({"sequence": sequences, "label": labels})


# ---------------------------------------------------------------- subcellular localization

LOCALIZATION_CLASSES = (
    "Cytoplasm", "Endoplasmic.reticulum", "Extracellular", "Mitochondrion", "Nucleus", "Peroxisome",
)  # fmt: skip
_EXPECTED_SIGNALS: dict[str, set[str]] = {
    "Cytoplasm": set(),
    "Endoplasmic.reticulum": {"signal_peptide", "kdel"},
    "Extracellular": {"signal_peptide"},
    "Mitochondrion": {"transit_peptide"},
    "Nucleus": {"nls"},
    "Peroxisome": {"pts1"},
}
# SV40 large T PKKKRKV, c-Myc PAAKRVKLD, nucleoplasmin-like bipartite KR-X10-KKKK.
_NLS_RE = re.compile(r"PKKKRKV|PAAKRVKLD|KR.{10}KKKK")
_PTS1_RE = re.compile(r"[SAC][KRH][LM]$")  # peroxisomal targeting signal 1 (Gould et al. 1989)
_MAX_PROTEIN_TRIES = 100


def _signal_peptide(rng: np.random.Generator) -> str:
    """Sec signal peptide: M + n-region (K/R) + h-region (7-15 hydrophobic) + c-region ending A-X-A."""
    n_region = "M" + _sample_residue(rng, "KR") + _random_from(rng, "KRSTN", rng.integers(0, 3))
    h_region = _random_from(rng, "LLLLAAVVIF", rng.integers(7, 16))
    c_region = _random_from(rng, "GSTNQ", rng.integers(1, 4)) + "A" + _random_from(rng, "SGTQN", 1) + "A"
    return n_region + h_region + c_region


def _transit_peptide(rng: np.random.Generator) -> str:
    """Mitochondrial presequence: amphipathic helix, hydrophobic face L/A/F, charged face R."""
    residues = []
    for i in range(int(rng.integers(20, 36))):
        hydrophobic_face = (i * 100) % 360 < 160  # 100 degrees per residue in an alpha helix
        residues.append(_random_from(rng, "LLLAAFI" if hydrophobic_face else "RRRKSA", 1))
    return "M" + "".join(residues)


def _random_from(rng: np.random.Generator, letters: str, count: int) -> str:
    return "".join(letters[i] for i in rng.integers(len(letters), size=int(count)))


def _nuclear_localization_signal(rng: np.random.Generator) -> str:
    kind = rng.integers(3)
    if kind == 2:  # bipartite
        return "KR" + _random_protein(10, rng) + "KKKK"
    return ("PKKKRKV", "PAAKRVKLD")[kind]


def _peroxisomal_signal(rng: np.random.Generator) -> str:
    if rng.random() < 0.6:
        return "SKL"
    return _random_from(rng, "SAC", 1) + _random_from(rng, "KRH", 1) + _random_from(rng, "LM", 1)


def _localization_signals(protein: str) -> set[str]:
    """Which sorting signals a protein carries, as the generator defines them."""
    n_term = protein[1:21]
    checks = {
        "nls": _NLS_RE.search(protein) is not None,
        "signal_peptide": re.search(r"[LAVIF]{7,}", protein[:35]) is not None,
        "transit_peptide": n_term.count("R") >= 3 and re.search(r"[DE]", n_term) is None,
        "kdel": protein.endswith("KDEL"),
        "pts1": _PTS1_RE.search(protein) is not None,
    }
    return {name for name, present in checks.items() if present}


def _n_terminal_signal(label: str, rng: np.random.Generator) -> str:
    if label in ("Extracellular", "Endoplasmic.reticulum"):
        return _signal_peptide(rng)
    return _transit_peptide(rng) if label == "Mitochondrion" else "M"


def _c_terminal_signal(label: str, rng: np.random.Generator) -> str:
    if label == "Endoplasmic.reticulum":
        return "KDEL"  # ER retrieval signal (Munro & Pelham 1987, Cell 48:899)
    return _peroxisomal_signal(rng) if label == "Peroxisome" else ""


def _build_protein(label: str, length: int, rng: np.random.Generator) -> str:
    prefix, suffix = _n_terminal_signal(label, rng), _c_terminal_signal(label, rng)
    body = _random_protein(length - len(prefix) - len(suffix), rng)
    if label == "Nucleus":
        nls = _nuclear_localization_signal(rng)
        at = int(rng.integers(10, len(body) - len(nls) - 10))
        body = body[:at] + nls + body[at + len(nls) :]
    return prefix + body + suffix


def _localization_protein(label: str, length: int, rng: np.random.Generator) -> str:
    """A protein with exactly the sorting signals of ``label`` (resampled until so)."""
    for _ in range(_MAX_PROTEIN_TRIES):
        protein = _build_protein(label, length, rng)
        if _localization_signals(protein) == _EXPECTED_SIGNALS[label]:
            return protein
    raise RuntimeError(f"could not build a {label} protein of length {length} in {_MAX_PROTEIN_TRIES} tries")


def localization_proteins(n: int, seed: int = 0, min_len: int = 80, max_len: int = 600) -> pd.DataFrame:
    """Balanced proteins over ``LOCALIZATION_CLASSES`` with planted sorting signals.

    Nucleus: an NLS (PKKKRKV, PAAKRVKLD or KR-X10-KKKK) inside; Extracellular: N-terminal
    signal peptide; Endoplasmic.reticulum: signal peptide + C-terminal KDEL; Mitochondrion:
    R/L/A-rich amphipathic transit peptide; Peroxisome: C-terminal SKL-like PTS1;
    Cytoplasm: none of these. Lengths are uniform in [min_len, max_len].

    >>> localization_proteins(6, seed=0).label.nunique()
    6
    """
    _check_at_least("n", n, 1)
    _check_at_least("min_len", min_len, 60)
    _check_at_least("max_len", max_len, min_len)
    rng = np.random.default_rng(seed)
    labels = [LOCALIZATION_CLASSES[k] for k in _balanced_labels(n, len(LOCALIZATION_CLASSES), rng)]
    lengths = rng.integers(min_len, max_len + 1, size=n)
    sequences = [_localization_protein(label, int(length), rng) for label, length in zip(labels, lengths)]
    return pd.DataFrame({"sequence": sequences, "label": labels})


# ---------------------------------------------------------------- registry and files

SYNTHETIC_TASKS: dict[str, Callable[..., pd.DataFrame]] = {
    "promoter": promoter_sequences,
    "tf_binding": tf_binding_sequences,
    "tf_binding_gc_matched": functools.partial(tf_binding_sequences, gc_matched=True),
    "cell_type": cell_type_sequences,
    "cell_type_panel": cell_type_panel_sequences,
    "splice": splice_windows,
    "splice_positions": splice_position_labels,
    "ptm": ptm_windows,
    "localization": localization_proteins,
}
CELL_TYPE_TASKS = ("cell_type", "cell_type_panel")
"""Tasks with a ``cell_type`` column: ``write_task`` gives each cell type its own folder."""
SPLITS = ("train", "dev", "test")


def make_task(name: str, n: int, seed: int = 0, **kwargs) -> pd.DataFrame:
    """Generate ``n`` rows of the synthetic task ``name`` (a key of ``SYNTHETIC_TASKS``).

    >>> make_task("tf_binding", 10, seed=1, tf="AP1").shape
    (10, 2)
    """
    _check_choice("synthetic task", name, SYNTHETIC_TASKS)
    return SYNTHETIC_TASKS[name](n, seed=seed, **kwargs)


def split_seed(seed: int, split: str) -> int:
    """Independent seed for one split, derived from the task seed.

    >>> split_seed(0, "train") != split_seed(0, "dev")
    True
    """
    _check_choice("split", split, SPLITS)
    return int(np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(1)[0])


def _write_csv_temp(frame: pd.DataFrame, path: Path) -> Path:
    """Gzip CSV written to a temporary sibling of ``path`` (renamed into place by the caller); removed on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:  # mtime=0 keeps the bytes reproducible
            frame.to_csv(handle, index=False, compression={"method": "gzip", "mtime": 0})
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _write_csvs_atomic(frames: dict[Path, pd.DataFrame]) -> None:
    """Write every file to a temporary sibling first and rename them into place only when all are written, so a
    full disk or a kill midway never leaves a data set with some splits new and others missing or old."""
    written: dict[Path, Path] = {}
    try:
        for path, frame in frames.items():
            written[path] = _write_csv_temp(frame, path)
    except BaseException:
        for tmp in written.values():
            tmp.unlink(missing_ok=True)
        raise
    for path, tmp in written.items():
        os.replace(tmp, path)


def write_task(
    name: str, out_dir: str | os.PathLike, n_train: int = 2000, n_dev: int = 500, n_test: int = 500,
    seed: int = 0, **kwargs,
) -> Path:  # fmt: skip
    """Write ``{train,dev,test}.csv.gz`` for task ``name`` under ``out_dir``; return ``out_dir``.

    Each split uses its own seed (``split_seed``). For "cell_type" and "cell_type_panel" each cell type gets a
    sub-folder, ``out_dir/<cell_type>/{train,dev,test}.csv.gz``, one task per folder.

    >>> write_task("promoter", "data/promoter", n_train=100, n_dev=20, n_test=20)  # doctest: +SKIP
    """
    _check_choice("synthetic task", name, SYNTHETIC_TASKS)
    out_dir = check_output_folder(out_dir, "OUT_DIR")
    files: dict[Path, pd.DataFrame] = {}
    for split, n in zip(SPLITS, (n_train, n_dev, n_test)):
        frame = make_task(name, n, seed=split_seed(seed, split), **kwargs)
        if name in CELL_TYPE_TASKS:
            for cell_type, group in frame.groupby("cell_type", sort=True):
                files[out_dir / str(cell_type) / f"{split}.csv.gz"] = group
        else:
            files[out_dir / f"{split}.csv.gz"] = frame
    _write_csvs_atomic(files)
    return out_dir
