"""``gr-ft interpret``: explain a run's predictions for some sequences, one npz per method plus PNGs.

Files written to ``--out DIR`` (every file atomically), for N sequences of up to L bases
(shorter ones NaN-padded), A letters (ACGT, 20 amino acids; ``-`` = deletion), C model outputs:

- every ``<method>.npz`` holds ``ids`` (N), ``sequences`` (N), ``lengths`` (N), ``target_class`` (N, the
  output explained per sequence), ``class_names`` (C), ``output`` (``logit``/``prob``), ``method``;
- ``ism.npz``: ``ism`` (N x L x A, effect on each sequence's target output), ``ism_all_outputs``
  (N x L x A x C), ``reference_output`` (N x C), ``letters`` (A);
- ``ig.npz`` / ``ixg.npz`` / ``saliency.npz``: ``bases`` (N x L), ``tokens`` (N x T),
  ``token_starts`` / ``token_ends`` (N x T, -1 for special tokens), and for ig ``convergence_delta`` (N);
- ``attention.npz``: ``maps`` (N x layers x heads x L x L; heads = 1 unless ``--all-heads``),
  ``received`` (N x layers x heads x L), ``layers``;
- ``plots/``: per sequence (the first ``--max-plots``) ``NNN_<id>_ism_map.png`` (mutation map),
  ``NNN_<id>_<method>_logo.png`` (logo of ISM importance or the attribution), ``NNN_<id>_attention.png``
  (last chosen layer, heads averaged).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
from pathlib import Path
from typing import Optional

from gr_ft.utils import save_npz

import numpy as np

__all__ = ["interpret_main", "motifs_main", "METHODS"]

logger = logging.getLogger(__name__)

METHODS = ("ism", "ig", "ixg", "saliency", "attention")
EXAMPLES = """examples:
  gr-ft interpret runs/demo --input candidates.fa --method ism --out interp/
  gr-ft interpret runs/demo --input peaks.csv --method ism,ig --target 1 --output prob --out interp/
  gr-ft interpret runs/splice --input genes.fa --method ig --target donor --position 120 --out interp/
  gr-ft interpret runs/demo --input - --method attention --layers -1 --out interp/ < seqs.txt
  gr-ft interpret runs/peaks --input peaks.bed --genome hg38.fa.gz --method ism --out interp/
  gr-ft interpret runs/demo --input seqs.txt --method ism --deletions --max-plots 5 --out interp/
  gr-ft interpret runs/peaks --input peaks.fa --method ig --ig-baseline shuffle --references 10 --steps 20 --out interp/

methods: ism (every single-base substitution, re-tokenized), ig (integrated gradients), ixg (input x gradient),
saliency (|gradient|), attention (maps per layer); attributions and attention are mapped from tokens to bases
(each token's value spread evenly over the bases it covers). See docs/interpret.md.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gr-ft interpret", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Explain a run's outputs per base: in-silico mutagenesis, gradient attributions, attention.",
    )
    parser.add_argument("run_dir", help="a finished run folder (or a Hub repo id written by gr-ft push)")
    parser.add_argument("--input", required=True, help="FASTA, CSV/TSV with a sequence column, one sequence per line, "
                                                       "or - for standard input; with --genome a BED file of regions")
    parser.add_argument("--genome", help="reference FASTA (plain or gzip): --input is then a BED file (0-based, "
                                         "half-open; the name column, else chrom:start-end, is each sequence's id)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run model code shipped with the run's backbone (DNABERT-2, HyenaDNA): only if you trust it")
    parser.add_argument("--method", action="append", required=True,
                        help=f"one or more of {', '.join(METHODS)} (repeat the flag or separate by commas)")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--target", help="class to explain, by name or index (default: class 1 for binary models, "
                                         "each sequence's predicted class for multi-class ones)")
    parser.add_argument("--output", choices=["logit", "prob"], default="logit", help="explain the logit (default) or "
                                                                                     "the probability")
    parser.add_argument("--position", type=int, help="per-position models: the 0-based base whose output is explained")
    parser.add_argument("--deletions", action="store_true", help="ism: also score deleting each base")
    parser.add_argument("--steps", type=int, default=50, help="ig: integration steps (default 50)")
    parser.add_argument("--ig-baseline", choices=["pad", "shuffle"], default="pad",
                        help="ig: integrate from every token replaced by [PAD] (default) or from dinucleotide shuffles "
                             "of each sequence, averaged (DNA only; sharper at motifs, --references times the cost)")
    parser.add_argument("--references", type=int, default=10, help="ig --ig-baseline shuffle: shuffles per sequence "
                        "(default 10)")
    parser.add_argument("--seed", type=int, default=0, help="ig --ig-baseline shuffle: seed of the shuffles (default 0)")
    parser.add_argument("--batch-size", type=int, default=128, help="ism: mutants per forward pass (default 128)")
    parser.add_argument("--layers", type=int, nargs="+", help="attention: layers to keep (0-based, -1 = last; "
                                                              "default all)")
    parser.add_argument("--all-heads", action="store_true", help="attention: keep every head (default: their mean)")
    parser.add_argument("--max-plots", type=int, default=20, help="PNGs for the first N sequences per method "
                                                                  "(default 20; 0 = none)")
    parser.add_argument("--no-merge", action="store_true", help="run with the adapter unmerged (slower; for checks)")
    return parser


