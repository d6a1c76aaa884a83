"""A slice of the real E. coli genome written as a small FASTA for tests (skips when ../shared is absent)."""

from __future__ import annotations

import gzip
from pathlib import Path

from conftest import shared_data

ECOLI = "corpus/ecoli_k12_mg1655_genome.fasta.gz"
ECOLI_CONTIG = "NC_000913.3"


def ecoli_bases(length: int) -> str:
    """The first ``length`` bases of E. coli K-12 MG1655 (read from the shared gzip FASTA)."""
    path = shared_data(ECOLI)
    bases: list[str] = []
    total = 0
    with gzip.open(path, "rt") as handle:
        next(handle)  # header
        for line in handle:
            bases.append(line.strip().upper())
            total += len(bases[-1])
            if total >= length:
                break
    return "".join(bases)[:length]


def write_fasta(path: Path, records: dict[str, str], width: int = 60) -> Path:
    """A FASTA file with fixed-width lines (pyfaidx needs them)."""
    with open(path, "w") as handle:
        for name, sequence in records.items():
            handle.write(f">{name} test slice\n")
            handle.writelines(sequence[i : i + width] + "\n" for i in range(0, len(sequence), width))
    return path
