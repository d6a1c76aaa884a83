"""The batched prediction engine behind ``Predictor``, ``evaluate_run``, ``gr-ft predict`` and ``gr-ft evaluate``.

What it does to be faster than a plain transformers loop on the same model (docs/speed.md measures each):

- the LoRA/DoRA/IA3 adapter is folded into the weights once (peft ``merge_and_unload``);
- fixed-rate vocabularies (k-mers, one token per base or residue) are tokenized in numpy over the
  whole input at once, checked against the Hugging Face tokenizer on a sample; others go through the
  fast tokenizer in one batched call; per-token spans are built only for per-position tasks;
- windows are sorted by length so a batch carries (almost) no padding, and restored to input order; a batch
  holds at most ``batch_size`` windows and ``max_batch_tokens`` tokens (default 4096: bounded memory on long inputs);
- ``torch.inference_mode`` always; bf16 autocast when the run recorded bf16 and this machine runs bf16 faster
  than fp32 (``--precision auto``: whenever it does), decided per machine by :func:`inference_precision`;
- short bf16 batches (<= ``eager_attention_max_tokens``) use eager attention: on CPU the fused SDPA kernel is
  ~2.2x slower than two bf16 matmuls and a softmax at <= 128 tokens (docs/speed.md);
- opt-in: ``torch.compile`` (inductor, weights frozen), dynamic int8 quantization of the Linear layers.

Sequences longer than ``max_length`` tokens are cut into windows of ``max_length`` tokens (specials
included) every ``window_stride`` tokens (default half a window; the last window ends at the sequence
end). Sequence-level outputs are aggregated over windows (``mean`` or ``max`` of probabilities, or of
values for regression); for per-position tasks each token takes the window where it is most central.
``long_sequences="crop"`` instead crops exactly as training did (``data.crop``).

Example:
    >>> engine = InferenceEngine(model, tokenizer, "binary", max_length=66, options=InferenceOptions())
    >>> out = engine.run(["ACGT" * 20, "TATAAA" * 200])
    >>> out.logits.shape, out.windows
    (torch.Size([2, 2]), [1, 37])
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

__all__ = ["InferenceOptions", "InferenceEngine", "EngineOutput", "window_starts", "central_window",
           "aggregate_windows", "merge_adapter", "quantize_linear_int8", "inference_precision", "LONG_SEQUENCE_MODES",
           "WINDOW_AGGREGATIONS", "PRECISIONS", "QUANTIZATIONS"]

logger = logging.getLogger(__name__)

LONG_SEQUENCE_MODES = ("window", "crop")
WINDOW_AGGREGATIONS = ("mean", "max")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
QUANTIZATIONS = ("int8",)
MAX_BATCH_TOKENS = 4096  # default cap on windows x longest window per batch
EAGER_ATTENTION_MAX_TOKENS = 128  # bf16 CPU: eager 2.2x faster than flash SDPA at 69-128 tokens, even at 192-256
_SAMPLE_CHECK = 32  # sequences on which the numpy tokenizer is checked against the Hugging Face one


@dataclass
class InferenceOptions:
    """How the engine predicts; every field has a CLI flag in ``gr-ft predict`` / ``gr-ft evaluate``."""

    batch_size: int = 64
    """Windows per forward pass (--batch-size)."""
    max_batch_tokens: Optional[int] = MAX_BATCH_TOKENS
    """Also cap windows x longest window per batch: bounds activation memory on long inputs and keeps a batch's
    activations cache-sized (5-15% faster on this CPU than 64 windows of 300 tokens); None = no cap
    (--max-batch-tokens, 0 = no cap)."""
    precision: Optional[str] = None
    """auto, fp32, bf16 or fp16 autocast (--precision). None = the run's recorded training precision, except that a
    recorded bf16 runs in fp32 on a machine where bf16 is slower (fp32 in a bare engine); auto = bf16 wherever this
    machine runs bf16 faster, else fp32 (:func:`inference_precision`)."""
    merge_adapter: bool = True
    """Fold a peft adapter into the weights before predicting (--no-merge keeps it separate)."""
    long_sequences: str = "window"
    """window: slide windows over sequences longer than max_length; crop: cut them as training did (--long)."""
    window_stride: Optional[int] = None
    """Tokens between window starts; None = half a window (--window-stride)."""
    aggregation: str = "mean"
    """mean or max of window probabilities (values for regression) (--aggregate)."""
    num_threads: Optional[int] = None
    """torch intra-op threads; None keeps torch's default (OMP_NUM_THREADS or the physical cores) (--threads)."""
    compile: bool = False
    """torch.compile the model (inductor, dynamic shapes, weights frozen); pays only on large inputs: the first call
    compiles for tens of seconds, see docs/speed.md (--compile)."""
    quantize: Optional[str] = None
    """int8: dynamic int8 quantization of every Linear layer (torch.ao ``quantize_dynamic``; activations fp32), CPU
    only, opt-in: its outputs differ from fp32 by more than bf16's (docs/speed.md) (--quantize int8)."""
    eager_attention_max_tokens: int = EAGER_ATTENTION_MAX_TOKENS
    """bf16 CPU batches of at most this many tokens use eager attention instead of SDPA (faster there); 0 = SDPA
    always (--eager-attention-max-tokens)."""

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        for flag, value, choices in (("--precision", self.precision or "fp32", PRECISIONS),
                                     ("--long", self.long_sequences, LONG_SEQUENCE_MODES),
                                     ("--aggregate", self.aggregation, WINDOW_AGGREGATIONS)):
            if value not in choices:
                raise ValueError(f"{flag} must be one of {list(choices)}, got {value!r}")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise ValueError(f"--max-batch-tokens must be >= 1, got {self.max_batch_tokens}")
        if self.window_stride is not None and self.window_stride < 1:
            raise ValueError(f"--window-stride must be >= 1 token, got {self.window_stride}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.num_threads}")
        if self.quantize is not None and self.quantize not in QUANTIZATIONS:
            raise ValueError(f"--quantize must be one of {list(QUANTIZATIONS)}, got {self.quantize!r}")
        if self.quantize and self.precision in ("bf16", "fp16"):
            raise ValueError(f"--quantize {self.quantize} keeps fp32 activations; drop --precision {self.precision}")
        if self.eager_attention_max_tokens < 0:
            raise ValueError(f"--eager-attention-max-tokens must be >= 0, got {self.eager_attention_max_tokens}")


