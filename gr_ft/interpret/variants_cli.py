"""``gr-ft variants``: score a VCF's variants with a run (alt - ref of its output) or zero-shot with an MLM head.

The rules (windows, skips, strands, the zero-shot score) are in :mod:`gr_ft.interpret.variants`,
:mod:`gr_ft.interpret.zero_shot` and docs/variants.md.
"""

from __future__ import annotations

import argparse
import collections
import sys
from typing import Optional

__all__ = ["variants_main", "build_parser"]

EXAMPLES = """examples:
  gr-ft variants runs/tf --vcf calls.vcf.gz --genome genome.fa.gz --out scores.tsv
  gr-ft variants runs/tf --vcf calls.vcf --genome genome.fa --out scores.tsv --both-strands --output prob
  gr-ft variants runs/splice --vcf calls.vcf --genome genome.fa --out scores.tsv --target donor --window-bp 400
  gr-ft variants runs/pretrain_dna --zero-shot --vcf calls.vcf --genome genome.fa --out llr.tsv --both-strands

output: one row per ALT allele in VCF order: line, chrom, pos, id, ref, alt, status (scored/skipped), reason,
score (delta of --target), then ref_/alt_/delta_ per output (zero-shot: ref_logp, alt_logp, delta_logp = the
masked-marginal log-likelihood ratio). Skipped rows say why (ref_mismatch, n_in_window, window_off_contig, ...).
See docs/variants.md.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gr-ft variants", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Score variants: the change of a run's output from REF to ALT on a window centred on each "
                    "variant, or (--zero-shot) a masked-LM log-likelihood ratio.",
    )
    parser.add_argument("run_dir", help="a finished run folder; with --zero-shot also a pretrained backbone folder "
                                        "(e.g. the output of gr-ft pretrain) or Hub id")
    parser.add_argument("--vcf", required=True, help="VCF (plain or bgzip) or BCF")
    parser.add_argument("--genome", required=True, help="reference FASTA the VCF was called against (plain or .gz)")
    parser.add_argument("--out", required=True, help="output TSV (written atomically)")
    parser.add_argument("--window-bp", type=int, help="bases per window (default: the run's input length; zero-shot "
                                                      "on a backbone: its pretraining window)")
    parser.add_argument("--both-strands", action="store_true", help="average the score over both strands (for "
                                                                     "strand-symmetric tasks; never assumed)")
    parser.add_argument("--output", choices=["logit", "prob"], default="logit", help="score the logit (default) or "
                                                                                     "the probability")
    parser.add_argument("--target", help="class whose delta is the score column (default: class 1 for binary, the "
                                         "value for regression; none for multi-class unless given)")
    parser.add_argument("--zero-shot", action="store_true", help="score with the backbone's masked-LM head (SNVs)")
    parser.add_argument("--max-indel-bp", type=int, default=20, help="longest allele scored (default 20)")
    parser.add_argument("--batch-variants", type=int, default=256, help="records scored together (default 256)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow model code shipped with the backbone to run; never switched on by a folder")
    return parser


def _target_index(args, spec) -> Optional[int]:
    from .targets import class_index_of

    if args.target is not None:
        return class_index_of(args.target, spec.names or ["value"])
    return {"binary": 1, "regression": 0}.get(spec.problem_type)


def _window_bp(args, default: Optional[int], what: str) -> int:
    if args.window_bp is not None:
        return args.window_bp
    if default is None:
        raise ValueError(f"{what} has no fixed number of bases per window (BPE tokenizer, or no pretraining "
                         f"config); pass --window-bp")
    return default


def _summary(rows) -> str:
    reasons = collections.Counter(row.reason.split(":")[0] for row in rows if row.status != "scored")
    scored = sum(row.status == "scored" for row in rows)
    skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    return f"{scored} of {len(rows)} alleles scored" + (f"; skipped: {skipped}" if skipped else "")


def variants_main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``gr-ft variants``; bad input raises ValueError (the CLI prints it, exit 2)."""
    from ..genome import open_genome
    from .variants import VariantConfig, check_vcf_contigs, read_vcf, run_input_bp, score_variants, \
        supervised_scorer, write_scores

    args = build_parser().parse_args(argv)
    genome = open_genome(args.genome)
    records = list(read_vcf(args.vcf))
    check_vcf_contigs(records, genome, args.vcf)
    if args.zero_shot:
        from .zero_shot import load_masked_lm, zero_shot_scorer

        mlm = load_masked_lm(args.run_dir, trust_remote_code=args.trust_remote_code)
        cfg = VariantConfig(_window_bp(args, mlm.window_bp, args.run_dir), args.both_strands, args.output,
                            args.max_indel_bp, args.batch_variants)
        scorer, names, target = zero_shot_scorer(mlm, args.both_strands), ["logp"], 0
    else:
        from ..predictor import load_run

        predictor = load_run(args.run_dir, trust_remote_code=args.trust_remote_code)
        cfg = VariantConfig(_window_bp(args, run_input_bp(predictor), args.run_dir), args.both_strands, args.output,
                            args.max_indel_bp, args.batch_variants)
        scorer = supervised_scorer(predictor, args.output, args.both_strands)
        names = [f"{args.output}_{n}" for n in predictor.spec.names] or ["value"]
        target = _target_index(args, predictor.spec)
    rows = score_variants(scorer, genome, records, cfg, snv_only=args.zero_shot, progress=True, total=len(records))
    write_scores(rows, args.out, names, target)
    print(f"wrote {args.out}: {_summary(rows)} (window {cfg.window_bp} bp"
          f"{', both strands' if cfg.both_strands else ''})", file=sys.stdout)
    return 0
