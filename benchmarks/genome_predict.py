"""`gr-ft predict --genome` throughput and peak memory on the E. coli genome with a tiny model.

    OMP_NUM_THREADS=1 python benchmarks/genome_predict.py                         # 100 kb and 500 kb slices
    OMP_NUM_THREADS=1 python benchmarks/genome_predict.py --lengths 4641652 --window 200 --stride 100

Each slice length runs in its own process (so peak RSS is that run's alone): a tiny BERT (2 layers,
hidden 32, nucleotide tokens, random weights; throughput does not depend on what the weights learned)
predicts every window of the first L bases of ../shared/data/corpus/ecoli_k12_mg1655_genome.fasta.gz
through gr_ft.tracks.predict_genome into a BED file. Reported per slice: wall seconds of the prediction
(genome already decompressed into the cache), genome bp/s (bases of the slice scanned per second),
window bp/s (bases through the model, overlaps counted again), and the process's peak RSS
(``ru_maxrss``), which should stay flat as L grows: windows are read and predicted in batches.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GENOME = REPO.parent / "shared" / "data" / "corpus" / "ecoli_k12_mg1655_genome.fasta.gz"


def tiny_predictor(max_length: int):
    from gr_ft.config import DataConfig, FinetuneConfig, ModelConfig
    from gr_ft.inference import InferenceOptions
    from gr_ft.labels import LabelSpec
    from gr_ft.modeling import SequenceModel, build_backbone
    from gr_ft.predictor import Predictor
    from gr_ft.tokenization import SequenceTokenizer

    import torch

    torch.manual_seed(0)
    tokenizer = SequenceTokenizer.from_pretrained("nucleotide")
    backbone = build_backbone(ModelConfig(arch="bert", hidden_size=32, num_layers=2, num_heads=2,
                                          intermediate_size=64, dropout=0.0), tokenizer)
    model = SequenceModel(backbone, "binary", 2, head_dropout=0.0)
    cfg = FinetuneConfig(data=DataConfig(max_length=max_length))
    return Predictor(model.eval(), tokenizer, LabelSpec("binary", ["0", "1"]), cfg,
                     options=InferenceOptions(batch_size=64, precision="fp32"))


def measure(length: int, window: int, stride: int) -> dict:
    """One slice, in this process: seconds, bp/s and peak RSS."""
    from gr_ft.genome import Interval, open_genome
    from gr_ft.tracks import TilePlan, predict_genome, tiled_windows

    genome = open_genome(GENOME)
    contig = next(iter(genome.lengths))
    length = min(length, genome.lengths[contig])
    predictor = tiny_predictor(max_length=window + 2)
    plan = TilePlan(window, stride)
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        summary = predict_genome(predictor, tiled_windows(genome, [Interval(contig, 0, length)], plan),
                                 Path(folder) / "scores.bed", tiled_stride=stride, progress=False)
        seconds = time.perf_counter() - began
    return {"length_bp": length, "window_bp": window, "stride_bp": stride, "windows": summary.windows,
            "seconds": round(seconds, 2), "genome_bp_per_s": round(length / seconds),
            "window_bp_per_s": round(summary.bases / seconds),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100_000, 500_000], help="slice lengths (bp)")
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--stride", type=int, default=200)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one length, print JSON
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(args.one, args.window, args.stride)))
        return 0
    if not GENOME.exists():
        print(f"{GENOME} is absent (../shared/data is provided beside the checkout)", file=sys.stderr)
        return 1
    from gr_ft.genome import open_genome

    open_genome(GENOME)  # decompress into the cache once, outside the timed processes
    print(f"{'length bp':>10} {'windows':>8} {'seconds':>8} {'genome bp/s':>12} {'window bp/s':>12} {'peak RSS MB':>12}")
    for length in args.lengths:
        out = subprocess.run([sys.executable, __file__, "--one", str(length), "--window", str(args.window),
                              "--stride", str(args.stride)], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{row['length_bp']:>10,} {row['windows']:>8,} {row['seconds']:>8} {row['genome_bp_per_s']:>12,} "
              f"{row['window_bp_per_s']:>12,} {row['peak_rss_mb']:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
