"""The ``gr-ft`` command line. Each subcommand's ``--help`` ends with worked examples.

    gr-ft finetune [--config FILE] [key=value ...]      fine-tune (default: the built-in demo)
    gr-ft pretrain [--config FILE] [key=value ...]      masked-LM pretraining on FASTA
    gr-ft evaluate RUN_DIR --data PATH                   metrics of a run on labelled data
    gr-ft predict RUN_DIR --input FILE --output FILE     predictions for sequences
    gr-ft predict RUN_DIR --genome FA --window W --output F.bedgraph   genome-wide tracks (or --bed FILE)
    gr-ft tokenizer train FILES... --out DIR             train a DNA BPE tokenizer (DNABERT-2 style)
    gr-ft synthetic TASK OUT_DIR                         write a synthetic data set (train/dev/test)
    gr-ft push RUN_DIR REPO_ID [--local-dir DIR]         publish a run to the Hub, model card included
    gr-ft merge RUN_DIR OUT_DIR                          fold the LoRA adapter into full weights
    gr-ft adapt RUN_DIR SUPPORT.csv OUT_DIR              few-shot adaptation of a (meta-trained) run to a new task
    gr-ft check-data PATH [--fail-on 'near-dup>0.05']    duplicates, label conflicts, shortcuts of a data set
    gr-ft sweep --config CFG --space SPACE.yaml          Optuna search over config fields
    gr-ft interpret RUN_DIR --input FILE --method M --out DIR   ISM / attributions / attention per base
    gr-ft motifs INTERPRET_DIR [--out DIR]                 motifs from attributions (TF-MoDISco) matched to JASPAR
    gr-ft embed RUN_OR_MODEL --input FILE --out FILE.parquet     one embedding per sequence
    gr-ft variants RUN_DIR --vcf FILE --genome FASTA --out scores.tsv   variant effects (or --zero-shot)

    gr-ft --debug COMMAND ...                            print the traceback of a failure too (or GRFT_DEBUG=1)
"""

from __future__ import annotations

import argparse
import json
import importlib
import sys
from pathlib import Path
from typing import Callable, Optional

__all__ = ["main"]

RAW = argparse.RawDescriptionHelpFormatter


def _finetune(argv: list[str]) -> int:
    from gr_ft.recipes import finetune_lora

    finetune_lora.main(argv)
    return 0


def _pretrain(argv: list[str]) -> int:
    from gr_ft.recipes import pretrain_mlm

    pretrain_mlm.main(argv)
    return 0


def _command_parser(command: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """The parser of ``gr-ft COMMAND``: its description, and the example lines as the epilog."""
    return argparse.ArgumentParser(prog=f"gr-ft {command}", formatter_class=RAW, description=description,
                                   epilog="examples:\n" + "".join(f"  {line}\n" for line in examples))


def _add_trust_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow model code shipped with the backbone to run (DNABERT-2, HyenaDNA, Caduceus); "
                             "a run folder can never switch this on by itself")


def _evaluate_parser() -> argparse.ArgumentParser:
    parser = _command_parser(
        "evaluate",
        "Score a finished run folder on labelled data (a file or a dataset folder's test split).",
        [
            "gr-ft evaluate runs/demo --data ../shared/data/promoter/gue_prom_core_all",
            "gr-ft evaluate runs/demo --data new_peaks.csv.gz --output metrics_new.json",
        ],
    )
    parser.add_argument("run_dir")
    parser.add_argument("--data", required=True, help="labelled file, or folder whose test split is scored")
    parser.add_argument("--split", default="test", help="split of a dataset folder to score (default: test)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", help="write the metrics as JSON here")
    _add_trust_flag(parser)
    _add_inference_flags(parser)
    return parser


def _evaluate(argv: list[str]) -> int:
    args = _evaluate_parser().parse_args(argv)
    from gr_ft.predictor import evaluate_run

    metrics = evaluate_run(args.run_dir, args.data, split=args.split, options=_inference_options(args),
                           trust_remote_code=args.trust_remote_code)
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.output:
        _atomic_write(Path(args.output), text + "\n")
    return 0


PREDICT_EXAMPLES = """examples:
  gr-ft predict runs/demo --input candidates.fa --output predictions.csv
  gr-ft predict runs/demo --input peaks.csv.gz --output - | head

genome-wide (windows streamed from a FASTA; see docs/variants.md):
  gr-ft predict runs/demo --genome genome.fa.gz --window 200 --stride 50 --output tracks.bedgraph --format bedgraph
  gr-ft predict runs/demo --genome genome.fa.gz --window 1000 --regions chr1:1-5,000,000 --output chr1.bed
  gr-ft predict runs/demo --genome genome.fa.gz --bed peaks.bed --output peaks.scored.bed
"""