@dataclass
class EngineOutput:
    """Outputs per input sequence, in input order.

    ``logits``: a ``(N, C)`` tensor for sequence tasks; for per-position tasks a list of ``(T_i, C)``
    tensors over the sequence's body tokens (specials dropped). For a sequence read in several windows
    the logits are those whose softmax/sigmoid is the aggregated probability (regression: the value).
    ``spans``: per-position tasks only, each body token's half-open span in sequence coordinates (None where
    the tokenizer reports none).
    """

    logits: torch.Tensor | list[torch.Tensor]
    windows: list[int]
    spans: Optional[list[list[tuple[int, int]]]] = None


# ----------------------------------------------------------------------------- windows


def window_starts(n_tokens: int, window: int, stride: int) -> list[int]:
    """Start of each window of ``window`` body tokens over ``n_tokens``; the last one ends at the end.

    Example:
        >>> window_starts(10, 4, 2)
        [0, 2, 4, 6]
        >>> window_starts(3, 4, 2)
        [0]
    """
    if n_tokens <= window:
        return [0]
    starts = list(range(0, n_tokens - window, stride))
    return starts + [n_tokens - window]


def central_window(n_tokens: int, starts: Sequence[int], window: int) -> np.ndarray:
    """For each token, the index of the window whose centre is nearest (earlier window on ties).

    Example:
        >>> central_window(6, [0, 2], 4).tolist()   # centres 1.5 and 3.5
        [0, 0, 0, 1, 1, 1]
    """
    tokens = np.arange(n_tokens)[:, None]
    centres = np.asarray(starts, dtype=np.float64)[None, :] + (min(window, n_tokens) - 1) / 2
    return np.abs(tokens - centres).argmin(axis=1)


def _link(problem_type: str, logits: torch.Tensor) -> torch.Tensor:
    if problem_type == "multilabel":
        return logits.sigmoid()
    if problem_type == "regression":
        return logits
    return logits.softmax(-1)


def _unlink(problem_type: str, probs: torch.Tensor) -> torch.Tensor:
    tiny = torch.finfo(probs.dtype).tiny
    if problem_type == "multilabel":
        return torch.logit(probs.clamp(tiny, 1 - 1e-7))
    if problem_type == "regression":
        return probs
    return probs.clamp_min(tiny).log()