def parse_methods(values: list[str]) -> list[str]:
    """``["ism,ig", "attention"]`` -> ``["ism", "ig", "attention"]``; unknown names list the choices."""
    methods = [m.strip() for value in values for m in value.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--method {', '.join(unknown) or '(empty)'}: choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(methods))


def read_regions(bed: str, genome_path: str) -> tuple[list[str], list[str]]:
    """(ids, sequences) of the intervals of a BED file, read from the genome (upper case)."""
    from gr_ft.genome import open_genome, read_bed

    genome = open_genome(genome_path)
    intervals = list(read_bed(bed, genome))
    if not intervals:
        raise ValueError(f"--input {bed}: no BED intervals in it; give chrom, start, end lines (0-based, half-open)")
    ids = [i.name or f"{i.chrom}:{i.start + 1}-{i.end}" for i in intervals]
    return ids, [genome.fetch(i.chrom, i.start, i.end).upper() for i in intervals]


def read_input(path: str, alphabet: str, genome: Optional[str] = None) -> tuple[list[str], list[str]]:
    """(ids, sequences) from a file, from standard input for ``-`` (format guessed from the first line), or
    from the regions of a BED file in ``genome``."""
    from gr_ft.io import read_sequences

    if genome is not None:
        if alphabet != "dna":
            raise ValueError("--genome reads DNA regions, but this run's model reads protein; drop --genome")
        return read_regions(path, genome)
    if path != "-":
        return read_sequences(path, alphabet=alphabet)
    text = sys.stdin.read()
    first = next((line for line in text.splitlines() if line.strip()), "")
    suffix = ".fa" if first.startswith(">") else ".csv" if "sequence" in first.lower() and "," in first else ".txt"
    with tempfile.TemporaryDirectory() as folder:
        stdin_file = Path(folder) / f"stdin{suffix}"
        stdin_file.write_text(text)
        try:
            return read_sequences(stdin_file, alphabet=alphabet)
        except ValueError as err:
            raise ValueError(str(err).replace(str(stdin_file), "<stdin>")) from None


