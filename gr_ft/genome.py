"""A reference genome read base by base (pyfaidx), and the intervals gr-ft reads from it.

Coordinates are 0-based and half-open everywhere inside gr-ft (BED's convention); only
``chr:start-end`` region strings are read 1-based and inclusive, as samtools and genome browsers
show them. A genome is a FASTA file, plain or gzip-compressed: pyfaidx needs random access, so a
gzip FASTA is decompressed once into the gr-ft cache (``$GRFT_CACHE_DIR``, default
``~/.cache/gr-ft``) under ``genomes/``, keyed by the file's path, size and modification time, and
reused afterwards. A plain FASTA in a read-only folder gets its ``.fai`` index in the cache too.

Example:
    >>> genome = open_genome("/work/shared/data/corpus/ecoli_k12_mg1655_genome.fasta.gz")
    >>> genome.lengths
    {'NC_000913.3': 4641652}
    >>> genome.fetch("NC_000913.3", 0, 10)
    'AGCTTTTCAT'
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from .utils import cache_dir

__all__ = ["Genome", "Interval", "open_genome", "cache_dir", "parse_region", "read_bed", "contig_hint",
           "reverse_complement"]

logger = logging.getLogger(__name__)

_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")
_REGION = re.compile(r"^(?P<chrom>[^:\s]+)(?::(?P<start>[\d,]+)-(?P<end>[\d,]+))?$")


def reverse_complement(sequence: str) -> str:
    """``"AACG"`` -> ``"CGTT"`` (N stays N)."""
    return sequence.translate(_COMPLEMENT)[::-1]


@dataclass(frozen=True)
class Interval:
    """A 0-based half-open stretch of one contig; ``name`` is the BED name column (or empty)."""

    chrom: str
    start: int
    end: int
    name: str = ""

    @property
    def length(self) -> int:
        return self.end - self.start


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _plain_copy(path: Path) -> Path:
    """The decompressed FASTA of a gzip file in the cache, written once (atomically) and reused."""
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    stem = path.name.removesuffix(".gz").removesuffix(".bgz")
    target = cache_dir() / "genomes" / f"{key}_{stem}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    logger.info("decompressing %s once into %s (pyfaidx needs a plain or bgzip FASTA)", path, target)
    try:
        with gzip.open(path, "rb") as source, open(tmp, "wb") as sink:
            shutil.copyfileobj(source, sink, length=1 << 20)
        os.replace(tmp, target)
    except (OSError, EOFError) as err:
        raise ValueError(f"--genome {path}: cannot decompress it ({err}); give a plain or gzip FASTA") from err
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _index_name(fasta: Path) -> Optional[str]:
    """The .fai beside the FASTA when it exists or can be written there, else one in the cache."""
    beside = fasta.with_name(fasta.name + ".fai")
    if beside.exists() or os.access(fasta.parent, os.W_OK):
        return None  # pyfaidx's default
    key = hashlib.sha1(str(fasta.resolve()).encode()).hexdigest()[:16]
    folder = cache_dir() / "genomes"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{key}_{fasta.name}.fai")


class Genome:
    """Random access to a FASTA's contigs; sequences come back upper-case.

    Example:
        >>> genome.fetch("chr1", 100, 110)      # 0-based, half-open
        'ACGTNNACGT'
    """

    def __init__(self, fasta, source: str):
        self._fasta, self.source = fasta, source
        self.lengths: dict[str, int] = {name: len(record) for name, record in fasta.records.items()}

    def __contains__(self, chrom: str) -> bool:
        return chrom in self.lengths

    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Bases ``[start, end)`` of ``chrom``; the interval must lie on the contig."""
        self.check_interval(Interval(chrom, start, end), where=f"--genome {self.source}")
        return self._fasta[chrom][start:end]

    def check_interval(self, interval: Interval, where: str) -> None:
        """Raise ValueError naming ``where`` when the interval's contig is unknown or it runs off the contig."""
        if interval.chrom not in self.lengths:
            raise ValueError(f"{where}: contig {interval.chrom!r} is not in the genome {self.source}"
                             f"{contig_hint(interval.chrom, self.lengths)}")
        length = self.lengths[interval.chrom]
        if not 0 <= interval.start < interval.end <= length:
            raise ValueError(f"{where}: interval {interval.chrom}:{interval.start}-{interval.end} (0-based, half-open) "
                             f"runs off contig {interval.chrom}, which has {length:,} bp (valid: 0 <= start < end <= "
                             f"{length})")


