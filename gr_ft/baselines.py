"""Baselines trained on the same splits and scored by the same metrics as the language models.

- ``kmer_logreg``: counts of every k-mer for k in ``kmer.k_min..kmer.k_max`` (default 1-6 for DNA,
  1-3 for protein; scikit-learn ``TfidfVectorizer(analyzer="char")``, sub-linear TF-IDF, L2 norm)
  and a logistic regression whose C is picked on dev from a small grid.
- ``cnn``: a DeepBind/Basset-style CNN on one-hot sequences (DNA: 4 channels, N = 0.25 each;
  protein: 20 amino acids + X), conv blocks (conv, ReLU, max-pool, dropout), global max-pool over
  real positions and a dense head; AdamW, length-bucketed seeded batches, early stopping on dev.

Both report test (and dev) metrics through :class:`~gr_ft.evaluation.MetricAccumulator`, so the
names and definitions match the fine-tuning path (``mcc``, ``auroc``, ``auprc``, ..., ``loss``);
the logistic regression passes its log-probabilities as logits. Binary and multiclass tasks.

Example:
    >>> splits = load_splits(DataConfig(path="../shared/data/promoter/gue_prom_core_all"), "dna")
    >>> spec = infer_label_spec(splits["train"].frame["label"])
    >>> result = run_baseline("kmer_logreg", splits, spec, BaselineConfig(), seed=0)
    >>> result["test"]["mcc"], result["wall_time_s"]
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import balanced_class_weights, crop_sequences
from .evaluation import PRIMARY_METRIC, MetricAccumulator, metric_direction
from .labels import LabelSpec

__all__ = [
    "KmerConfig",
    "CnnConfig",
    "BaselineConfig",
    "BASELINES",
    "SUPPORTED_PROBLEM_TYPES",
    "run_baseline",
    "run_kmer_logreg",
    "run_cnn",
    "SequenceCNN",
    "kmer_vectorizer",
    "length_bucketed_batches",
    "predict_logits",
    "one_hot_table",
    "symbol_ids",
    "score_logits",
]

logger = logging.getLogger(__name__)

SUPPORTED_PROBLEM_TYPES = ("binary", "multiclass")
KMER_RANGE: dict[str, tuple[int, int]] = {"dna": (1, 6), "protein": (1, 3)}
"""Default k-mer sizes per alphabet: 5,460 DNA features, 8,420 protein features."""
KMER_WEIGHTINGS = ("tfidf", "counts")
CROPS = ("start", "end", "center")
DNA_LETTERS = "ACGTN"
PROTEIN_LETTERS = "ACDEFGHIKLMNPQRSTVWY" + "XBZUO"
PAD_ID = 0


def _check_positive(flag: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{flag} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{flag} must be one of {list(choices)}, got {value!r}")


def _as_float_tuple(flag: str, value: Any) -> tuple[float, ...]:
    """A grid given as a tuple/list or a comma-separated string ("0.1,1,10")."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        grid = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} must be a list of numbers such as 0.1,1,10; got {value!r}") from None
    if not grid or any(v <= 0 for v in grid):
        raise ValueError(f"{flag} must hold one or more positive numbers, got {value!r}")
    return grid


@dataclass
class KmerConfig:
    """k-mer count features and the logistic regression on them."""

    k_min: Optional[int] = None
    """Smallest k; empty: 1."""
    k_max: Optional[int] = None
    """Largest k; empty: 6 for DNA, 3 for protein."""
    weighting: str = "tfidf"
    """tfidf (sub-linear TF-IDF, L2-normalised) or counts (L2-normalised raw counts)."""
    c_grid: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)
    """Inverse regularisation strengths tried; the best on dev (primary metric) is kept."""
    max_iter: int = 1000
    """lbfgs iterations per fit."""

    def __post_init__(self):
        _check_choice("kmer.weighting", self.weighting, KMER_WEIGHTINGS)
        self.c_grid = _as_float_tuple("kmer.c_grid", self.c_grid)
        _check_positive("kmer.max_iter", self.max_iter)
        for flag in ("k_min", "k_max"):
            if getattr(self, flag) is not None:
                _check_positive(f"kmer.{flag}", getattr(self, flag))
        if self.k_min is not None and self.k_max is not None and self.k_min > self.k_max:
            raise ValueError(f"kmer.k_min ({self.k_min}) must be <= kmer.k_max ({self.k_max})")

    def k_range(self, alphabet: str) -> tuple[int, int]:
        """(k_min, k_max) with the alphabet's defaults filled in."""
        low, high = KMER_RANGE[alphabet]
        return (self.k_min or low, self.k_max or high)