def _predict_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gr-ft predict", formatter_class=RAW,
        description="Predict labels for sequences (FASTA, CSV/TSV with a sequence column, or one per line), or "
                    "for windows of a genome (--genome) written as BED or bedGraph.",
        epilog=PREDICT_EXAMPLES,
    )
    parser.add_argument("run_dir")
    parser.add_argument("--input", help="sequences to predict (required unless --genome)")
    parser.add_argument("--output", required=True, help="CSV file, or - for standard output; with --genome a .bed "
                                                        "or .bedgraph file")
    parser.add_argument("--batch-size", type=int, default=64)
    genome = parser.add_argument_group("genome-wide prediction (docs/variants.md)")
    genome.add_argument("--genome", help="FASTA (plain or .gz) whose windows are predicted instead of --input")
    genome.add_argument("--bed", help="predict each interval of this BED file (0-based, half-open) as one window")
    genome.add_argument("--window", type=int, help="tile windows of this many bp (window i starts at start + i*stride)")
    genome.add_argument("--stride", type=int, help="bp between window starts (default: --window, no overlap)")
    genome.add_argument("--regions", action="append", help="with --window: chr:start-end (1-based, inclusive) or a "
                                                            "contig name; repeat or separate by commas (default: "
                                                            "every contig)")
    genome.add_argument("--format", choices=["bed", "bedgraph"], dest="track_format",
                        help="bed: one file with a column per output; bedgraph: one track per output (default: from "
                             "the --output suffix, .bedgraph/.bg -> bedgraph, else bed)")
    _add_trust_flag(parser)
    _add_inference_flags(parser)
    return parser


def _predict(argv: list[str]) -> int:
    args = _predict_parser().parse_args(argv)
    _check_predict_mode(args)
    windows = _genome_windows(args) if args.genome else None  # bad regions fail before the model loads
    from gr_ft.predictor import load_run

    predictor = load_run(args.run_dir, trust_remote_code=args.trust_remote_code, options=_inference_options(args))
    if windows is not None:
        return _predict_genome(args, predictor, *windows)
    inputs, sequences = _prediction_input(args.input, _run_alphabet(predictor))
    predictions = predictor.predict(sequences)
    clashing = {c: f"input_{c}" for c in inputs.columns if c in predictions.columns}
    frame = inputs.rename(columns=clashing).join(predictions)
    if args.output == "-":
        frame.to_csv(sys.stdout, index=False)
    else:
        _atomic_write(Path(args.output), frame.to_csv(index=False))
        print(f"wrote {len(frame)} predictions to {args.output}")
    return 0


def _check_predict_mode(args: argparse.Namespace) -> None:
    """Exactly one of --input / --genome; with --genome exactly one of --bed / --window (before loading the model)."""
    genome_flags = [f for f, v in (("--bed", args.bed), ("--window", args.window), ("--stride", args.stride),
                                   ("--regions", args.regions), ("--format", args.track_format)) if v is not None]
    if args.genome is None:
        if args.input is None:
            raise ValueError("give --input FILE (sequences) or --genome FASTA (genome-wide windows)")
        if genome_flags:
            raise ValueError(f"{', '.join(genome_flags)} apply to genome-wide prediction; add --genome FASTA")
        return
    if args.input is not None:
        raise ValueError("give either --input (sequences) or --genome (genome windows), not both")
    if (args.bed is None) == (args.window is None):
        raise ValueError("with --genome give either --bed FILE (one window per interval) or --window W [--stride S]")
    if args.bed is not None and (args.stride is not None or args.regions):
        raise ValueError("--stride and --regions tile windows with --window; with --bed each interval is one window")
    if args.output == "-":
        raise ValueError("--genome writes files (atomically); give --output scores.bed or scores.bedgraph")


