"""Example-based interpretation: motifs learned by a model, from its per-base attributions.

``gr-ft interpret`` explains sequences one at a time; this module summarises what recurs across
them. TF-MoDISco (``modisco-lite``) cuts high-attribution windows (seqlets) out of every sequence,
clusters them and aggregates each cluster into a motif; TOMTOM (``memelite``) then compares each
motif to the JASPAR CORE vertebrate matrices that ``pyjaspar`` ships (an SQLite file, so offline).

Attributions, best first (:data:`ATTRIBUTION_FILES`): ``ism.npz`` gives true hypothetical scores
(what each of the 4 letters would contribute at each base): the N x L x 4 ISM effects, mean-centred
per base. The contribution of the reference base is one-hot x hypothetical = minus the mean
substitution effect (the ISM logo of ``gr-ft interpret``). Gradient files (``ig``/``ixg``/``saliency``)
hold only the reference base's value, so their hypothetical scores are that value on the reference
letter and 0 elsewhere (weaker clustering; use ISM when you can).

Example:
    >>> contributions = load_contributions("interp/")          # from gr-ft interpret --method ism
    >>> motifs = find_motifs(contributions, MotifConfig(min_seqlets=30))
    >>> matches = match_motifs(motifs, load_jaspar())
    >>> write_report("interp/motifs", contributions, motifs, matches)
"""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "ATTRIBUTION_FILES",
    "Contributions",
    "JasparMatch",
    "JasparSet",
    "Motif",
    "MotifConfig",
    "check_enough_sequences",
    "find_motifs",
    "hypothetical_from_ism",
    "load_contributions",
    "load_jaspar",
    "match_motifs",
    "trim_motif",
    "write_report",
]

logger = logging.getLogger(__name__)

ATTRIBUTION_FILES = ("ism", "ig", "ixg", "saliency")  # preference order; ISM alone has hypothetical scores
DNA = "ACGT"
MIN_SEQUENCES = 10