@dataclass
class CnnConfig:
    """A small DeepBind/Basset-style CNN, sized for CPU."""

    conv_layers: int = 2
    """Conv blocks, each conv -> ReLU -> max-pool -> dropout."""
    channels: int = 64
    """Filters per conv layer."""
    first_kernel_size: int = 15
    """Width of the first layer's filters (motif detectors), odd."""
    kernel_size: int = 5
    """Width of later layers' filters, odd."""
    pool_size: int = 2
    """Max-pool width and stride after each conv layer."""
    hidden_size: int = 64
    """Units of the dense layer after global max-pooling."""
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 128
    eval_batch_size: int = 512
    epochs: int = 10
    """Upper bound on epochs; training stops earlier after `patience` epochs without a dev gain."""
    patience: int = 2
    """Epochs without a dev improvement (primary metric) before stopping; 0: never stop early."""
    max_length: int = 1000
    """Residues/bases kept per sequence (see `crop`)."""
    crop: str = "start"
    """Which part of a longer sequence to keep: start, end or center."""

    def __post_init__(self):
        for flag in ("conv_layers", "channels", "first_kernel_size", "kernel_size", "pool_size", "hidden_size",
                     "lr", "batch_size", "eval_batch_size", "epochs", "max_length"):
            _check_positive(f"cnn.{flag}", getattr(self, flag))
        _check_positive("cnn.weight_decay", self.weight_decay, allow_zero=True)
        _check_positive("cnn.patience", self.patience, allow_zero=True)
        for flag in ("first_kernel_size", "kernel_size"):
            if getattr(self, flag) % 2 == 0:
                raise ValueError(f"cnn.{flag} must be odd (so 'same' padding keeps positions), got {getattr(self, flag)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"cnn.dropout must be in [0, 1), got {self.dropout}")
        _check_choice("cnn.crop", self.crop, CROPS)


@dataclass
class BaselineConfig:
    """Settings shared by the baselines, plus one section per baseline.

    Loads like the fine-tuning config: ``load_config(BaselineConfig, None, ["cnn.epochs=3"])``.
    """

    alphabet: str = "dna"
    """dna or protein: picks default k-mer sizes and the one-hot encoding."""
    class_weighting: str = "none"
    """none or balanced (inverse class frequency), for imbalanced sets such as PTM sites."""
    kmer: KmerConfig = field(default_factory=KmerConfig)
    cnn: CnnConfig = field(default_factory=CnnConfig)

    def __post_init__(self):
        _check_choice("alphabet", self.alphabet, ("dna", "protein"))
        _check_choice("class_weighting", self.class_weighting, ("none", "balanced"))


# ---------------------------------------------------------------- shared helpers


def _encoded_labels(split, spec: LabelSpec) -> np.ndarray:
    """Class ids of one LabeledSplit; unknown labels raise with file and line."""
    frame = split.frame
    return np.array([spec.encode(raw, f"{split.source}:{line}") for raw, line in zip(frame["label"], frame["_line"])],
                    dtype=np.int64)


def score_logits(logits: torch.Tensor, labels: np.ndarray, spec: LabelSpec) -> dict[str, float]:
    """The fine-tuning path's metrics (MetricAccumulator) plus ``loss``, the mean unweighted cross-entropy.

    Example:
        >>> score_logits(torch.tensor([[2.0, -1.0], [-1.0, 3.0]]), np.array([0, 1]), LabelSpec("binary", ["0", "1"]))["mcc"]
        1.0
    """
    targets = torch.as_tensor(labels, dtype=torch.long)
    accumulator = MetricAccumulator(spec.problem_type, spec.num_labels)
    accumulator.add_batch(logits, targets)
    metrics = accumulator.compute()
    metrics["loss"] = float(F.cross_entropy(logits.float(), targets))
    return metrics


def _better(candidate: dict[str, float], best: Optional[dict[str, float]], problem_type: str) -> bool:
    """Whether ``candidate`` beats ``best`` on the primary dev metric (nan never wins)."""
    name = PRIMARY_METRIC[problem_type]
    value = candidate[name]
    if math.isnan(value):
        return False
    if best is None or math.isnan(best[name]):
        return True
    return value > best[name] if metric_direction(name) == "max" else value < best[name]


# ---------------------------------------------------------------- k-mer logistic regression


def kmer_vectorizer(cfg: BaselineConfig):
    """The k-mer featuriser: character n-grams of the configured sizes, TF-IDF or L2-normalised counts.

    Example:
        >>> kmer_vectorizer(BaselineConfig()).fit(["ACGTAC"]).transform(["ACGT"]).shape
        (1, 18)
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = cfg.kmer.weighting == "tfidf"
    return TfidfVectorizer(analyzer="char", ngram_range=cfg.kmer.k_range(cfg.alphabet), lowercase=False,
                           use_idf=tfidf, sublinear_tf=tfidf, norm="l2", dtype=np.float32)


def _fit_logreg(features, labels: np.ndarray, c: float, cfg: BaselineConfig, seed: int):
    """One lbfgs logistic regression (multinomial when there are more than two classes)."""
    from sklearn.linear_model import LogisticRegression

    weight = "balanced" if cfg.class_weighting == "balanced" else None
    model = LogisticRegression(C=c, max_iter=cfg.kmer.max_iter, class_weight=weight, random_state=seed)
    return model.fit(features, labels)


def _logreg_logits(model, features, num_labels: int) -> torch.Tensor:
    """(N, num_labels) log-probabilities, with columns for classes absent from train set to -inf-like."""
    log_probs = np.full((features.shape[0], num_labels), -1e4, dtype=np.float32)
    log_probs[:, model.classes_] = model.predict_log_proba(features)
    return torch.from_numpy(log_probs)


def run_kmer_logreg(splits: Mapping[str, Any], spec: LabelSpec, cfg: BaselineConfig, seed: int = 0) -> dict[str, Any]:
    """Fit k-mer logistic regressions over ``cfg.kmer.c_grid``, keep the best on dev, score dev and test.

    Example:
        >>> run_kmer_logreg(splits, spec, BaselineConfig(), seed=0)["selected"]
        {'C': 3.0, 'k_range': [1, 6], 'features': 5460}
    """
    vectorizer = kmer_vectorizer(cfg)
    features = {"train": vectorizer.fit_transform(splits["train"].frame["sequence"])}
    for name in ("dev", "test"):
        features[name] = vectorizer.transform(splits[name].frame["sequence"])
    labels = {name: _encoded_labels(splits[name], spec) for name in ("train", "dev", "test")}
    primary = PRIMARY_METRIC[spec.problem_type]
    best_model, best_dev, best_c, history = None, None, None, []
    for c in cfg.kmer.c_grid:
        model = _fit_logreg(features["train"], labels["train"], c, cfg, seed)
        dev = score_logits(_logreg_logits(model, features["dev"], spec.num_labels), labels["dev"], spec)
        history.append({"C": c, **{f"dev_{k}": v for k, v in dev.items()}})
        logger.info("kmer_logreg C=%g: dev %s %.4f", c, primary, dev[primary])
        if best_model is None or _better(dev, best_dev, spec.problem_type):
            best_model, best_dev, best_c = model, dev, c
    model, dev, c = best_model, best_dev, best_c
    test = score_logits(_logreg_logits(model, features["test"], spec.num_labels), labels["test"], spec)
    return {
        "test": test, "dev": dev, "history": history,
        "selected": {"C": c, "k_range": list(cfg.kmer.k_range(cfg.alphabet)), "features": features["train"].shape[1]},
        "num_parameters": int(model.coef_.size + model.intercept_.size),
    }


# ---------------------------------------------------------------- CNN


def one_hot_table(alphabet: str) -> torch.Tensor:
    """(symbols, channels) encoding by symbol id; row 0 (padding) is all zeros.

    DNA: A C G T one-hot, N = 0.25 each. Protein: 20 amino acids one-hot, X its own channel,
    B = D/N and Z = E/Q (0.5 each), U (selenocysteine) as C, O (pyrrolysine) as K.

    Example:
        >>> one_hot_table("dna")[symbol_ids(["N"], "dna", 10, "start")[0].astype(np.int64)].tolist()
        [[0.25, 0.25, 0.25, 0.25]]
    """
    if alphabet == "dna":
        table = torch.zeros(1 + len(DNA_LETTERS), 4)
        table[1:5] = torch.eye(4)
        table[5] = 0.25
        return table
    amino = PROTEIN_LETTERS[:20]
    table = torch.zeros(1 + len(PROTEIN_LETTERS), 21)
    table[1:21, :20] = torch.eye(20)
    row = {letter: 1 + i for i, letter in enumerate(PROTEIN_LETTERS)}
    table[row["X"], 20] = 1.0
    for letter, meaning in {"B": "DN", "Z": "EQ", "U": "C", "O": "K"}.items():
        for residue in meaning:
            table[row[letter], amino.index(residue)] = 1.0 / len(meaning)
    return table


def symbol_ids(sequences: list[str], alphabet: str, max_length: int, crop: str) -> list[np.ndarray]:
    """Crop each sequence to ``max_length`` and map letters to ids 1.. (0 is padding).

    Example:
        >>> symbol_ids(["ACGTN"], "dna", 3, "end")[0].tolist()
        [3, 4, 5]
    """
    letters = DNA_LETTERS if alphabet == "dna" else PROTEIN_LETTERS
    lookup = np.full(256, 255, dtype=np.uint8)
    lookup[np.frombuffer(letters.encode(), dtype=np.uint8)] = np.arange(1, len(letters) + 1, dtype=np.uint8)
    cropped, _ = crop_sequences(list(sequences), max_length, crop)
    ids = [lookup[np.frombuffer(s.encode("ascii"), dtype=np.uint8)] for s in cropped]
    for i, row in enumerate(ids):
        if (row == 255).any():
            raise ValueError(f"sequence {i} has letters outside the {alphabet} alphabet {letters}: {cropped[i][:30]!r}")
    return ids


class SequenceCNN(nn.Module):
    """One-hot -> [conv -> ReLU -> max-pool -> dropout] x n -> global max over real positions -> dense head.

    Padding never changes the output: padded positions are zeroed after every conv, exactly as
    the conv's own zero padding would see them, and left out of the global max.

    Example:
        >>> model = SequenceCNN(one_hot_table("dna"), num_labels=2, cfg=CnnConfig(channels=8))
        >>> model(torch.tensor([[1, 2, 3, 4, 0]]), torch.tensor([4])).shape
        torch.Size([1, 2])
    """

    def __init__(self, table: torch.Tensor, num_labels: int, cfg: CnnConfig):
        super().__init__()
        self.register_buffer("one_hot", table)
        kernels = [cfg.first_kernel_size] + [cfg.kernel_size] * (cfg.conv_layers - 1)
        widths = [table.shape[1]] + [cfg.channels] * cfg.conv_layers
        self.convs = nn.ModuleList(nn.Conv1d(w, cfg.channels, k, padding=k // 2) for w, k in zip(widths, kernels))
        self.pool = nn.MaxPool1d(cfg.pool_size, ceil_mode=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Sequential(nn.Linear(cfg.channels, cfg.hidden_size), nn.ReLU(), nn.Dropout(cfg.dropout),
                                  nn.Linear(cfg.hidden_size, num_labels))

    def _padding_mask(self, lengths: torch.Tensor, width: int) -> torch.Tensor:
        """(B, 1, width) True where a position is padding."""
        return torch.arange(width, device=lengths.device)[None, None, :] >= lengths[:, None, None]

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.one_hot[ids].transpose(1, 2)  # B, C, L
        for conv in self.convs:
            x = torch.relu(conv(x)).masked_fill(self._padding_mask(lengths, x.shape[2]), 0.0)
            x = self.dropout(self.pool(x))  # ReLU >= 0, so zeroed padding never wins a pooled max
            lengths = torch.div(lengths + self.pool.kernel_size - 1, self.pool.kernel_size, rounding_mode="floor")
        x = x.masked_fill(self._padding_mask(lengths, x.shape[2]), float("-inf"))
        return self.head(x.amax(dim=2))  # B, channels -> B, num_labels


def _pad_batch(ids: list[np.ndarray], index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) padded symbol ids and (B,) lengths of the sequences at ``index``."""
    lengths = np.array([len(ids[i]) for i in index])
    batch = np.zeros((len(index), max(int(lengths.max()), 1)), dtype=np.int64)
    for row, i in enumerate(index):
        batch[row, : lengths[row]] = ids[i]
    return torch.from_numpy(batch), torch.from_numpy(lengths)


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                            bucket_batches: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar lengths: shuffle, sort within windows of ``bucket_batches`` batches, shuffle batches.

    Example:
        >>> [len(b) for b in length_bucketed_batches(np.array([5, 9, 7]), 2, np.random.default_rng(0))]
        [1, 2]
    """
    order = rng.permutation(len(lengths))
    window = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _train_epoch(model: SequenceCNN, ids: list[np.ndarray], labels: np.ndarray, optimizer, loss_fn,
                 *, batch_size: int, rng: np.random.Generator) -> float:
    """One pass over the training set; returns the mean training loss."""
    model.train()
    lengths = np.array([len(row) for row in ids])
    total, seen = 0.0, 0
    for index in length_bucketed_batches(lengths, batch_size, rng):
        batch, batch_lengths = _pad_batch(ids, index)
        loss = loss_fn(model(batch, batch_lengths), torch.from_numpy(labels[index]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, seen = total + loss.item() * len(index), seen + len(index)
    return total / max(seen, 1)


@torch.no_grad()
def predict_logits(model: SequenceCNN, ids: list[np.ndarray], batch_size: int) -> torch.Tensor:
    """(N, num_labels) logits in the original order; batches visit sequences sorted by length."""
    model.eval()
    order = np.argsort([len(row) for row in ids], kind="stable")
    logits = [None] * len(ids)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        out = model(*_pad_batch(ids, index))
        for row, i in enumerate(index):
            logits[i] = out[row]
    return torch.stack(logits)


def _fit_cnn(model: SequenceCNN, data: dict[str, tuple[list[np.ndarray], np.ndarray]], spec: LabelSpec,
             cfg: BaselineConfig, seed: int) -> tuple[dict[str, float], list[dict], int]:
    """Train with early stopping on the dev primary metric; leaves the best weights in ``model``."""
    train_ids, train_labels = data["train"]
    weights = None
    if cfg.class_weighting == "balanced":
        weights = torch.tensor(balanced_class_weights(train_labels, spec.num_labels), dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.cnn.lr, weight_decay=cfg.cnn.weight_decay)
    rng = np.random.default_rng(seed)
    best, best_state, best_epoch, history, stale = None, None, 0, [], 0
    for epoch in range(1, cfg.cnn.epochs + 1):
        loss = _train_epoch(model, train_ids, train_labels, optimizer, loss_fn, batch_size=cfg.cnn.batch_size, rng=rng)
        dev = score_logits(predict_logits(model, data["dev"][0], cfg.cnn.eval_batch_size), data["dev"][1], spec)
        history.append({"epoch": epoch, "train_loss": loss, **{f"dev_{k}": v for k, v in dev.items()}})
        improved = _better(dev, best, spec.problem_type)
        logger.info("cnn epoch %d: train loss %.4f, dev %s %.4f%s", epoch, loss, PRIMARY_METRIC[spec.problem_type],
                    dev[PRIMARY_METRIC[spec.problem_type]], " (best)" if improved else "")
        if improved:
            best, best_state, best_epoch, stale = dev, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            stale += 1
            if cfg.cnn.patience and stale >= cfg.cnn.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return best if best is not None else dev, history, best_epoch


def run_cnn(splits: Mapping[str, Any], spec: LabelSpec, cfg: BaselineConfig, seed: int = 0) -> dict[str, Any]:
    """Train the CNN (seeded init, dropout and batch order), keep the best dev epoch, score dev and test.

    Example:
        >>> run_cnn(splits, spec, BaselineConfig(cnn=CnnConfig(epochs=3)), seed=0)["best_epoch"]  # dev MCC still rising
        3
    """
    torch.manual_seed(seed)
    data = {}
    for name in ("train", "dev", "test"):
        ids = symbol_ids(splits[name].frame["sequence"].tolist(), cfg.alphabet, cfg.cnn.max_length, cfg.cnn.crop)
        data[name] = (ids, _encoded_labels(splits[name], spec))
    model = SequenceCNN(one_hot_table(cfg.alphabet), spec.num_labels, cfg.cnn)
    dev, history, best_epoch = _fit_cnn(model, data, spec, cfg, seed)
    test = score_logits(predict_logits(model, data["test"][0], cfg.cnn.eval_batch_size), data["test"][1], spec)
    return {
        "test": test, "dev": dev, "history": history, "best_epoch": best_epoch,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }


# ---------------------------------------------------------------- registry


Baseline = Callable[[Mapping[str, Any], LabelSpec, BaselineConfig, int], dict[str, Any]]

BASELINES: dict[str, Baseline] = {
    "kmer_logreg": run_kmer_logreg,
    "cnn": run_cnn,
}
"""Baseline name -> function(splits, spec, cfg, seed) returning test/dev metrics and details."""


def _check_inputs(name: str, splits: Mapping[str, Any], spec: LabelSpec) -> None:
    """Raise if the baseline, the splits or the problem type cannot be run."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
    missing = [s for s in ("train", "dev", "test") if s not in splits]
    if missing:
        raise ValueError(f"baselines need train, dev and test splits; missing {missing} (load_splits fills them in)")
    if spec.problem_type not in SUPPORTED_PROBLEM_TYPES:
        raise ValueError(f"baselines support {list(SUPPORTED_PROBLEM_TYPES)} tasks, not {spec.problem_type!r}")


def run_baseline(name: str, splits: Mapping[str, Any], spec: LabelSpec, cfg: Optional[BaselineConfig] = None,
                 seed: int = 0) -> dict[str, Any]:
    """Train baseline ``name`` on ``splits["train"]``, select on dev, and score test with the LM path's metrics.

    Returns ``{"baseline", "seed", "test": {...}, "dev": {...}, "dev_<primary>", "num_parameters",
    "wall_time_s", "history", ...}``; ``test``/``dev`` hold the same metric names as fine-tuning.

    Example:
        >>> result = run_baseline("cnn", splits, spec, BaselineConfig(alphabet="dna"), seed=0)
        >>> sorted(result["test"])
        ['accuracy', 'auprc', 'auroc', 'f1', 'loss', 'mcc', 'n']
    """
    cfg = cfg or BaselineConfig()
    _check_inputs(name, splits, spec)
    started = time.time()
    result = BASELINES[name](splits, spec, cfg, seed)
    primary = PRIMARY_METRIC[spec.problem_type]
    result = {"baseline": name, "seed": seed, **result, f"dev_{primary}": result["dev"][primary],
              "wall_time_s": round(time.time() - started, 1)}
    logger.info("%s (seed %d): test %s %.4f in %.1f s", name, seed, primary, result["test"][primary], result["wall_time_s"])
    return result
