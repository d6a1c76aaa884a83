"""Sequence embeddings from a run or a backbone: one vector per sequence, to a parquet table (+ a PCA picture).

``gr-ft embed RUN_OR_MODEL --input FILE --out FILE.parquet [--layer N] [--pooling mean|cls] [--pca FILE.png]``

The vector is a layer's token states pooled over real tokens (``mean``) or taken at the first
token (``cls``); ``--layer`` counts hidden states as transformers does (0 = the embedding output,
-1 = the last layer, the default). Sequences are tokenized as the run does (its tokenizer,
``data.max_length``, ``data.crop``); a bare backbone (folder or Hub id) uses its own tokenizer and
512 tokens. The table has ``id``, ``sequence``, ``label`` (when the input has one) and ``e0 .. e{H-1}``.

Example:
    >>> frame = embed_sequences(load_embedder("runs/demo"), ["ACGT" * 25], layer=-1, pooling="mean")
    >>> frame.shape
    (1, 128)
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

__all__ = ["Embedder", "load_embedder", "embed_sequences", "embed_main"]


@dataclass
class Embedder:
    """A backbone and how sequences reach it."""

    backbone: torch.nn.Module
    tokenizer: object
    max_length: int = 512
    crop: str = "start"


def load_embedder(run_or_model: str, trust_remote_code: bool = False) -> Embedder:
    """A finished run folder (its fine-tuned backbone), or any backbone folder / Hub id with its tokenizer.

    ``trust_remote_code`` is the caller's opt-in to model code shipped with the backbone (never taken from a file).
    """
    from .modeling import load_backbone
    from .predictor import load_run
    from .run_state import MARKER
    from .tokenization import SequenceTokenizer

    if (Path(run_or_model) / MARKER).exists():
        predictor = load_run(run_or_model, trust_remote_code=trust_remote_code)
        model = predictor.model.merge_and_unload() if hasattr(predictor.model, "merge_and_unload") else predictor.model
        return Embedder(model.backbone.eval(), predictor.tokenizer, predictor.cfg.data.max_length, predictor.cfg.data.crop)
    return Embedder(load_backbone(run_or_model, trust_remote_code=trust_remote_code).eval(),
                    SequenceTokenizer.from_pretrained(run_or_model))


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def embed_sequences(embedder: Embedder, sequences: Sequence[str], layer: int = -1, pooling: str = "mean",
                    batch_size: int = 32) -> np.ndarray:
    """N x H embeddings: hidden state ``layer`` pooled with ``pooling`` (mean over real tokens, or cls)."""
    from .data import encode_sequences
    from .interpret.ism import _padded

    if pooling not in ("mean", "cls"):
        raise ValueError(f"--pooling must be mean or cls, got {pooling!r}")
    encoded, _ = encode_sequences(embedder.tokenizer, [s.strip().upper() for s in sequences], embedder.max_length,
                                  embedder.crop)
    pad_id = embedder.tokenizer.pad_token_id if embedder.tokenizer.pad_token_id is not None else 0
    rows = []
    with torch.inference_mode():
        for begin in range(0, len(sequences), batch_size):
            input_ids, mask = _padded(encoded["input_ids"][begin : begin + batch_size], pad_id)
            states = embedder.backbone(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states
            if not -len(states) <= layer < len(states):
                raise ValueError(f"--layer {layer} does not exist: this model has hidden states 0..{len(states) - 1} "
                                 f"(0 = embeddings, -1 = last layer)")
            rows.append(_pool(states[layer].float(), mask, pooling))
    return torch.cat(rows).numpy()


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".parquet")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def plot_pca(vectors: np.ndarray, labels: Optional[list[str]], path: Path) -> Path:
    """First two principal components, one colour per label (atomic PNG write)."""
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA

    from .interpret.plots import _save

    if len(vectors) < 2:
        raise ValueError("--pca needs at least 2 sequences")
    pca = PCA(n_components=2)
    points = pca.fit_transform(vectors)
    figure = Figure(figsize=(6, 5))
    ax = figure.subplots()
    groups = labels if labels is not None else ["all"] * len(points)
    for name in sorted(set(groups)):
        chosen = np.array([g == name for g in groups])
        ax.scatter(points[chosen, 0], points[chosen, 1], s=8, label=str(name), alpha=0.7)
    ax.set_xlabel(f"PC1 ({pca.explained_variance_ratio_[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({pca.explained_variance_ratio_[1]:.0%} of variance)")
    if labels is not None:
        ax.legend(title="label", markerscale=2)
    return _save(figure, path)


def _read_labelled(path: str, alphabet: str) -> tuple[list[str], list[str], Optional[list[str]]]:
    from .interpret.cli import read_input
    from .io import read_table

    ids, sequences = read_input(path, alphabet)
    labels = None
    if path != "-" and Path(path).suffix.lower() not in (".txt", ".fa", ".fasta", ".fna"):
        try:
            table = read_table(path)
        except ValueError:
            table = None
        if table is not None and "label" in table.columns and len(table) == len(sequences):
            labels = table["label"].astype(str).tolist()
    return ids, sequences, labels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gr-ft embed", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Embed sequences with a run's (or any backbone's) layer, one vector per sequence, to parquet.",
        epilog="examples:\n  gr-ft embed runs/demo --input peaks.csv --out emb.parquet --pca emb_pca.png\n"
               "  gr-ft embed ./my_backbone --input seqs.fa --out emb.parquet --layer 1 --pooling cls\n",
    )
    parser.add_argument("run_or_model", help="a run folder, or a backbone folder / Hub id")
    parser.add_argument("--input", required=True, help="FASTA, CSV/TSV (sequence column, optional label), lines, or -")
    parser.add_argument("--out", required=True, help="output .parquet file")
    parser.add_argument("--layer", type=int, default=-1, help="hidden state to pool (0 = embeddings, default -1 = last)")
    parser.add_argument("--pooling", choices=["mean", "cls"], default="mean")
    parser.add_argument("--pca", help="also write a PNG of the first two principal components, coloured by label")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run model code shipped with the backbone (DNABERT-2, HyenaDNA): only if you trust it")
    return parser


def embed_main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``gr-ft embed``."""
    args = build_parser().parse_args(argv)
    if not args.out.endswith(".parquet"):
        raise ValueError(f"--out {args.out}: give a .parquet file name")
    embedder = load_embedder(args.run_or_model, trust_remote_code=args.trust_remote_code)
    ids, sequences, labels = _read_labelled(args.input, "protein" if embedder.tokenizer.kind == "protein" else "dna")
    vectors = embed_sequences(embedder, sequences, args.layer, args.pooling, args.batch_size)
    frame = pd.DataFrame({"id": ids, "sequence": sequences})
    if labels is not None:
        frame["label"] = labels
    frame = pd.concat([frame, pd.DataFrame(vectors, columns=[f"e{i}" for i in range(vectors.shape[1])])], axis=1)
    _write_parquet(frame, Path(args.out))
    print(f"wrote {len(frame)} embeddings of size {vectors.shape[1]} to {args.out}")
    if args.pca:
        print(f"wrote PCA plot to {plot_pca(vectors, labels, Path(args.pca))}")
    return 0
