"""ISM speed: gr-ft's ISM against a plain loop that re-tokenizes and runs every mutant alone.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/ism_speed.py                 # 100 x 200 bp, 6-mers
    PYTHONPATH=. python benchmarks/ism_speed.py --run runs/demo --sequences 20    # a trained run instead

Both paths score every single-base substitution (3 per base) of the same sequences with the same
model: by default the demo's backbone shape (BERT 2 x 128, 4 heads, kmer6) with a LoRA adapter
(r=8 on query/key/value/dense, B weights randomised so the adapter matters), as `gr-ft finetune`
leaves it. Each path runs in its own fresh process so its peak RSS is its own; the script prints
wall and CPU seconds (on a shared machine CPU time is the steadier measure), mutants/s, the speed
ratios, peak RSS and the largest difference between the two results.

- gr-ft: ``gr_ft.interpret.ism`` (k-mer ids edited in place, adapter merged, padded batches, inference mode).
- plain: for each mutant, ``SequenceTokenizer.encode([mutant])`` then ``model(...)`` under
  ``torch.no_grad()``, the loop a user would write first.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from typing import Optional

import numpy as np
import torch


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=100, help="number of sequences (default 100)")
    parser.add_argument("--length", type=int, default=200, help="bases per sequence (default 200)")
    parser.add_argument("--tokenizer", default="kmer6", help="built-in tokenizer for the in-memory model")
    parser.add_argument("--run", help="use this run folder's model and tokenizer instead of the in-memory model")
    parser.add_argument("--batch-size", type=int, default=128, help="gr-ft: mutants per forward pass")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each path (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sequences and the random weights")
    return parser.parse_args(argv)


def build_predictor(args):
    """The run's predictor, or the demo-shaped LoRA model built in memory."""
    from gr_ft.adapters import apply_adapter
    from gr_ft.config import DataConfig, FinetuneConfig, LoraConfig, ModelConfig
    from gr_ft.labels import LabelSpec
    from gr_ft.modeling import SequenceModel, build_backbone
    from gr_ft.predictor import Predictor, load_run
    from gr_ft.tokenization import SequenceTokenizer

    if args.run:
        return load_run(args.run)
    torch.manual_seed(args.seed)
    tokenizer = SequenceTokenizer.from_pretrained(args.tokenizer)
    backbone = build_backbone(ModelConfig(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=256), tokenizer)
    model = apply_adapter(SequenceModel(backbone, "binary", 2), LoraConfig(r=8))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    cfg = FinetuneConfig(data=DataConfig(max_length=512))
    return Predictor(model.eval(), tokenizer, LabelSpec("binary", ["0", "1"]), cfg)


def benchmark_sequences(args) -> list[str]:
    from gr_ft.synthetic import promoter_sequences

    return promoter_sequences(args.sequences, length_bp=args.length, seed=args.seed).sequence.tolist()


def grft_path(args) -> np.ndarray:
    from gr_ft.interpret import ism

    result = ism(build_predictor(args), benchmark_sequences(args), batch_size=args.batch_size)
    return result.effects[..., 1]  # N, L, 4: class-1 logit


def plain_path(args) -> np.ndarray:
    predictor = build_predictor(args)
    model, tokenizer = predictor.model, predictor.tokenizer
    sequences = benchmark_sequences(args)

    def logit(sequence: str) -> float:
        ids = torch.tensor(tokenizer.encode([sequence], max_length=predictor.cfg.data.max_length)["input_ids"])
        with torch.no_grad():
            return float(model(input_ids=ids, attention_mask=torch.ones_like(ids))["logits"][0, 1])

    effects = np.zeros((len(sequences), args.length, 4), dtype=np.float32)
    for row, sequence in enumerate(sequences):
        reference = logit(sequence)
        for position, base in enumerate(sequence):
            for letter, new in enumerate("ACGT"):
                if new != base:
                    effects[row, position, letter] = logit(sequence[:position] + new + sequence[position + 1 :]) - reference
    return effects


def _child(path_name: str, args, queue) -> None:
    torch.set_num_threads(args.threads)
    path = {"gr-ft": grft_path, "plain": plain_path}[path_name]
    build_predictor(args)  # load libraries and weights before the clock starts
    started, cpu_started = time.perf_counter(), time.process_time()
    effects = path(args)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    queue.put((seconds, cpu_seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, effects))


def run_in_child(path_name: str, args) -> tuple[float, float, float, np.ndarray]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(path_name, args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    mutants = args.sequences * args.length * 3
    print(f"ISM of {args.sequences} sequences x {args.length} bp ({mutants:,} mutants), "
          f"{'run ' + args.run if args.run else args.tokenizer + ' demo-shaped LoRA model'}, "
          f"{args.threads} thread(s), seed {args.seed}", flush=True)
    rows = {name: run_in_child(name, args) for name in ("gr-ft", "plain")}
    print(f"{'path':<8} {'wall s':>9} {'CPU s':>9} {'mutants/s':>10} {'mutants/CPU s':>14} {'peak RSS MB':>12}")
    for name, (seconds, cpu_seconds, rss, _) in rows.items():
        print(f"{name:<8} {seconds:>9.1f} {cpu_seconds:>9.1f} {mutants / seconds:>10.0f} {mutants / cpu_seconds:>14.0f} "
              f"{rss:>12.0f}")
    wall_ratio = rows["plain"][0] / rows["gr-ft"][0]
    cpu_ratio = rows["plain"][1] / rows["gr-ft"][1]
    difference = float(np.abs(rows["gr-ft"][3] - rows["plain"][3]).max())
    print(f"speed-up (plain / gr-ft): {wall_ratio:.1f}x wall, {cpu_ratio:.1f}x CPU time; "
          f"max |difference| of effects: {difference:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