@dataclass
class MotifConfig:
    """TF-MoDISco and TOMTOM settings (defaults are modisco-lite's, except where noted)."""

    window_bp: int = 21
    """Seqlet core width (modisco ``sliding_window_size``)."""
    flank_bp: int = 10
    """Bases added on each side of a seqlet core (modisco ``flank_size``)."""
    min_seqlets: int = 100
    """Fewest seqlets of one sign to cluster them (modisco ``min_metacluster_size``)."""
    min_cluster_seqlets: int = 20
    """Fewest seqlets in a reported motif (modisco ``final_min_cluster_size``)."""
    max_seqlets: int = 20000
    """Most seqlets of one sign that are clustered (modisco ``max_seqlets_per_metacluster``)."""
    leiden_runs: int = 50
    """Leiden clusterings tried per round (modisco ``n_leiden_runs``; fewer is faster, less stable)."""
    trim_threshold: float = 0.3
    """Motifs are trimmed to the span of bases whose total |contribution| reaches this share of the peak."""
    top_matches: int = 3
    """JASPAR matches reported per motif."""
    query_pseudocount: float = 1.0
    """Seqlet counts added per letter and base to a motif's PPM before TOMTOM (Laplace): a motif of a few dozen
    seqlets has columns of frequency ~1, which TOMTOM scores against every G/C-rich matrix alike."""
    seed: int = 0
    """numpy seed set before clustering (modisco's t-SNE/Leiden draw from it)."""

    def __post_init__(self):
        for name in ("window_bp", "min_seqlets", "min_cluster_seqlets", "max_seqlets", "leiden_runs", "top_matches"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.flank_bp < 0:
            raise ValueError(f"--flank-bp must be >= 0, got {self.flank_bp}")
        if self.query_pseudocount < 0:
            raise ValueError(f"query_pseudocount must be >= 0, got {self.query_pseudocount}")
        if not 0 < self.trim_threshold < 1:
            raise ValueError(f"--trim-threshold must be in (0, 1), got {self.trim_threshold}")


@dataclass
class Contributions:
    """Per-base scores of N DNA sequences, padded to L bases (padding: zero one-hot and scores)."""

    method: str
    """Which ``gr-ft interpret`` file they came from (ism, ig, ixg, saliency)."""
    ids: list[str]
    sequences: list[str]
    one_hot: np.ndarray  # N, L, 4 (ACGT; N bases and padding are all-zero rows)
    hypothetical: np.ndarray  # N, L, 4
    target_class: np.ndarray  # N, index into class_names of the output explained per sequence
    class_names: list[str]

    @property
    def contributions(self) -> np.ndarray:
        """N x L x 4: the hypothetical scores on the reference letters only."""
        return self.one_hot * self.hypothetical


@dataclass
class Motif:
    """One TF-MoDISco pattern, trimmed; matrices are W x 4 (ACGT)."""

    name: str  # pos_0, pos_1, ... (reference bases raise the output), neg_0, ... (lower it)
    ppm: np.ndarray  # base frequencies over the seqlets
    cwm: np.ndarray  # mean contribution per base and letter
    hypothetical_cwm: np.ndarray
    seqlets: list[tuple[int, int, int, bool]] = field(default_factory=list)  # (sequence index, start, end, reverse?)

    @property
    def consensus(self) -> str:
        return "".join(DNA[i] for i in self.ppm.argmax(1))


@dataclass
class JasparSet:
    """JASPAR matrices as probabilities (4 x W each, ACGT), with their ids and factor names."""

    release: str
    ids: list[str]
    names: list[str]
    ppms: list[np.ndarray]


@dataclass
class JasparMatch:
    matrix_id: str
    name: str
    p_value: float
    q_value: float  # Benjamini-Hochberg over this motif's p-values against every JASPAR matrix


# ---------------------------------------------------------------- attributions in


def hypothetical_from_ism(effects: np.ndarray) -> np.ndarray:
    """N x L x 4 ISM effects (reference letter = 0) -> hypothetical contributions, mean-centred per base.

    Example:
        >>> hypothetical_from_ism(np.array([[[0.0, -1.0, -1.0, -2.0]]]))   # reference A mattered
        array([[[ 1.,  0.,  0., -1.]]])
    """
    effects = np.nan_to_num(effects, nan=0.0)
    return effects - effects.mean(-1, keepdims=True)


def one_hot_dna(sequences: list[str], length: int) -> np.ndarray:
    """N x length x 4 one-hot (ACGT), zero rows for other letters and padding."""
    lookup = np.zeros((256, 4), dtype=np.float32)
    lookup[[ord(b) for b in DNA], np.arange(4)] = 1.0
    out = np.zeros((len(sequences), length, 4), dtype=np.float32)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = lookup[np.frombuffer(sequence.upper().encode(), dtype=np.uint8)]
    return out


def load_contributions(folder: str | Path, method: str | None = None) -> Contributions:
    """Read the attributions ``gr-ft interpret`` wrote into ``folder`` (ISM first, see :data:`ATTRIBUTION_FILES`).

    Example:
        >>> load_contributions("interp/").hypothetical.shape     # N x L x ACGT
        (200, 101, 4)
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; pass the --out folder of gr-ft interpret")
    choices = [method] if method else list(ATTRIBUTION_FILES)
    if method is not None and method not in ATTRIBUTION_FILES:
        raise ValueError(f"--method {method!r}: choose one of {', '.join(ATTRIBUTION_FILES)}")
    found = [m for m in choices if (folder / f"{m}.npz").is_file()]
    if not found:
        wanted = ", ".join(f"{m}.npz" for m in choices)
        raise ValueError(f"{folder} holds no attributions ({wanted}); run gr-ft interpret RUN --input FILE "
                         f"--method ism --out {folder} first")
    path = folder / f"{found[0]}.npz"
    try:
        with np.load(path) as arrays:
            data = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot read {path} ({err}); rerun gr-ft interpret to rewrite it") from None
    needed = {"sequences", "ids", "target_class", "class_names", "ism" if found[0] == "ism" else "bases"}
    if needed - set(data):
        raise ValueError(f"{path} lacks {sorted(needed - set(data))}: not written by gr-ft interpret; rerun it")
    sequences = [str(s) for s in data["sequences"]]
    letters = "".join(str(x) for x in data["letters"]) if "letters" in data else DNA
    if set(letters) - {"-"} != set(DNA) or any(set(s.upper()) - set(DNA + "N") for s in sequences):
        raise ValueError(f"{path}: motifs need DNA attributions (letters ACGT); this file's letters are "
                         f"{letters!r}, its first sequence {sequences[0][:30]!r}")
    length = max(len(s) for s in sequences)
    one_hot = one_hot_dna(sequences, length)
    if found[0] == "ism":
        columns = [letters.index(b) for b in DNA]  # drop the deletion column of --deletions
        hypothetical = hypothetical_from_ism(data["ism"][:, :length, columns]).astype(np.float32)
    else:
        values = np.nan_to_num(data["bases"][:, :length], nan=0.0).astype(np.float32)
        hypothetical = one_hot * values[..., None]
    return Contributions(found[0], [str(i) for i in data["ids"]], sequences, one_hot, hypothetical,
                         np.asarray(data["target_class"]), [str(c) for c in data["class_names"]])


# ---------------------------------------------------------------- TF-MoDISco


def check_enough_sequences(contributions: Contributions, config: MotifConfig) -> None:
    """One-line errors for inputs modisco cannot work with (it would fail deep inside, or find nothing)."""
    n, length = contributions.one_hot.shape[:2]
    if n < MIN_SEQUENCES:
        raise ValueError(f"motif discovery needs at least {MIN_SEQUENCES} sequences, got {n}: explain more "
                         f"sequences with gr-ft interpret (hundreds are typical)")
    seqlet_bp = config.window_bp + 2 * config.flank_bp
    if length <= seqlet_bp:
        raise ValueError(f"sequences of {length} bp are too short for seqlets of --window-bp {config.window_bp} "
                         f"+ 2 x --flank-bp {config.flank_bp} = {seqlet_bp} bp; lower them")
    if not np.abs(contributions.contributions).sum() > 0:
        raise ValueError(f"every {contributions.method} attribution is 0: the model ignores these sequences")


def find_motifs(contributions: Contributions, config: MotifConfig = MotifConfig()) -> list[Motif]:
    """Run TF-MoDISco on the contributions; patterns of both signs, each trimmed (:func:`trim_motif`).

    Example:
        >>> [m.name for m in find_motifs(contributions, MotifConfig(min_seqlets=30))]
        ['pos_0', 'pos_1']
    """
    from modiscolite.tfmodisco import TFMoDISco

    check_enough_sequences(contributions, config)
    np.random.seed(config.seed)
    positive, negative = TFMoDISco(
        one_hot=contributions.one_hot, hypothetical_contribs=contributions.hypothetical,
        sliding_window_size=config.window_bp, flank_size=config.flank_bp, min_metacluster_size=config.min_seqlets,
        final_min_cluster_size=config.min_cluster_seqlets, max_seqlets_per_metacluster=config.max_seqlets,
        n_leiden_runs=config.leiden_runs, verbose=False,
        # modisco pads seqlets by initial_flank_to_add and trims them to trim_to_window_size (defaults 10 and 30,
        # for its 21 + 2 x 10 bp seqlets); scaled with the seqlet so short windows and sequences work
        initial_flank_to_add=config.flank_bp, trim_to_window_size=min(30, config.window_bp + config.flank_bp))
    motifs = []
    for sign, patterns in (("pos", positive), ("neg", negative)):
        for index, pattern in enumerate(patterns or []):
            seqlets = [(int(s.example_idx), int(s.start), int(s.end), bool(s.is_revcomp)) for s in pattern.seqlets]
            motif = Motif(f"{sign}_{index}", np.asarray(pattern.sequence), np.asarray(pattern.contrib_scores),
                          np.asarray(pattern.hypothetical_contribs), seqlets)
            motifs.append(trim_motif(motif, config.trim_threshold))
    logger.info("modisco: %d motifs from %d sequences (%s)", len(motifs), len(contributions.ids), contributions.method)
    return motifs


def trim_motif(motif: Motif, threshold: float = 0.3) -> Motif:
    """Keep the span of bases whose sum |cwm| is at least ``threshold`` x its maximum (modisco-lite's report rule)."""
    weight = np.abs(motif.cwm).sum(1)
    keep = np.flatnonzero(weight >= threshold * weight.max())
    span = slice(int(keep.min()), int(keep.max()) + 1)
    return Motif(motif.name, motif.ppm[span], motif.cwm[span], motif.hypothetical_cwm[span], motif.seqlets)


# ---------------------------------------------------------------- JASPAR + TOMTOM


def load_jaspar(release: str | None = None, collection: str = "CORE", tax_group: str = "vertebrates",
                pseudocount: float = 0.8) -> JasparSet:
    """The latest version of every matrix of a JASPAR collection, read from the SQLite file pyjaspar ships (offline).

    The file is queried directly (the matrices pyjaspar's ``fetch_motifs`` returns, without building ~1,000
    Biopython objects: 0.1 s instead of seconds). Counts become probabilities with ``pseudocount`` spread
    evenly over the 4 letters per position.

    Example:
        >>> jaspar = load_jaspar()                    # JASPAR2026 CORE vertebrates
        >>> jaspar.ids[:2], jaspar.ppms[0].shape
        (['MA0004.1', 'MA0006.1'], (4, 6))
    """
    import sqlite3

    import pyjaspar

    release = release or pyjaspar.JASPAR_LATEST_RELEASE
    if release not in pyjaspar.jaspar_releases:
        raise ValueError(f"--jaspar-release {release!r}: choose one of {sorted(pyjaspar.jaspar_releases)}")
    path = Path(pyjaspar.__file__).parent / "data" / pyjaspar.jaspar_releases[release]
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT m.ID, m.BASE_ID, m.VERSION, m.NAME FROM MATRIX m JOIN MATRIX_ANNOTATION a "
                          "ON a.ID = m.ID AND a.TAG = 'tax_group' AND a.VAL = ? WHERE m.COLLECTION = ?",
                          (tax_group, collection)).fetchall()
        latest = {}
        for key, base_id, version, name in rows:
            if base_id not in latest or version > latest[base_id][1]:
                latest[base_id] = (key, version, name)
        counts: dict[int, dict[tuple[str, int], float]] = {key: {} for key, _, _ in latest.values()}
        for key, letter, column, value in db.execute("SELECT ID, row, col, val FROM MATRIX_DATA"):
            if key in counts:
                counts[key][letter, column] = value
    if not latest:
        raise ValueError(f"{release} has no {collection} matrices for tax group {tax_group!r}")
    ids, names, ppms = [], [], []
    for base_id in sorted(latest):
        key, version, name = latest[base_id]
        width = max(column for _, column in counts[key])
        matrix = np.array([[counts[key][b, c] for c in range(1, width + 1)] for b in DNA]) + pseudocount / 4  # 4, W
        ids.append(f"{base_id}.{version}")
        names.append(name)
        ppms.append(matrix / matrix.sum(0, keepdims=True))
    return JasparSet(release, ids, names, ppms)


def match_motifs(motifs: list[Motif], jaspar: JasparSet, top: int = 3,
                 pseudocount: float = 1.0) -> dict[str, list[JasparMatch]]:
    """TOMTOM (memelite) p-values of each motif's PPM against every JASPAR matrix, both strands; the ``top`` best.

    The query PPM is (frequency x seqlets + ``pseudocount``) / (seqlets + 4 x ``pseudocount``) per base.

    q-values are Benjamini-Hochberg over one motif's p-values against the whole database (as MEME's
    tomtom reports them). Example:
        >>> match_motifs(motifs, load_jaspar())["pos_0"][0].name
        'CTCF'
    """
    from memelite import tomtom
    from scipy.stats import false_discovery_control

    if not motifs:
        return {}
    queries = [((m.ppm * len(m.seqlets) + pseudocount) / (len(m.seqlets) + 4 * pseudocount)).T.astype(np.float64)
               for m in motifs]  # 4, W each
    p_values = tomtom(queries, jaspar.ppms)[0]  # both strands merged
    matches = {}
    for row, motif in enumerate(motifs):
        q_values = false_discovery_control(np.clip(p_values[row], 0.0, 1.0))
        best = np.argsort(p_values[row], kind="stable")[:top]
        matches[motif.name] = [JasparMatch(jaspar.ids[j], jaspar.names[j], float(p_values[row, j]), float(q_values[j]))
                               for j in best]
    return matches


def align_match(motif_ppm: np.ndarray, match_ppm: np.ndarray, min_overlap: int = 4) -> np.ndarray:
    """``match_ppm`` (W' x 4), as stored or reverse-complemented and shifted, where its columns correlate best
    with the motif's (W x 4); returned W x 4 for drawing under the motif (uniform where it does not reach)."""
    width = len(motif_ppm)
    best, aligned = -np.inf, np.full((width, 4), 0.25)
    for strand in (match_ppm, match_ppm[::-1, ::-1]):
        for shift in range(-len(strand) + min_overlap, width - min_overlap + 1):
            lo, hi = max(0, shift), min(width, shift + len(strand))
            if hi - lo < min_overlap:
                continue
            a, b = motif_ppm[lo:hi] - 0.25, strand[lo - shift:hi - shift] - 0.25
            score = float((a * b).sum())
            if score > best:
                best, aligned = score, np.full((width, 4), 0.25)
                aligned[lo:hi] = strand[lo - shift:hi - shift]
    return aligned


# ---------------------------------------------------------------- report


def class_table(contributions: Contributions, motifs: list[Motif]) -> list[dict]:
    """Per motif and class: seqlets, and sequences with at least one seqlet (of the sequences explained for it)."""
    rows = []
    classes = contributions.target_class
    for motif in motifs:
        hit = np.zeros(len(classes), dtype=bool)
        seqlets = np.zeros(len(contributions.class_names), dtype=int)
        for sequence, *_ in motif.seqlets:
            hit[sequence] = True
            seqlets[classes[sequence]] += 1
        for c, name in enumerate(contributions.class_names):
            n = int((classes == c).sum())
            if n:
                rows.append({"motif": motif.name, "class": name, "sequences": n, "seqlets": int(seqlets[c]),
                             "sequences_with_motif": int(hit[classes == c].sum())})
    return rows


def write_report(out: str | Path, contributions: Contributions, motifs: list[Motif],
                 matches: dict[str, list[JasparMatch]], jaspar: JasparSet | None = None) -> list[Path]:
    """``report.md``, ``motifs.json`` and ``logos/<motif>.png`` into ``out``.

    A logo shows the motif's contributions (CWM), its bits, and the best JASPAR match's bits, drawn in
    the orientation and shift that best fit the motif (:func:`align_match`).
    """
    from gr_ft.utils import atomic_write_text

    from .plots import plot_motif_logos

    out = Path(out)
    (out / "logos").mkdir(parents=True, exist_ok=True)
    written = []
    for motif in motifs:
        best = matches.get(motif.name, [None])[0]
        target = None
        if best is not None and jaspar is not None:
            ppm = jaspar.ppms[jaspar.ids.index(best.matrix_id)].T  # W', 4
            target = (f"{best.matrix_id} {best.name}", align_match(motif.ppm, ppm))
        written.append(plot_motif_logos(motif.cwm, motif.ppm, out / "logos" / f"{motif.name}.png",
                                        title=f"{motif.name}: {len(motif.seqlets)} seqlets, {motif.consensus}",
                                        match=target))
    table = class_table(contributions, motifs)
    summary = {"method": contributions.method, "sequences": len(contributions.ids),
               "jaspar_release": jaspar.release if jaspar else None, "class_table": table,
               "motifs": [{"name": m.name, "consensus": m.consensus, "seqlets": len(m.seqlets),
                           "ppm": np.round(m.ppm, 4).tolist(), "cwm": np.round(m.cwm, 6).tolist(),
                           "matches": [vars(x) for x in matches.get(m.name, [])]} for m in motifs]}
    written.append(atomic_write_text(out / "motifs.json", json.dumps(summary, indent=1) + "\n"))
    written.append(atomic_write_text(out / "report.md", report_markdown(summary)))
    return written


def report_markdown(summary: dict) -> str:
    """The markdown report of a ``motifs.json`` summary (logos linked from ``logos/``)."""
    lines = [f"# Motifs learned by the model ({summary['method']} attributions, {summary['sequences']} sequences)", "",
             "TF-MoDISco (modisco-lite) seqlets clustered into motifs; `pos_*` motifs raise the explained output, "
             "`neg_*` lower it. Matches: TOMTOM (memelite) against "
             f"{summary['jaspar_release'] or 'JASPAR'} CORE vertebrates; q = Benjamini-Hochberg over the database.", ""]
    if not summary["motifs"]:
        lines += ["No motif was found.", ""]
    for motif in summary["motifs"]:
        lines += [f"## {motif['name']}: {motif['consensus']} ({motif['seqlets']} seqlets)", "",
                  f"![{motif['name']}](logos/{motif['name']}.png)", "",
                  "| rank | JASPAR | factor | p-value | q-value |", "|---|---|---|---|---|"]
        lines += [f"| {i + 1} | {m['matrix_id']} | {m['name']} | {m['p_value']:.2g} | {m['q_value']:.2g} |"
                  for i, m in enumerate(motif["matches"])]
        lines.append("")
    if summary["class_table"]:
        classes = list(dict.fromkeys(row["class"] for row in summary["class_table"]))
        sizes = {row["class"]: row["sequences"] for row in summary["class_table"]}
        lines += ["## Motif x class", "",
                  "Seqlets per motif in the sequences explained for each class (sequences with at least one "
                  "seqlet / sequences of the class).", "",
                  "| motif | " + " | ".join(f"{c} (n={sizes[c]})" for c in classes) + " |",
                  "|---|" + "---|" * len(classes)]
        cells = {(row["motif"], row["class"]): row for row in summary["class_table"]}
        for motif in summary["motifs"]:
            row = [cells[motif["name"], c] for c in classes]
            lines.append(f"| {motif['name']} | " + " | ".join(
                f"{r['seqlets']} ({r['sequences_with_motif']}/{r['sequences']})" for r in row) + " |")
        lines.append("")
    return "\n".join(lines)