def contig_hint(name: str, contigs) -> str:
    """A ``; did you mean ...`` for the usual naming clash (``chr1`` vs ``1``), else the genome's contigs."""
    names = list(contigs)
    flipped = name[3:] if name.startswith("chr") else f"chr{name}"
    if flipped in contigs:
        return (f"; it has {flipped!r}: the files name contigs differently (chr1 vs 1). Rename the contigs of one "
                f"file to match the other, e.g. bcftools annotate --rename-chrs for a VCF")
    shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
    return f"; its contigs are {shown}"


def open_genome(path: str | Path) -> Genome:
    """A :class:`Genome` for a plain or gzip FASTA; bad files raise ValueError naming the file and the fix."""
    try:
        import pyfaidx
    except ImportError as err:
        raise ValueError('reading a genome needs pyfaidx: pip install -e ".[interpret]" (or pip install pyfaidx)') from err

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--genome {path}: no such file; give a FASTA file (plain or .gz)")
    plain = _plain_copy(path) if _is_gzip(path) else path
    try:
        fasta = pyfaidx.Fasta(str(plain), as_raw=True, sequence_always_upper=True, indexname=_index_name(plain),
                              read_long_names=False)
    except (pyfaidx.FastaIndexingError, pyfaidx.FetchError, ValueError, OSError) as err:
        raise ValueError(f"--genome {path}: not a readable FASTA ({err}). Every record needs a '>' header and lines "
                         f"of equal length (reformat with `samtools faidx` / `seqkit seq -w 60`)") from err
    genome = Genome(fasta, str(path))
    if not genome.lengths:
        raise ValueError(f"--genome {path}: the file holds no sequences; give a FASTA file")
    return genome


def parse_region(text: str, genome: Genome) -> Interval:
    """``chr:start-end`` (1-based, inclusive; commas allowed) or ``chr`` (the whole contig) -> an :class:`Interval`.

        >>> parse_region("NC_000913.3:1-1,000", genome)
        Interval(chrom='NC_000913.3', start=0, end=1000, name='')
    """
    match = _REGION.match(text.strip())
    if not match:
        raise ValueError(f"--regions {text!r}: write chr:start-end (1-based, inclusive, e.g. chr1:1001-2000) or a "
                         f"contig name")
    chrom = match["chrom"]
    if chrom not in genome:
        raise ValueError(f"--regions {text}: contig {chrom!r} is not in the genome {genome.source}"
                         f"{contig_hint(chrom, genome.lengths)}")
    if match["start"] is None:
        return Interval(chrom, 0, genome.lengths[chrom])
    start, end = int(match["start"].replace(",", "")), int(match["end"].replace(",", ""))
    if start < 1 or end < start:
        raise ValueError(f"--regions {text}: need 1 <= start <= end (1-based, inclusive)")
    interval = Interval(chrom, start - 1, end)
    genome.check_interval(interval, where=f"--regions {text}")
    return interval


def read_bed(path: str | Path, genome: Genome) -> Iterator[Interval]:
    """The intervals of a BED file (first 3 columns, plus the name if present), checked against the genome.

    ``track``/``browser``/``#`` lines and blank lines are skipped; a bad line raises ValueError ``FILE:LINE: ...``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--bed {path}: no such file; give a BED file (chrom, start, end[, name], 0-based)")
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rt") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.rstrip("\n\r").split("\t")
            where = f"{path}:{number}"
            if len(fields) < 3 or not fields[1].isdigit() or not fields[2].isdigit():
                raise ValueError(f"{where}: a BED line needs tab-separated chrom, start, end (integers, 0-based); "
                                 f"got {line.strip()[:80]!r}")
            interval = Interval(fields[0], int(fields[1]), int(fields[2]), fields[3] if len(fields) > 3 else "")
            genome.check_interval(interval, where=where)
            yield interval