def _genome_windows(args: argparse.Namespace):
    """(lazy window batches, tiling stride or None, total windows or None) of --genome with --bed or --window."""
    from gr_ft.genome import open_genome, parse_region, read_bed
    from gr_ft.tracks import TilePlan, bed_windows, count_tiles, tiled_windows

    genome = open_genome(args.genome)
    batch_windows = 4 * args.batch_size
    if args.bed:
        intervals = list(read_bed(args.bed, genome))  # every line checked now; windows are still read lazily
        return bed_windows(genome, intervals, batch_windows), None, len(intervals)
    plan = TilePlan(args.window, args.stride)
    regions = ([parse_region(text, genome) for text in _join_region_commas(args.regions)] if args.regions
               else [parse_region(name, genome) for name in genome.lengths])
    return tiled_windows(genome, regions, plan, batch_windows), plan.stride_bp, sum(count_tiles(r, plan) for r in regions)


def _predict_genome(args: argparse.Namespace, predictor, batches, stride, total) -> int:
    from gr_ft.tracks import predict_genome

    fmt = args.track_format or ("bedgraph" if Path(args.output).suffix.lower() in (".bedgraph", ".bg") else "bed")
    summary = predict_genome(predictor, batches, args.output, fmt=fmt, tiled_stride=stride, total_windows=total)
    skipped = f"; {summary.skipped_n} windows with N skipped" if summary.skipped_n else ""
    print(f"wrote {summary.windows} windows ({summary.bases / max(summary.seconds, 1e-9):,.0f} bp/s{skipped}) to "
          f"{', '.join(str(p) for p in summary.files)}")
    return 0


def _join_region_commas(values: list[str]) -> list[str]:
    """Regions from repeated/comma-separated --regions; commas inside numbers (chr1:1,000-2,000) stay."""
    import re

    return [r for value in values for r in re.split(r",(?=[^\d,])", value) if r.strip()]


def _prediction_input(path: str, alphabet: str):
    """The input's sequences, and a frame of what to keep beside the predictions: the id (FASTA id, ``id``
    column or row number), then every other column of a table input except the sequence (e.g. the label)."""
    import pandas as pd

    from gr_ft.io import FASTA_SUFFIXES, READERS, _base_suffix, read_sequences, read_table

    ids, sequences = read_sequences(path, alphabet=alphabet)
    kept = pd.DataFrame({"id": ids})
    suffix = _base_suffix(Path(path))
    if suffix in READERS and suffix != ".txt" and suffix not in FASTA_SUFFIXES:
        table = read_table(path).reset_index(drop=True)
        kept = kept.join(table.drop(columns=[c for c in ("id", "sequence", "_line") if c in table.columns]))
    return kept, sequences


def _run_alphabet(predictor) -> str:
    return predictor.tokenizer.alphabet


def _tokenizer_parser() -> argparse.ArgumentParser:
    parser = _command_parser(
        "tokenizer train",
        "Train a DNA BPE tokenizer in the DNABERT-2 manner on FASTA/CSV/text files.",
        [
            "gr-ft tokenizer train genome.fa.gz --vocab-size 4096 --out tokenizers/my_bpe",
            "gr-ft tokenizer train train.csv.gz --vocab-size 1024 --max-records 50000 --out my_bpe",
        ],
    )
    parser.add_argument("action", choices=["train"])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--max-records", type=int, default=None)
    return parser


def _tokenizer(argv: list[str]) -> int:
    args = _tokenizer_parser().parse_args(argv)
    from gr_ft.tokenization import train_bpe_from_files

    folder = train_bpe_from_files(args.files, args.vocab_size, args.out, max_records=args.max_records)
    print(f"wrote BPE tokenizer to {folder}")
    return 0


