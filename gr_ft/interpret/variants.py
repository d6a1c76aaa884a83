"""Variant effects: score each VCF record as the change of a model's output from REF to ALT.

Rules (docs/variants.md states them for users; tests/test_variants.py tests each):

- **one row per ALT**: a multi-allelic record gives one output row per ALT allele, in VCF order;
  every row keeps the VCF line number (1-based, header lines counted) and has a ``status``
  (``scored`` / ``skipped``) and a ``reason``. Rows keep the input order.
- **REF is checked** against the genome; a mismatch is skipped with reason ``ref_mismatch`` (what the
  genome has), logged with its VCF line and counted: never scored.
- **alleles** must be A/C/G/T only; symbolic (``<DEL>``), ``*``, missing (``.``) or IUPAC alleles are
  skipped (``non_acgt_allele``). SNVs, MNVs and indels up to ``max_indel_bp`` (longest allele) are scored;
  longer ones are skipped (``indel_too_long``).
- **the window** is ``window_bp`` bases (default: the run's input length), re-tokenized whole with the
  run's tokenizer. The REF window is the reference allele with ``(W - len(REF)) // 2`` genome bases
  before it and the rest after; the ALT window is built the same way around the ALT allele, so both
  are W bases, each centred on its allele (an indel shifts the flanks, never the length).
- **off the contig**: an unknown chromosome is ``unknown_contig`` (but a VCF none of whose
  chromosomes are in the genome is an error: the naming clash ``chr1``/``1``); a position past the
  contig end is ``position_off_contig``; a window that would run off the contig end is skipped
  (``window_off_contig``), not padded: padding with N would show the model bases it never trained on.
- **N in the window** (any non-ACGT base in either window): skipped (``n_in_window``), for the same reason.
- **the score** is ``alt - ref`` of the task output on the chosen scale (logit or prob per class;
  the value for regression). ``both_strands`` averages it with the same difference on the reverse
  complement of both windows. A run does not record whether its task is strand-symmetric (gr-ft trains
  without reverse-complement augmentation), so gr-ft never assumes it: ask for ``--both-strands`` on
  tasks that are (TF binding, accessibility), not on stranded ones (splice sites, TSS-oriented promoters).

Example:
    >>> records = read_vcf("variants.vcf")
    >>> scorer = supervised_scorer(load_run("runs/demo"), "logit", both_strands=False)
    >>> rows = score_variants(scorer, open_genome("genome.fa"), records, VariantConfig(window_bp=70))
    >>> rows[0].status, rows[0].deltas
    ('scored', [-0.31, 0.31])
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence


from ..genome import Genome, contig_hint, reverse_complement
from ..utils import atomic_write_text, progress_bar

__all__ = ["VariantConfig", "VariantRecord", "VariantWindows", "ScoredVariant", "SKIP_REASONS", "read_vcf",
           "check_vcf_contigs", "variant_windows", "score_variants", "supervised_scorer", "run_input_bp",
           "write_scores", "WindowScorer"]

logger = logging.getLogger(__name__)

ACGT = frozenset("ACGT")
SKIP_REASONS = ("unknown_contig", "position_off_contig", "non_acgt_allele", "ref_mismatch", "indel_too_long",
                "window_off_contig", "n_in_window", "not_snv", "token_not_in_vocab")
"""Every reason a row can be skipped for (the ``reason`` column starts with one of these)."""


@dataclass
class VariantConfig:
    """How variants are scored."""

    window_bp: int
    """Bases of each window (default on the command line: the run's input length) (--window-bp)."""
    both_strands: bool = False
    """Average the score over the forward and reverse-complement windows (--both-strands)."""
    output: str = "logit"
    """Scale of the task output: logit or prob (--output)."""
    max_indel_bp: int = 20
    """Longest allele scored; longer records are skipped as indel_too_long (--max-indel-bp)."""
    batch_variants: int = 256
    """Records windowed and scored together (memory) (--batch-variants)."""

    def __post_init__(self):
        if self.window_bp < 3:
            raise ValueError(f"--window-bp must be >= 3, got {self.window_bp}")
        if self.output not in ("logit", "prob"):
            raise ValueError(f"--output must be logit or prob, got {self.output!r}")
        if not 1 <= self.max_indel_bp < self.window_bp:
            raise ValueError(f"--max-indel-bp must be between 1 and --window-bp - 1 ({self.window_bp - 1}), "
                             f"got {self.max_indel_bp}")
        if self.batch_variants < 1:
            raise ValueError(f"--batch-variants must be >= 1, got {self.batch_variants}")


@dataclass
class VariantRecord:
    """One ALT allele of one VCF record."""

    line: int
    """1-based line of the record in the VCF (header lines counted)."""
    chrom: str
    pos: int
    """1-based position of the first REF base, as in the VCF."""
    id: str
    ref: str
    alt: str

    @property
    def is_snv(self) -> bool:
        return len(self.ref) == len(self.alt) == 1


@dataclass
class VariantWindows:
    """The REF and ALT windows of a record (each ``window_bp`` long) and where each allele starts in them."""

    ref: str
    alt: str
    ref_start: int
    alt_start: int


@dataclass
class ScoredVariant:
    """One output row."""

    record: VariantRecord
    status: str = "skipped"
    reason: str = ""
    ref_values: list[float] = field(default_factory=list)
    alt_values: list[float] = field(default_factory=list)

    @property
    def deltas(self) -> list[float]:
        return [a - r for r, a in zip(self.ref_values, self.alt_values)]


# ---------------------------------------------------------------- VCF


def _header_lines(path: Path) -> int:
    """Lines before the first record (``##`` meta lines and the ``#CHROM`` line), for record line numbers."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    count = 0
    with (gzip.open(path, "rt") if compressed else open(path)) as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            count += 1
    return count


def read_vcf(path: str | Path) -> Iterator[VariantRecord]:
    """Records of a VCF/BCF (plain, bgzip; cyvcf2), one :class:`VariantRecord` per ALT, in file order.

    An ALT-less record (ALT ``.``) gives one record with ``alt=""`` (skipped as non_acgt_allele).
    A missing or unreadable file raises ValueError naming it.
    """
    from .targets import require

    cyvcf2 = require("cyvcf2")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--vcf {path}: no such file; give a VCF (plain or bgzip) or BCF file")
    try:
        vcf = cyvcf2.VCF(str(path))
    except OSError as err:
        raise ValueError(f"--vcf {path}: not a readable VCF/BCF ({str(err).splitlines()[0]}); it needs a "
                         f"##fileformat=VCF header and a #CHROM line (check with bcftools view -h)") from err
    first = _header_lines(path) if path.suffix != ".bcf" else 0
    for index, variant in enumerate(vcf):
        line = first + index + 1
        for alt in variant.ALT or [""]:
            yield VariantRecord(line, variant.CHROM, variant.POS, variant.ID or ".", variant.REF, alt)
    vcf.close()


def check_vcf_contigs(records: Sequence[VariantRecord], genome: Genome, vcf_path: str) -> None:
    """Refuse a VCF none of whose chromosomes is in the genome (the naming clash chr1 vs 1), naming the fix."""
    chroms = list(dict.fromkeys(r.chrom for r in records))
    if chroms and not any(c in genome for c in chroms):
        first = next(r for r in records if r.chrom == chroms[0])
        raise ValueError(f"{vcf_path}:{first.line}: chromosome {chroms[0]!r} (and every other chromosome of the VCF) "
                         f"is not in --genome {genome.source}{contig_hint(chroms[0], genome.lengths)}")


# ---------------------------------------------------------------- windows


def _allele_problem(record: VariantRecord, genome: Genome, max_indel_bp: int) -> Optional[str]:
    """The skip reason of a record before any window is cut, or None."""
    if record.chrom not in genome:
        return f"unknown_contig: {record.chrom!r} is not in the genome"
    length = genome.lengths[record.chrom]
    if record.pos < 1 or record.pos - 1 + len(record.ref) > length:
        return f"position_off_contig: {record.chrom} has {length} bp"
    for name, allele in (("REF", record.ref), ("ALT", record.alt)):
        if not allele or not set(allele) <= ACGT:
            return f"non_acgt_allele: {name} {allele or '.'!r}"
    found = genome.fetch(record.chrom, record.pos - 1, record.pos - 1 + len(record.ref))
    if found != record.ref:
        return f"ref_mismatch: VCF REF {record.ref}, genome has {found}"
    if max(len(record.ref), len(record.alt)) > max_indel_bp:
        return f"indel_too_long: longest allele {max(len(record.ref), len(record.alt))} bp > {max_indel_bp}"
    return None


def variant_windows(record: VariantRecord, genome: Genome, window_bp: int,
                    max_indel_bp: int = 20) -> tuple[Optional[VariantWindows], str]:
    """(windows, "") for a scorable record, else (None, reason); the rules are in the module docstring."""
    problem = _allele_problem(record, genome, max_indel_bp)
    if problem:
        return None, problem
    begin = record.pos - 1  # 0-based first REF base
    after = begin + len(record.ref)
    left_ref, left_alt = (window_bp - len(record.ref)) // 2, (window_bp - len(record.alt)) // 2
    right_ref, right_alt = window_bp - len(record.ref) - left_ref, window_bp - len(record.alt) - left_alt
    lo, hi = begin - max(left_ref, left_alt), after + max(right_ref, right_alt)
    if lo < 0 or hi > genome.lengths[record.chrom]:
        return None, f"window_off_contig: needs {record.chrom}:{lo}-{hi} (0-based), contig has " \
                     f"{genome.lengths[record.chrom]} bp"
    region = genome.fetch(record.chrom, lo, hi)
    before, later = region[: begin - lo], region[after - lo :]
    ref = before[len(before) - left_ref :] + record.ref + later[:right_ref]
    alt = before[len(before) - left_alt :] + record.alt + later[:right_alt]
    if not (set(ref) <= ACGT and set(alt) <= ACGT):
        return None, "n_in_window: the window holds N or another non-ACGT base"
    return VariantWindows(ref, alt, left_ref, left_alt), ""


# ---------------------------------------------------------------- scoring


def run_input_bp(predictor) -> Optional[int]:
    """Bases the run's model reads in one window (``data.max_length`` tokens), or None for BPE."""
    from ..data import _max_chars

    return _max_chars(predictor.tokenizer, predictor.cfg.data.max_length)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _strand_sequences(windows: list[VariantWindows], both_strands: bool) -> list[str]:
    """ref, alt (and their reverse complements) of each record, flattened: 2 or 4 sequences per record."""
    sequences = []
    for w in windows:
        sequences += [w.ref, w.alt]
        if both_strands:
            sequences += [reverse_complement(w.ref), reverse_complement(w.alt)]
    return sequences


WindowScores = list[tuple[Optional[tuple[list[float], list[float]]], str]]
"""Per window: ((REF outputs, ALT outputs), "") or (None, skip reason)."""
WindowScorer = Callable[[list[VariantWindows]], WindowScores]


def supervised_scorer(predictor, output: str, both_strands: bool) -> WindowScorer:
    """Windows -> REF and ALT task outputs (C each, on ``output``'s scale) through the run's prediction engine,
    averaged over the two strands when ``both_strands``; REF and ALT of a record run in the same batch."""
    from .targets import task_outputs

    problem_type = predictor.spec.problem_type
    if problem_type == "token_classification":
        raise ValueError("variant scoring needs one output per sequence; a per-position (token classification) model "
                         "has one per base: use gr-ft interpret --method ism --position P instead")
    if problem_type == "regression" and output == "prob":
        raise ValueError("a regression model has no probabilities; use --output logit")
    per_record = 4 if both_strands else 2

    def score(windows: list[VariantWindows]) -> WindowScores:
        logits = predictor.engine.run(_strand_sequences(windows, both_strands)).logits
        values = task_outputs(logits, problem_type, output).numpy()
        strands = values.reshape(len(windows), per_record // 2, 2, -1)  # record, strand, ref/alt, class
        return [((s[:, 0].mean(0).tolist(), s[:, 1].mean(0).tolist()), "") for s in strands]

    return score


def score_variants(scorer: WindowScorer, genome: Genome, records: Iterable[VariantRecord], cfg: VariantConfig,
                   *, snv_only: bool = False, progress: bool = False,
                   total: Optional[int] = None) -> list[ScoredVariant]:
    """One :class:`ScoredVariant` per record, in input order, ``cfg.batch_variants`` records at a time.

    ``scorer`` is :func:`supervised_scorer` or :func:`gr_ft.interpret.zero_shot.zero_shot_scorer`;
    ``snv_only`` skips every other record (``not_snv``).
    """
    rows: list[ScoredVariant] = []
    bar = progress_bar(total=total, desc="variants", unit="var", enabled=progress)
    for chunk in _chunks(records, cfg.batch_variants):
        batch = [ScoredVariant(record) for record in chunk]
        scorable, windows = [], []
        for row in batch:
            window, reason = variant_windows(row.record, genome, cfg.window_bp, cfg.max_indel_bp)
            if window is not None and snv_only and not row.record.is_snv:
                window, reason = None, "not_snv: zero-shot scores are for single-base substitutions"
            if window is None:
                row.reason = reason
            else:
                scorable.append(row)
                windows.append(window)
        for row, (values, reason) in zip(scorable, scorer(windows) if windows else []):
            if values is None:
                row.reason = reason
            else:
                row.status, (row.ref_values, row.alt_values) = "scored", values
        rows.extend(batch)
        bar.update(len(chunk))
    bar.close()
    _log_ref_mismatches(rows)
    return rows


def _log_ref_mismatches(rows: list[ScoredVariant]) -> None:
    lines = sorted({row.record.line for row in rows if row.reason.startswith("ref_mismatch")})
    if lines:
        shown = ", ".join(map(str, lines[:20])) + (" ..." if len(lines) > 20 else "")
        logger.warning("%d VCF records have a REF that does not match the genome (lines %s); they are not scored. "
                       "Check that the VCF was called against this genome build", len(lines), shown)


# ---------------------------------------------------------------- output


def write_scores(rows: list[ScoredVariant], path: str | Path, value_names: list[str], target: Optional[int],
                 prefix: tuple[str, str, str] = ("ref_", "alt_", "delta_")) -> Path:
    """The TSV (atomically): VCF line, chrom, pos, id, ref, alt, status, reason, ``score`` (the delta of output
    ``target``, when one is chosen), then ref/alt/delta per output; empty cells for skipped rows."""
    columns = ["line", "chrom", "pos", "id", "ref", "alt", "status", "reason"] + (["score"] if target is not None else [])
    columns += [f"{p}{name}" for p in prefix for name in value_names]
    lines = ["\t".join(columns)]
    blank = [""] * (len(columns) - 8)
    for row in rows:
        r = row.record
        cells = [str(r.line), r.chrom, str(r.pos), r.id, r.ref, r.alt or ".", row.status, row.reason or "."]
        if row.status == "scored":
            values = row.ref_values + row.alt_values + row.deltas
            cells += ([f"{row.deltas[target]:.6g}"] if target is not None else []) + [f"{v:.6g}" for v in values]
        else:
            cells += blank
        lines.append("\t".join(cells))
    return atomic_write_text(path, "\n".join(lines) + "\n")
