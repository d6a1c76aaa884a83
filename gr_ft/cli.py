"""The ``gr-ft`` command line. Each subcommand's ``--help`` ends with worked examples.

    gr-ft finetune [--config FILE] [key=value ...]      fine-tune (default: the built-in demo)
    gr-ft pretrain [--config FILE] [key=value ...]      masked-LM pretraining on FASTA
    gr-ft evaluate RUN_DIR --data PATH                   metrics of a run on labelled data
    gr-ft predict RUN_DIR --input FILE --output FILE     predictions for sequences
    gr-ft tokenizer train FILES... --out DIR             train a DNA BPE tokenizer (DNABERT-2 style)
    gr-ft synthetic TASK OUT_DIR                         write a synthetic data set (train/dev/test)
    gr-ft push RUN_DIR REPO_ID [--local-dir DIR]         publish a run to the Hub, model card included
    gr-ft merge RUN_DIR OUT_DIR                          fold the LoRA adapter into full weights
    gr-ft adapt RUN_DIR SUPPORT.csv OUT_DIR              few-shot adaptation of a (meta-trained) run to a new task
"""

from __future__ import annotations

import argparse
import json
import logging
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


def _evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gr-ft evaluate", formatter_class=RAW,
        description="Score a finished run folder on labelled data (a file or a dataset folder's test split).",
        epilog="examples:\n  gr-ft evaluate runs/demo --data ../shared/data/promoter/gue_prom_core_all\n"
               "  gr-ft evaluate runs/demo --data new_peaks.csv.gz --output metrics_new.json\n",
    )
    parser.add_argument("run_dir")
    parser.add_argument("--data", required=True, help="labelled file, or folder whose test split is scored")
    parser.add_argument("--split", default="test", help="split of a dataset folder to score (default: test)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", help="write the metrics as JSON here")
    return parser


def _evaluate(argv: list[str]) -> int:
    args = _evaluate_parser().parse_args(argv)
    from gr_ft.run import evaluate_run

    metrics = evaluate_run(args.run_dir, args.data, split=args.split, batch_size=args.batch_size)
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.output:
        _atomic_write(Path(args.output), text + "\n")
    return 0


def _predict_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gr-ft predict", formatter_class=RAW,
        description="Predict labels for sequences (FASTA, CSV/TSV with a sequence column, or one per line).",
        epilog="examples:\n  gr-ft predict runs/demo --input candidates.fa --output predictions.csv\n"
               "  gr-ft predict runs/demo --input peaks.csv.gz --output - | head\n",
    )
    parser.add_argument("run_dir")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True, help="CSV file, or - for standard output")
    parser.add_argument("--batch-size", type=int, default=64)
    return parser


def _predict(argv: list[str]) -> int:
    args = _predict_parser().parse_args(argv)
    from gr_ft.io import read_sequences
    from gr_ft.run import load_run

    predictor = load_run(args.run_dir)
    ids, sequences = read_sequences(args.input, alphabet=_run_alphabet(predictor))
    frame = predictor.predict(sequences, batch_size=args.batch_size)
    frame.insert(0, "id", ids)
    if args.output == "-":
        frame.to_csv(sys.stdout, index=False)
    else:
        _atomic_write(Path(args.output), frame.to_csv(index=False))
        print(f"wrote {len(frame)} predictions to {args.output}")
    return 0


def _run_alphabet(predictor) -> str:
    return "protein" if predictor.tokenizer.kind == "protein" else "dna"


def _tokenizer_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gr-ft tokenizer train", formatter_class=RAW,
        description="Train a DNA BPE tokenizer in the DNABERT-2 manner on FASTA/CSV/text files.",
        epilog="examples:\n  gr-ft tokenizer train genome.fa.gz --vocab-size 4096 --out tokenizers/my_bpe\n"
               "  gr-ft tokenizer train train.csv.gz --vocab-size 1024 --max-records 50000 --out my_bpe\n",
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

    parser = argparse.ArgumentParser(
        prog="gr-ft synthetic", formatter_class=RAW,
        description="Write a synthetic data set with a planted regulatory grammar (train/dev/test.csv.gz).",
        epilog="examples:\n  gr-ft synthetic promoter data/synth_promoter --n-train 5000\n"
               "  gr-ft synthetic cell_type data/synth_cells   # one sub-folder per cell type\n",
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

    out = write_task(args.task, args.out_dir, args.n_train, args.n_dev, args.n_test, seed=args.seed)
    print(f"wrote {args.task} data to {out}")
    return 0


def _push(argv: list[str]) -> int:
    from gr_ft.hub import push_main

    return push_main(argv)


def _merge(argv: list[str]) -> int:
    from gr_ft.hub import merge_main

    return merge_main(argv)


def _adapt(argv: list[str]) -> int:
    from gr_ft.meta.adapt import adapt_main

    return adapt_main(argv)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "finetune": (_finetune, "fine-tune a language model with a LoRA head (default: built-in demo)"),
    "pretrain": (_pretrain, "masked-LM pretraining (DNABERT/ESM-style) from scratch or continued, on FASTA"),
    "evaluate": (_evaluate, "score a run folder on labelled data"),
    "predict": (_predict, "predict labels for sequences with a run folder"),
    "tokenizer": (_tokenizer, "train a DNA BPE tokenizer"),
    "synthetic": (_synthetic, "write a synthetic data set with a planted grammar"),
    "push": (_push, "publish a run folder to the Hugging Face Hub (or a local folder) with a model card"),
    "merge": (_merge, "merge a run's LoRA adapter into full weights (a standalone run folder)"),
    "adapt": (_adapt, "adapt a (meta-trained) run to a new task from k labelled examples"),
}


def _usage() -> str:
    lines = ["usage: gr-ft COMMAND [options]   (gr-ft COMMAND --help for examples)", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "example:", "  gr-ft finetune                 # the built-in demo, a few minutes on a laptop CPU"]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``gr-ft``; returns the exit code (2 for bad input, with a message on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; choose one of {sorted(COMMANDS)}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gr_ft").setLevel(logging.INFO)
    try:
        return COMMANDS[command][0](rest)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