def aggregate_windows(problem_type: str, window_logits: torch.Tensor, how: str) -> torch.Tensor:
    """One sequence's logits from its windows' logits (W, C).

    Probabilities (values for regression) are averaged (``mean``) or maxed (``max``) over windows and
    turned back into logits. ``max`` for binary tasks is the max of P(class 1), P(class 0) its complement
    ("positive if any window is"); for multi-class, each class's max renormalised to sum 1; for
    multi-label, each label's max.

    Example:
        >>> aggregate_windows("binary", torch.tensor([[0.0, 0.0], [0.0, 2.0]]), "mean").softmax(-1)
        tensor([0.2808, 0.7192])
    """
    if len(window_logits) == 1:
        return window_logits[0]
    probs = _link(problem_type, window_logits.float())
    if how == "mean":
        merged = probs.mean(0)
    elif problem_type == "binary":
        positive = probs[:, 1].max()
        merged = torch.stack([1 - positive, positive])
    else:
        merged = probs.max(0).values
        if problem_type == "multiclass":
            merged = merged / merged.sum()
    return _unlink(problem_type, merged)


# ----------------------------------------------------------------------------- tokenization


class _FastVocab:
    """Token ids of fixed-rate vocabularies computed in numpy over all sequences at once.

    k-mer: the id of every overlapping k-mer (a k-mer with a base outside ACGT is the tokenizer's
    [UNK]); nucleotide/protein: one id per character. Built from the tokenizer's own vocabulary.
    """

    def __init__(self, tokenizer):
        self.k = tokenizer.k if tokenizer.kind == "kmer" else 1
        self.kind = tokenizer.kind
        vocab = tokenizer.hf.get_vocab()
        unk = tokenizer.hf.unk_token_id
        if self.kind == "kmer":
            import itertools

            kmers = ("".join(p) for p in itertools.product("ACGT", repeat=self.k))
            self.table = np.array([vocab.get(kmer, unk) for kmer in kmers] + [unk], dtype=np.int64)
            self.codes = np.full(256, -1, dtype=np.int64)
            for code, base in enumerate(b"ACGT"):
                self.codes[base] = code
        else:
            self.table = np.full(256, unk, dtype=np.int64)
            for token, token_id in vocab.items():
                if len(token) == 1 and token.isascii():
                    self.table[ord(token)] = token_id

    def body_ids(self, sequences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """All body ids concatenated, and each sequence's [start, end) into them (rows of ``bounds``)."""
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        flat = np.frombuffer("".join(sequences).upper().encode("ascii"), dtype=np.uint8)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        if self.kind != "kmer":
            return self.table[flat], np.stack([starts, starts + lengths], axis=1)
        codes = self.codes[flat]
        index = np.zeros(max(len(flat) - self.k + 1, 0), dtype=np.int64)
        unknown = np.zeros(len(index), dtype=bool)
        for offset in range(self.k):  # base-4 number of the k-mer starting at each position
            part = codes[offset : offset + len(index)]
            index = index * 4 + np.maximum(part, 0)
            unknown |= part < 0
        index[unknown] = len(self.table) - 1
        ids = self.table[index]
        n_tokens = np.maximum(lengths - self.k + 1, 0)
        return ids, np.stack([starts, starts + n_tokens], axis=1)


def _template(tokenizer) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after a sequence's tokens."""
    probe = tokenizer.encode(["A" * 2 * max(tokenizer.k or 1, 1)])
    ids, spans = probe["input_ids"][0], probe["token_spans"][0]
    body = [i for i, span in enumerate(spans) if span is not None]
    return ids[: body[0]], ids[body[-1] + 1 :]


def _looks_plain(sequences: Sequence[str]) -> bool:
    """True when no sequence holds whitespace or special-token markup (the numpy path then applies)."""
    joined = "".join(sequences)
    return joined.isascii() and not any(ch in joined for ch in " \t\n\r<>[]")


class _Encoder:
    """Body token ids (and spans when asked) of whole sequences, without truncation."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.prefix, self.suffix = _template(tokenizer)
        # numpy ids only where one character (or one overlapping k-mer) is one token; spaced residues (ProtBERT's
        # U Z O B -> X), chunked k-mers and BPE go through the tokenizer
        plain = tokenizer.input_format in ("kmer", "char") and tokenizer.kind in ("kmer", "nucleotide", "protein")
        self.fast = _FastVocab(tokenizer) if plain else None
        self._checked = False

    def bodies(self, sequences: Sequence[str], with_spans: bool) -> tuple[list[np.ndarray], Optional[list]]:
        if self.fast is not None and _looks_plain(sequences):
            ids, bounds = self.fast.body_ids(sequences)
            bodies = [ids[a:b] for a, b in bounds.tolist()]
            if self._matches_tokenizer(sequences, bodies):
                spans = None
                if with_spans:
                    centre = (self.fast.k - 1) // 2
                    spans = [[(j + centre, j + centre + 1) for j in range(len(b))] for b in bodies]
                return bodies, spans
        return self._hf_bodies(sequences, with_spans)

    def _hf_bodies(self, sequences, with_spans):
        if with_spans:
            encoded = self.tokenizer.encode(list(sequences))
            cut = slice(len(self.prefix), -len(self.suffix) or None)
            bodies = [np.asarray(ids[cut], dtype=np.int64) for ids in encoded["input_ids"]]
            return bodies, [spans[cut] for spans in encoded["token_spans"]]
        texts = [self.tokenizer.model_text(s) for s in sequences]
        ids = self.tokenizer.hf(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        return [np.asarray(row, dtype=np.int64) for row in ids], None

    def _matches_tokenizer(self, sequences, bodies) -> bool:
        """Known-answer check of the numpy path on a sample, once per engine; mismatch -> the HF path."""
        if self._checked:
            return True
        sample = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        picks = sorted(set(sample[:_SAMPLE_CHECK // 2] + sample[-_SAMPLE_CHECK // 2:]))
        reference, _ = self._hf_bodies([sequences[i] for i in picks], with_spans=False)
        ok = all(np.array_equal(reference[j], bodies[i]) for j, i in enumerate(picks))
        if not ok:
            logger.warning("numpy tokenization disagrees with the %s tokenizer; using the Hugging Face tokenizer",
                           self.tokenizer.kind)
            self.fast = None
        self._checked = ok
        return ok


# ----------------------------------------------------------------------------- model


def merge_adapter(model: torch.nn.Module, copy_model: bool = True) -> torch.nn.Module:
    """The model with a peft adapter folded into its weights (``merge_and_unload``); others unchanged.

    ``copy_model=False`` merges in place (the caller's PeftModel is consumed).

    Example:
        >>> merged = merge_adapter(peft_model)   # a plain SequenceModel, same outputs within ~1e-5
    """
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return model
    if not isinstance(model, PeftModel):
        return model
    if copy_model:
        model = copy.deepcopy(model)
    return model.merge_and_unload()


def bf16_is_faster(device: torch.device) -> bool:
    """:func:`gr_ft.training.bf16_is_faster`, imported only when a bf16 decision is to be made (prediction's
    start-up does not load the training stack)."""
    from .training import bf16_is_faster as measured

    return measured(device)


def inference_precision(requested: Optional[str], recorded: str = "fp32",
                        device: torch.device = torch.device("cpu")) -> str:
    """The autocast precision to predict at on this machine, logged.

    ``requested`` None: the run's ``recorded`` precision, but bf16 only where this machine runs it faster (fp32
    otherwise); ``auto``: bf16 wherever this machine runs it faster, else fp32; fp32/bf16 as asked; fp16 needs CUDA.

    Example:
        >>> inference_precision(None, recorded="fp32")
        'fp32'
    """
    wanted = recorded if requested is None else requested
    if wanted == "fp16" and device.type != "cuda":
        logger.warning("fp16 autocast needs a GPU; predicting in fp32 on %s", device.type)
        return "fp32"
    if requested == "auto" or (requested is None and wanted == "bf16"):
        fast = bf16_is_faster(device)
        chosen = "bf16" if fast else "fp32"
        logger.info("predicting in %s: bf16 is %s than fp32 on this %s (%s)", chosen, "faster" if fast else "not faster",
                    device.type, "requested auto" if requested == "auto" else "the run trained in bf16")
        return chosen
    return wanted


def quantize_linear_int8(model: torch.nn.Module, inplace: bool = False) -> torch.nn.Module:
    """``model`` with every ``nn.Linear`` replaced by a dynamically quantized int8 Linear (weights int8 per tensor,
    activations quantized per batch; torch.ao ``quantize_dynamic``, fbgemm kernels); CPU only, fp32 elsewhere.

    Example:
        >>> quantized = quantize_linear_int8(merge_adapter(model))   # max |dprob| vs fp32: docs/speed.md
    """
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch marks torch.ao eager quantization deprecated (in favour of torchao)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=inplace)


def _switchable_attention(model: torch.nn.Module):
    """The backbone whose attention can be switched between SDPA and eager at run time, else None."""
    backbone = getattr(model, "backbone", None)
    can_switch = getattr(backbone, "_can_set_attn_implementation", None)
    if backbone is None or can_switch is None or not hasattr(backbone, "set_attn_implementation"):
        return None
    if getattr(backbone.config, "_attn_implementation", None) != "sdpa" or not can_switch():
        return None
    return backbone


@dataclass
class _Item:
    """One window: which sequence, where its body tokens start, and its ids with specials."""

    sequence: int
    start: int
    ids: np.ndarray


class InferenceEngine:
    """Predict with a ``SequenceModel`` (plain or peft-wrapped) over raw sequences, fast.

    Example:
        >>> engine = InferenceEngine(model, tokenizer, "multiclass", max_length=1002)
        >>> engine.run(proteins).logits.softmax(-1)
    """

    def __init__(self, model: torch.nn.Module, tokenizer, problem_type: str, max_length: int,
                 options: Optional[InferenceOptions] = None, *, crop: str = "start", copy_model: bool = True):
        self.options = options or InferenceOptions()
        self.tokenizer, self.problem_type, self.max_length, self.crop = tokenizer, problem_type, max_length, crop
        if self.options.num_threads:
            torch.set_num_threads(self.options.num_threads)
        self.device = next(model.parameters()).device
        self.precision = "fp32" if self.options.quantize else inference_precision(self.options.precision or "fp32",
                                                                                 device=self.device)
        merged = merge_adapter(model, copy_model=copy_model) if self.options.merge_adapter else model
        if self.options.quantize:
            if self.device.type != "cpu":
                raise ValueError(f"--quantize {self.options.quantize} runs on CPU only; the model is on {self.device}")
            merged = quantize_linear_int8(merged, inplace=merged is not model or not copy_model)
            logger.info("predicting with dynamic int8 Linear layers (--quantize int8), fp32 elsewhere")
        self.model = merged.eval()
        self.forward = self._compiled() if self.options.compile else self.model
        # eager attention for short bf16 CPU batches (not under compile: switching would recompile)
        switch = self.precision == "bf16" and self.device.type == "cpu" and not self.options.compile
        self._attention_backbone = _switchable_attention(self.model) if switch else None
        self.encoder = _Encoder(tokenizer)
        self.window = max_length - len(self.encoder.prefix) - len(self.encoder.suffix)
        if self.window < 1:
            raise ValueError(f"data.max_length={max_length} leaves no room for tokens between the specials")
        self.stride = self.options.window_stride or max(self.window // 2, 1)

    def _compiled(self):
        """inductor with dynamic shapes (no recompile per batch shape) and frozen weights (constant-folded, prepacked
        for oneDNN on CPU): valid because the engine never changes the weights and always runs under inference_mode."""
        return torch.compile(self.model, dynamic=True, options={"freezing": True})

    @property
    def token_task(self) -> bool:
        return self.problem_type == "token_classification"

    def run(self, sequences: Sequence[str]) -> EngineOutput:
        """Outputs for ``sequences`` in input order (see :class:`EngineOutput`)."""
        if isinstance(sequences, str):
            raise TypeError("run expects a list of sequences, not a single string")
        sequences = [s.strip() for s in sequences]
        if self.options.long_sequences == "crop":
            items, spans, n_body = self._cropped_items(sequences)
        else:
            items, spans, n_body = self._windowed_items(sequences)
        outputs = self._forward_items(items)
        windows = np.bincount([item.sequence for item in items], minlength=len(sequences)).tolist()
        if self.token_task:
            return EngineOutput(self._stitch(items, outputs, n_body), windows, spans)
        return EngineOutput(self._aggregate(items, outputs, len(sequences)), windows)

    # -- items
    def _windowed_items(self, sequences):
        bodies, spans = self.encoder.bodies(sequences, with_spans=self.token_task)
        prefix = np.asarray(self.encoder.prefix, dtype=np.int64)
        suffix = np.asarray(self.encoder.suffix, dtype=np.int64)
        items = []
        for index, body in enumerate(bodies):
            for start in window_starts(len(body), self.window, self.stride):
                items.append(_Item(index, start, np.concatenate([prefix, body[start : start + self.window], suffix])))
        return items, spans, [len(b) for b in bodies]

    def _cropped_items(self, sequences):
        """Exactly the training-time crop and tokenization (``data.encode_sequences``): one window each."""
        from .data import encode_sequences

        encoded, offsets = encode_sequences(self.tokenizer, list(sequences), self.max_length, self.crop)
        cut = slice(len(self.encoder.prefix), -len(self.encoder.suffix) or None)
        items = [_Item(i, 0, np.asarray(ids, dtype=np.int64)) for i, ids in enumerate(encoded["input_ids"])]
        spans = None
        if self.token_task:
            spans = [[None if s is None else (s[0] + off, s[1] + off) for s in row[cut]]
                     for row, off in zip(encoded["token_spans"], offsets)]
        return items, spans, [len(ids) - len(self.encoder.prefix) - len(self.encoder.suffix) for ids in
                              encoded["input_ids"]]

    # -- forward
    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @contextlib.contextmanager
    def _attention_switch(self):
        """Yields ``use(longest)``, which puts the backbone on eager attention for batches of at most
        ``eager_attention_max_tokens`` tokens and on SDPA otherwise; SDPA is restored on exit."""
        backbone = self._attention_backbone
        if (backbone is None or self.options.eager_attention_max_tokens == 0
                or backbone.config._attn_implementation != "sdpa"):  # not ours to switch (e.g. a caller chose eager)
            yield lambda longest: None
            return
        current = ["sdpa"]

        def use(longest: int) -> None:
            wanted = "eager" if longest <= self.options.eager_attention_max_tokens else "sdpa"
            if wanted != current[0]:
                backbone.set_attn_implementation(wanted)
                current[0] = wanted

        try:
            yield use
        finally:
            use(self.options.eager_attention_max_tokens + 1)  # back to SDPA

    def _batches(self, items: list[_Item]) -> list[list[int]]:
        """Index lists of length-sorted windows: ``batch_size`` at a time, fewer where ``max_batch_tokens`` says."""
        order = sorted(range(len(items)), key=lambda i: len(items[i].ids))
        size, budget = self.options.batch_size, self.options.max_batch_tokens
        batches: list[list[int]] = []
        for index in order:  # ascending lengths: the newest window is the batch's longest
            longest = len(items[index].ids)
            if batches and len(batches[-1]) < size and (budget is None or (len(batches[-1]) + 1) * longest <= budget):
                batches[-1].append(index)
            else:
                batches.append([index])
        return batches

    def _collate(self, batch: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = np.full((len(batch), longest), pad, dtype=np.int64)
        mask = np.zeros((len(batch), longest), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        return torch.from_numpy(input_ids).to(self.device), torch.from_numpy(mask).to(self.device)

    def _forward_items(self, items: list[_Item]) -> list[Optional[torch.Tensor]]:
        """Float32 logits per item (token tasks: the item's body tokens only)."""
        outputs: list[Optional[torch.Tensor]] = [None] * len(items)
        head = len(self.encoder.prefix)
        with torch.inference_mode(), self._autocast(), self._attention_switch() as use_attention:
            for batch in self._batches(items):
                input_ids, mask = self._collate([items[i].ids for i in batch])
                use_attention(input_ids.shape[1])
                logits = self.forward(input_ids=input_ids, attention_mask=mask)["logits"].float().cpu()
                for row, index in enumerate(batch):
                    if self.token_task:
                        n = len(items[index].ids) - head - len(self.encoder.suffix)
                        outputs[index] = logits[row, head : head + n]
                    else:
                        outputs[index] = logits[row]
        return outputs

    # -- per sequence
    def _aggregate(self, items, outputs, n_sequences: int) -> torch.Tensor:
        groups: list[list[torch.Tensor]] = [[] for _ in range(n_sequences)]
        for item, out in zip(items, outputs):
            groups[item.sequence].append(out)
        how = self.options.aggregation
        return torch.stack([g[0] if len(g) == 1 else aggregate_windows(self.problem_type, torch.stack(g), how)
                            for g in groups])

    def _stitch(self, items, outputs, n_body: list[int]) -> list[torch.Tensor]:
        """Per-token logits over each whole sequence, each token from the window where it is most central."""
        groups: list[list[tuple[int, torch.Tensor]]] = [[] for _ in n_body]
        for item, out in zip(items, outputs):
            groups[item.sequence].append((item.start, out))
        stitched = []
        for n, group in zip(n_body, groups):
            if len(group) == 1:
                stitched.append(group[0][1])
                continue
            group.sort(key=lambda pair: pair[0])
            starts = [start for start, _ in group]
            best = torch.from_numpy(central_window(n, starts, self.window))
            whole = torch.empty(n, group[0][1].shape[-1])
            for w, (start, logits) in enumerate(group):
                tokens = (best == w).nonzero().squeeze(-1)  # a contiguous run: window centres increase
                whole[tokens] = logits[tokens - start]
            stitched.append(whole)
        return stitched
