"""Write docs/families.md: every backbone family through the whole chain on its Hub-shaped fixture.

    python benchmarks/family_matrix.py                 # LoRA, sequence-level, every family (~2-4 min on 2 cores)
    python benchmarks/family_matrix.py --methods lora full --per-position

Runs exactly what tests/test_backbone_families.py runs (tests/family_chain.py), so the table cannot
drift from the tests. A failing step is written into the table with its one-line error.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from family_chain import CHAIN_FAMILIES, REMOTE_CODE_FAMILIES, ChainResult, run_chain  # noqa: E402

from gr_ft.backbones import BACKBONES, load_backbone  # noqa: E402
from hub_fixtures import make_fixture  # noqa: E402

FAMILY_OF = {"esm2": "esm", "esm1b": "esm", "dnabert6": "bert", "dnabert2": "dnabert2",
             "ntv1": "nucleotide_transformer_v1", "ntv2": "nucleotide_transformer_v2", "hyena": "hyenadna",
             "protbert": "protbert", "prott5": "t5_encoder", "caduceus": "caduceus"}


def _row(result: ChainResult) -> str:
    spec = BACKBONES[FAMILY_OF[result.family]]
    steps = " / ".join(f"{s} {'ok' if v == 'ok' else v}" for s, v in result.steps.items())
    return (f"| {result.family} | {spec.name} | {result.method} | {result.task} | {result.tokenizer_format} | "
            f"{', '.join(result.lora_targets) or 'all weights'} | {100 * (result.trainable_fraction or 0):.2f}% | "
            f"{steps} | {'yes' if result.evaluate_matches_metrics else 'NO'} | {result.max_prob_diff:.1e} | "
            f"{result.seconds:.0f} s |")


def _failed_row(family: str, method: str, task: str, err: Exception) -> str:
    message = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
    return f"| {family} | {FAMILY_OF[family]} | {method} | {task} | | | | failed: {message} | | | |"


def _skipped_row(family: str) -> str:
    return (f"| {family} | {FAMILY_OF.get(family, family)} | - | - | | | | not run: its model code ships with the "
            f"checkpoint; rerun with --trust-remote-code | | | |")


def _caduceus_row(tmp: Path, trust_remote_code: bool) -> str:
    if not trust_remote_code:
        return _skipped_row("caduceus")
    try:
        folder = make_fixture("caduceus", tmp / "caduceus")
        load_backbone(str(folder), trust_remote_code=trust_remote_code)
        return "| caduceus | caduceus | - | - | | | | loads (mamba-ssm present) | | | |"
    except (ValueError, FileNotFoundError) as err:
        return f"| caduceus | caduceus | - | - | | | | one-line error: `{str(err)[:220]}` | | | |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["lora"], choices=["lora", "full"])
    parser.add_argument("--per-position", action="store_true", help="also the per-position (splice) task, DNA families")
    parser.add_argument("--out", default=str(REPO / "docs" / "families.md"))
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="also run the families whose model code ships with the fixture (DNABERT-2, HyenaDNA, "
                             "Caduceus); their fixtures' code is the published model code")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in CHAIN_FAMILIES:
            if family in REMOTE_CODE_FAMILIES and not args.trust_remote_code:
                rows.append(_skipped_row(family))
                continue
            for method in args.methods:
                for per_position in ([False, True] if args.per_position else [False]):
                    if per_position and family in ("esm2", "esm1b", "protbert", "prott5"):
                        continue
                    workdir = Path(tmp) / f"{family}_{method}_{per_position}"
                    try:
                        rows.append(_row(run_chain(family, workdir, method, per_position)))
                    except Exception as err:  # the table records the failure instead of stopping
                        traceback.print_exc()
                        rows.append(_failed_row(family, method, "per-position" if per_position else "sequence", err))
                    print(rows[-1], flush=True)
        rows.append(_caduceus_row(Path(tmp), args.trust_remote_code))
    header = ("| fixture | family | method | task | tokenizer input | LoRA targets | trainable | steps | "
              "evaluate == metrics.json | max prob diff (merged, pushed) | wall |\n" + "|---" * 11 + "|")
    text = (f"# Backbone families, end to end\n\nWritten by `python {' '.join(['benchmarks/family_matrix.py'] + sys.argv[1:])}`"
            f" from tests/family_chain.py (what tests/test_backbone_families.py asserts). Each fixture is the published "
            f"config/tokenizer/model-code files with tiny random weights (tests/hub_fixtures.py); the chain is "
            f"finetune -> predict -> evaluate -> merge (LoRA) -> push --local-dir -> load_run of the merged and pushed "
            f"folders. Trainable fractions are those of the shrunk fixtures (two layers, tiny widths), far above what LoRA "
            f"trains at published sizes; the evaluate column runs `gr-ft evaluate --long crop` (training's crops) on "
            f"the test split and compares with metrics.json.\n\n{header}\n" + "\n".join(rows) + "\n")
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