def _plot_name(index: int, record_id: str, what: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", record_id)[:40] or "seq"
    return f"{index:03d}_{safe}_{what}.png"


def _common(ids, sequences, predictor, target, classes, method) -> dict:
    return {"ids": np.array(ids), "sequences": np.array(sequences), "lengths": np.array([len(s) for s in sequences]),
            "target_class": classes, "class_names": np.array(predictor.spec.names or ["value"]),
            "output": np.array(target.output), "method": np.array(method)}


def run_ism(args, predictor, target, ids, sequences, out: Path) -> list[Path]:
    from .ism import ism
    from .plots import ism_importance, plot_attribution_logo, plot_mutation_map

    result = ism(predictor, sequences, target, deletions=args.deletions, batch_size=args.batch_size,
                 merge_adapter=not args.no_merge, progress=sys.stderr.isatty())
    selected = result.selected()
    written = [save_npz(out / "ism.npz", {**_common(ids, sequences, predictor, target, result.class_indices, "ism"),
                                          "ism": selected, "ism_all_outputs": result.effects,
                                          "reference_output": result.reference, "letters": np.array(list(result.letters))})]
    names = predictor.spec.names or ["value"]
    for i in range(min(args.max_plots, len(sequences))):
        what = f"{target.output} of {names[result.class_indices[i]]}"
        written.append(plot_mutation_map(selected[i], sequences[i], result.letters, out / "plots" /
                                         _plot_name(i, ids[i], "ism_map"), title=f"{ids[i]}: ISM, change of {what}"))
        importance = ism_importance(selected[i], sequences[i], result.letters)
        written.append(plot_attribution_logo(importance, sequences[i], out / "plots" / _plot_name(i, ids[i], "ism_logo"),
                                             title=f"{ids[i]}: ISM importance (minus mean substitution effect)",
                                             label="-mean effect", letters=result.letters.replace("-", "")))
    return written


def run_attribution(args, predictor, target, ids, *, sequences, out: Path, method: str) -> list[Path]:
    from .attribution import attribute
    from .ism import ism_letters
    from .plots import plot_attribution_logo

    result = attribute(predictor, sequences, method=method, target=target, n_steps=args.steps,
                       merge_adapter=not args.no_merge, baseline=args.ig_baseline, references=args.references,
                       seed=args.seed, progress=sys.stderr.isatty())
    arrays = {**_common(ids, sequences, predictor, target, result.class_indices, method), "bases": result.bases,
              "tokens": result.tokens, "token_starts": result.token_starts, "token_ends": result.token_ends}
    if result.convergence_delta is not None:
        arrays["convergence_delta"] = result.convergence_delta
    written = [save_npz(out / f"{method}.npz", arrays)]
    names = predictor.spec.names or ["value"]
    for i in range(min(args.max_plots, len(sequences))):
        title = f"{ids[i]}: {method} of {target.output} of {names[result.class_indices[i]]}, per base"
        written.append(plot_attribution_logo(result.bases[i], sequences[i], out / "plots" /
                                             _plot_name(i, ids[i], f"{method}_logo"), title=title, label=method,
                                             letters=ism_letters(predictor.tokenizer)))
    return written


def run_attention(args, predictor, ids, sequences, out: Path) -> list[Path]:
    from .attention import attention_maps
    from .plots import plot_attention_map

    result = attention_maps(predictor, sequences, layers=args.layers, average_heads=not args.all_heads,
                            progress=sys.stderr.isatty())
    written = [save_npz(out / "attention.npz", {
        "ids": np.array(ids), "sequences": np.array(sequences), "lengths": result.lengths, "method": np.array("attention"),
        "maps": result.maps, "received": result.received, "layers": np.array(result.layers)})]
    for i in range(min(args.max_plots, len(sequences))):
        length = len(sequences[i])
        mean_map = result.maps[i, -1, :, :length, :length].mean(0)
        written.append(plot_attention_map(mean_map, sequences[i], out / "plots" / _plot_name(i, ids[i], "attention"),
                                          title=f"{ids[i]}: attention, layer {result.layers[-1]} (0-based), mean of heads"))
    return written


def _check_args(args) -> None:
    from gr_ft.utils import check_output_folder

    check_output_folder(args.out, "--out")
    for flag, value, minimum in (("--steps", args.steps, 1), ("--batch-size", args.batch_size, 1),
                                 ("--max-plots", args.max_plots, 0), ("--references", args.references, 1)):
        if value < minimum:
            raise ValueError(f"{flag} must be >= {minimum}, got {value}")


def interpret_main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``gr-ft interpret``; bad input raises ValueError (the CLI prints it, exit 2)."""
    args = build_parser().parse_args(argv)
    methods = parse_methods(args.method)
    _check_args(args)
    from gr_ft.predictor import load_run

    from .targets import Target, class_index_of

    predictor = load_run(args.run_dir, trust_remote_code=args.trust_remote_code)
    class_index = None if args.target is None else class_index_of(args.target, predictor.spec.names)
    target = Target(output=args.output, class_index=class_index, position=args.position)
    ids, sequences = read_input(args.input, predictor.tokenizer.alphabet, args.genome)
    out = Path(args.out)
    for method in methods:
        if method == "ism":
            written = run_ism(args, predictor, target, ids, sequences, out)
        elif method == "attention":
            written = run_attention(args, predictor, ids, sequences, out)
        else:
            written = run_attribution(args, predictor, target, ids, sequences=sequences, out=out, method=method)
        print(f"{method}: wrote {written[0]} and {len(written) - 1} PNGs for {len(sequences)} sequences")
    return 0


MOTIF_EXAMPLES = """examples:
  gr-ft interpret runs/tf --input positives.fa --method ism --out interp/ && gr-ft motifs interp/
  gr-ft motifs interp/ --out interp/motifs_ig --method ig
  gr-ft motifs interp/ --min-seqlets 30 --window-bp 15 --flank-bp 5 --jaspar-release JASPAR2024

Writes DIR/motifs/ (or --out): report.md (per motif its logo, seqlet count, best JASPAR matches with
q-values; a motif x class table), motifs.json (the same, machine-readable) and logos/<motif>.png.
Attributions: ism.npz (hypothetical scores: ISM effects, mean-centred per base), else ig/ixg/saliency.
See docs/interpret.md.
"""


def build_motifs_parser() -> argparse.ArgumentParser:
    from .motifs import ATTRIBUTION_FILES, MotifConfig

    defaults = MotifConfig()
    parser = argparse.ArgumentParser(
        prog="gr-ft motifs", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=MOTIF_EXAMPLES,
        description="Motifs a model learned: TF-MoDISco on gr-ft interpret's attributions, matched to JASPAR "
                    "with TOMTOM.")
    parser.add_argument("dir", help="the --out folder of gr-ft interpret (holds ism.npz, ig.npz, ...)")
    parser.add_argument("--out", help="report folder (default: DIR/motifs)")
    parser.add_argument("--method", choices=ATTRIBUTION_FILES, help="attributions to use (default: the first "
                                                                    f"present of {', '.join(ATTRIBUTION_FILES)})")
    parser.add_argument("--window-bp", type=int, default=defaults.window_bp, help="seqlet core width (default 21)")
    parser.add_argument("--flank-bp", type=int, default=defaults.flank_bp, help="seqlet flank each side (default 10)")
    parser.add_argument("--min-seqlets", type=int, default=defaults.min_seqlets,
                        help="fewest seqlets of one sign to cluster (default 100)")
    parser.add_argument("--min-cluster-seqlets", type=int, default=defaults.min_cluster_seqlets,
                        help="fewest seqlets in a reported motif (default 20)")
    parser.add_argument("--max-seqlets", type=int, default=defaults.max_seqlets,
                        help="most seqlets of one sign clustered (default 20000)")
    parser.add_argument("--leiden-runs", type=int, default=defaults.leiden_runs,
                        help="Leiden clusterings per round (default 50; fewer = faster)")
    parser.add_argument("--top-matches", type=int, default=defaults.top_matches, help="JASPAR matches per motif "
                                                                                      "(default 3)")
    parser.add_argument("--jaspar-release", help="pyjaspar release (default: the latest it ships)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    return parser


def motifs_main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``gr-ft motifs``; bad input raises ValueError (the CLI prints it, exit 2)."""
    from gr_ft.utils import check_output_folder, progress_bar

    from .motifs import (MotifConfig, check_enough_sequences, find_motifs, load_contributions, load_jaspar,
                         match_motifs, write_report)

    args = build_motifs_parser().parse_args(argv)
    config = MotifConfig(window_bp=args.window_bp, flank_bp=args.flank_bp, min_seqlets=args.min_seqlets,
                         min_cluster_seqlets=args.min_cluster_seqlets, max_seqlets=args.max_seqlets,
                         leiden_runs=args.leiden_runs, top_matches=args.top_matches, seed=args.seed)
    out = check_output_folder(args.out or Path(args.dir) / "motifs", "--out")
    contributions = load_contributions(args.dir, args.method)  # input errors before the progress bar starts
    check_enough_sequences(contributions, config)
    with progress_bar(total=4, desc="motifs", unit="step") as bar:
        bar.set_postfix_str("reading JASPAR")
        jaspar = load_jaspar(args.jaspar_release)
        bar.update()
        bar.set_postfix_str(f"TF-MoDISco on {len(contributions.ids)} sequences")
        motifs = find_motifs(contributions, config)
        bar.update()
        if motifs:
            bar.set_postfix_str(f"TOMTOM against {len(jaspar.ids)} {jaspar.release} matrices")
            matches = match_motifs(motifs, jaspar, top=config.top_matches, pseudocount=config.query_pseudocount)
            bar.update()
            bar.set_postfix_str("report")
            written = write_report(out, contributions, motifs, matches, jaspar)
            bar.update()
    if not motifs:
        raise ValueError(f"TF-MoDISco found no motif in {len(contributions.ids)} sequences ({contributions.method}): "
                         f"explain more sequences, or lower --min-seqlets ({config.min_seqlets}) / "
                         f"--min-cluster-seqlets ({config.min_cluster_seqlets})")
    for motif in motifs:
        best = ", ".join(f"{m.matrix_id} {m.name} (q={m.q_value:.2g})" for m in matches[motif.name])
        print(f"{motif.name}: {motif.consensus}, {len(motif.seqlets)} seqlets; JASPAR: {best}")
    print(f"wrote {out / 'report.md'} and {len(written) - 2} logos ({len(motifs)} motifs from "
          f"{contributions.method}.npz)")
    return 0