def _synthetic_parser() -> argparse.ArgumentParser:
    from gr_ft.synthetic import SYNTHETIC_TASKS

    parser = _command_parser(
        "synthetic",
        "Write a synthetic data set with a planted regulatory grammar (train/dev/test.csv.gz).",
        [
            "gr-ft synthetic promoter data/synth_promoter --n-train 5000",
            "gr-ft synthetic cell_type data/synth_cells   # one sub-folder per cell type",
            "gr-ft synthetic cell_type_panel data/synth_panel   # 20 cell types over 16 shared TF motifs",
        ],
    )
    parser.add_argument("task", choices=sorted(SYNTHETIC_TASKS))
    parser.add_argument("out_dir")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-dev", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _synthetic(argv: list[str]) -> int:
    args = _synthetic_parser().parse_args(argv)
    from gr_ft.synthetic import write_task

    for flag in ("n_train", "n_dev", "n_test"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")

    out = write_task(args.task, args.out_dir, args.n_train, args.n_dev, args.n_test, seed=args.seed)
    print(f"wrote {args.task} data to {out}")
    return 0


def _push_parser() -> argparse.ArgumentParser:
    from gr_ft.hub.card import DEFAULT_LICENSE

    parser = _command_parser(
        "push",
        "Publish a run folder as a Hugging Face Hub model repository (model card included), in one "
        "commit; or only write the repository folder with --local-dir.",
        [
            "gr-ft push runs/demo me/promoter-lora --local-dir publish/promoter-lora",
            "gr-ft push runs/demo me/promoter-lora --private            # after `hf auth login`",
            "gr-ft push runs/seed0 me/promoter-lora --seed-runs runs/seed1 runs/seed2 --license mit",
        ],
    )
    parser.add_argument("run_dir")
    parser.add_argument("repo_id", help="Hub repository, <user or organisation>/<name>")
    parser.add_argument("--local-dir", help="write the repository folder here instead of uploading")
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")
    parser.add_argument("--seed-runs", nargs="+", default=[], metavar="RUN",
                        help="run folders of the same config with other seeds: the card reports mean ± sd")
    parser.add_argument("--revision", help="branch to upload to (created if missing)")
    parser.add_argument("--license", default=DEFAULT_LICENSE, help="Hub license id (default: unknown)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --local-dir")
    return parser


def push_main(argv: list[str]) -> int:
    """``gr-ft push``: returns the exit code."""
    from gr_ft.hub import folder_size_mb, push_run

    args = _push_parser().parse_args(argv)
    where = push_run(args.run_dir, args.repo_id, private=args.private, local_dir=args.local_dir,
                     revision=args.revision, seed_runs=args.seed_runs, overwrite=args.overwrite, license=args.license)
    if args.local_dir:
        print(f"wrote repository folder {where} ({folder_size_mb(where):.2f} MB); "
              f"model card: {Path(where) / 'README.md'}")
        print(f"upload it later with: gr-ft push {args.run_dir} {args.repo_id}")
    else:
        print(f"pushed {args.run_dir} to {where}")
    return 0


def _merge_parser() -> argparse.ArgumentParser:
    parser = _command_parser(
        "merge",
        "Fold a run's LoRA adapter into the base weights (peft merge_and_unload) and write a standalone "
        "run folder with full weights that gr-ft predict / load_run use like any run.",
        [
            "gr-ft merge runs/demo runs/demo_merged",
            "gr-ft merge runs/promoter runs/promoter_merged --overwrite && "
            "gr-ft predict runs/promoter_merged --input seqs.fa --output -",
        ],
    )
    parser.add_argument("run_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    _add_trust_flag(parser)
    return parser


def merge_main(argv: list[str]) -> int:
    """``gr-ft merge``: returns the exit code."""
    from gr_ft.hub import folder_size_mb, merge_run

    args = _merge_parser().parse_args(argv)
    out = merge_run(args.run_dir, args.out_dir, overwrite=args.overwrite, trust_remote_code=args.trust_remote_code)
    adapter = Path(args.run_dir) / "adapter"
    print(f"wrote merged run folder {out} ({folder_size_mb(out):.2f} MB; the adapter was "
          f"{folder_size_mb(adapter):.2f} MB, the whole run folder {folder_size_mb(args.run_dir):.2f} MB)")
    return 0


def _adapt(argv: list[str]) -> int:
    from gr_ft.meta.adapt import adapt_main

    return adapt_main(argv)


def _add_inference_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of the prediction engine (gr_ft.inference.InferenceOptions), shared by predict and evaluate."""
    group = parser.add_argument_group("prediction engine (docs/speed.md)")
    group.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=None,
                       help="autocast precision (default: the precision the run trained at, but bf16 only where this "
                            "machine runs it faster; auto: bf16 wherever it is faster here)")
    group.add_argument("--no-merge", action="store_true",
                       help="keep the LoRA adapter separate instead of merging it into the weights")
    group.add_argument("--long", choices=["window", "crop"], default="window", dest="long_sequences",
                       help="sequences longer than data.max_length: sliding windows (default) or training's crop")
    group.add_argument("--window-stride", type=int, default=None,
                       help="tokens between window starts (default: half a window)")
    group.add_argument("--aggregate", choices=["mean", "max"], default="mean",
                       help="how window outputs make one prediction (probabilities; values for regression)")
    group.add_argument("--max-batch-tokens", type=int, default=None,
                       help="cap windows x length per batch, bounding memory on long sequences (default: 4096; 0: no cap)")
    group.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    group.add_argument("--compile", action="store_true", help="torch.compile the model (large inputs only)")
    group.add_argument("--quantize", choices=["int8"], default=None,
                       help="opt-in: dynamic int8 Linear layers, fp32 elsewhere (CPU; see docs/speed.md for agreement)")
    group.add_argument("--eager-attention-max-tokens", type=int, default=None,
                       help="bf16 CPU batches up to this many tokens use eager attention, faster there (default: 128; "
                            "0: SDPA always)")


def _inference_options(args: argparse.Namespace):
    from gr_ft.inference import InferenceOptions

    given = {}  # flags left out keep the engine's defaults
    if args.eager_attention_max_tokens is not None:
        given["eager_attention_max_tokens"] = args.eager_attention_max_tokens
    if args.max_batch_tokens is not None:
        given["max_batch_tokens"] = args.max_batch_tokens or None  # 0: no cap
    return InferenceOptions(batch_size=args.batch_size, precision=args.precision, merge_adapter=not args.no_merge,
                            long_sequences=args.long_sequences, window_stride=args.window_stride,
                            aggregation=args.aggregate, num_threads=args.threads, compile=args.compile,
                            quantize=args.quantize, **given)


def _delegate(target: str) -> Callable[[list[str]], int]:
    """A command whose parser lives in its own module (``"module:function"``), imported only when it runs."""
    module, function = target.split(":")

    def run(argv: list[str]) -> int:
        return getattr(importlib.import_module(module), function)(argv)

    return run


def _atomic_write(path: Path, text: str) -> None:
    from gr_ft.utils import atomic_write_text

    atomic_write_text(path, text)


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "finetune": (_finetune, "fine-tune a language model with a LoRA head (default: built-in demo)"),
    "pretrain": (_pretrain, "masked-LM pretraining (DNABERT/ESM-style) from scratch or continued, on FASTA"),
    "evaluate": (_evaluate, "score a run folder on labelled data"),
    "predict": (_predict, "predict labels for sequences with a run folder"),
    "tokenizer": (_tokenizer, "train a DNA BPE tokenizer"),
    "synthetic": (_synthetic, "write a synthetic data set with a planted grammar"),
    "push": (push_main, "publish a run folder to the Hugging Face Hub (or a local folder) with a model card"),
    "merge": (merge_main, "merge a run's LoRA adapter into full weights (a standalone run folder)"),
    "adapt": (_adapt, "adapt a (meta-trained) run to a new task from k labelled examples"),
    "check-data": (_delegate("gr_ft.data_checks:check_data_main"), "check a data set: duplicates (both strands), label conflicts, shortcut features"),
    "sweep": (_delegate("gr_ft.sweep:sweep_main"), "hyper-parameter search with Optuna over any config field (resumable, shareable study)"),
    "embed": (_delegate("gr_ft.embedding:embed_main"), "embed sequences with a run's or a backbone's layer, to parquet (+ PCA plot)"),
    "interpret": (_delegate("gr_ft.interpret.cli:interpret_main"), "explain a run per base: in-silico mutagenesis, attributions, attention"),
    "motifs": (_delegate("gr_ft.interpret.cli:motifs_main"), "motifs a run learned: TF-MoDISco on gr-ft interpret's output, matched to JASPAR"),
    "variants": (_delegate("gr_ft.interpret.variants_cli:variants_main"), "score a VCF's variants (alt - ref of a run's output, or zero-shot with an MLM head)"),
}


def _usage() -> str:
    lines = ["usage: gr-ft COMMAND [options]   (gr-ft COMMAND --help for examples)", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "  --debug before the command (or GRFT_DEBUG=1) prints the traceback of a failure;",
              "  exit codes: 0 done, 2 bad input, 1 a bug in gr-ft, 130 interrupted",
              "", "example:", "  gr-ft finetune                 # the built-in demo, a few minutes on a laptop CPU"]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``gr-ft``; returns the exit code: 0 done, 2 bad input (one ``gr-ft: error:`` line on stderr),
    1 a bug (rerun with ``--debug`` for the traceback), 130 interrupted (gr_ft.errors)."""
    from gr_ft.errors import EXIT_USER_ERROR, run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = bool(argv) and argv[0] == "--debug"
    if debug:
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"gr-ft: error: unknown command {command!r}; choose one of {sorted(COMMANDS)}\n\n{_usage()}",
              file=sys.stderr)
        return EXIT_USER_ERROR
    from gr_ft.utils import configure_logging

    configure_logging()
    return run_command(COMMANDS[command][0], rest, debug=debug)


if __name__ == "__main__":
    sys.exit(main())
