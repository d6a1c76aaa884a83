"""Run the k-mer logistic regression and CNN baselines on one dataset folder over several seeds.

    PYTHONPATH=. python benchmarks/baselines_quick.py --data ../shared/data/promoter/gue_prom_core_all --seeds 0 1 2
    # one baseline, a smaller CNN, imbalanced protein windows:
    PYTHONPATH=. python benchmarks/baselines_quick.py --data ../shared/data/ptm/musitedeep_phospho_Y \\
        --baselines cnn class_weighting=balanced cnn.epochs=5

Prints every run as it finishes, then a table of mean +- sd (over seeds) of test MCC, AUROC,
AUPRC and wall time. Every requested (baseline, seed) runs on every row of the splits; a
failure stops the script with its error instead of leaving a gap in the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from gr_ft.baselines import BASELINES, SUPPORTED_PROBLEM_TYPES, BaselineConfig, run_baseline
from harness import describe_splits, format_mean_sd, load_task_splits
from gr_ft.config import config_to_dict, load_config
from gr_ft.labels import infer_label_spec

TABLE_METRICS = ("mcc", "auroc", "auprc")


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example:\n  PYTHONPATH=. python benchmarks/baselines_quick.py "
               "--data ../shared/data/promoter/gue_prom_core_all --seeds 0 1 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="dataset folder with train/dev/test files (or one file)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to run (default: 0)")
    parser.add_argument("--baselines", nargs="+", default=list(BASELINES), choices=sorted(BASELINES),
                        help="baselines to run (default: all)")
    parser.add_argument("--alphabet", choices=("auto", "dna", "protein"), default="auto",
                        help="sequence alphabet; auto: dna if every letter is in ACGTN")
    parser.add_argument("--config", help="YAML BaselineConfig (sections kmer:, cnn:)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default: 1; on a busy shared CPU more threads can be far slower)")
    parser.add_argument("--quiet", action="store_true", help="hide per-epoch / per-C progress logs")
    parser.add_argument("--out", help="also write every run's full result as JSON here")
    parser.add_argument("overrides", nargs="*", help="BaselineConfig overrides, e.g. cnn.epochs=5 kmer.k_max=5")
    return parser.parse_args(argv)


def mean_sd(values: list[float], digits: int = 3) -> str:
    """'mean +- sd' (sample sd); '-' for the sd of a single value."""
    return format_mean_sd(values, digits, plus_minus="+-")


def summary_table(results: list[dict]) -> str:
    """Mean +- sd over seeds of test MCC/AUROC/AUPRC, dev MCC and wall time, one row per baseline."""
    header = f"{'baseline':<12} {'seeds':>5}  " + "  ".join(f"{'test ' + m.upper():<16}" for m in TABLE_METRICS)
    header += f"  {'dev MCC':<16}  {'wall time (s)':<16}  parameters"
    rows = [header, "-" * len(header)]
    for name in dict.fromkeys(r["baseline"] for r in results):
        runs = [r for r in results if r["baseline"] == name]
        cells = [f"{mean_sd([r['test'][m] for r in runs]):<16}" for m in TABLE_METRICS]
        cells += [f"{mean_sd([r['dev']['mcc'] for r in runs]):<16}", f"{mean_sd([r['wall_time_s'] for r in runs], 1):<16}"]
        rows.append(f"{name:<12} {len(runs):>5}  " + "  ".join(cells) + f"  {runs[0]['num_parameters']:,}")
    return "\n".join(rows)


def main(argv: Optional[list[str]] = None) -> list[dict]:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    logging.getLogger("gr_ft").setLevel(logging.WARNING if args.quiet else logging.INFO)
    torch.set_num_threads(args.threads)
    splits, alphabet = load_task_splits(args.data, args.alphabet)
    cfg = load_config(BaselineConfig, args.config, [f"alphabet={alphabet}", *args.overrides])
    spec = infer_label_spec(splits["train"].frame["label"])
    if spec.problem_type not in SUPPORTED_PROBLEM_TYPES:
        raise SystemExit(f"{args.data}: {spec.problem_type} labels; the baselines support {list(SUPPORTED_PROBLEM_TYPES)}")
    print(describe_splits(splits, spec, alphabet))
    results, started = [], time.time()
    for name in args.baselines:
        for seed in args.seeds:
            result = run_baseline(name, splits, spec, cfg, seed)
            test = result["test"]
            print(f"{name} seed {seed}: test MCC {test['mcc']:.4f} AUROC {test['auroc']:.4f} AUPRC {test['auprc']:.4f}"
                  f" (dev MCC {result['dev']['mcc']:.4f}) in {result['wall_time_s']:.1f} s", flush=True)
            results.append(result)
    print(f"\n{args.data} ({len(splits['test'].frame)} test rows), total {time.time() - started:.0f} s, "
          f"{args.threads} torch threads\n" + summary_table(results))
    if args.out:
        Path(args.out).write_text(json.dumps({"data": args.data, "config": config_to_dict(cfg), "runs": results}, indent=1))
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
