"""Masked-LM corruption, vectorised in torch: which tokens to predict, and what the model sees there.

Single-token vocabularies (nucleotide, protein, BPE) mask tokens independently (BERT: 15%, of which
80% become the mask token, 10% a random token, 10% stay). Overlapping k-mer vocabularies mask
contiguous spans of k tokens (DNABERT): with overlapping k-mers a lone masked token is spelled out
by its neighbours (its first k-1 bases end the left k-mer, its last k-1 bases start the right one),
so the model could learn to copy instead of to model DNA. A run of k masked k-mers hides a base
that every k-mer of the run contains, so none of them can be read off the context.

Differences from ``transformers.DataCollatorForLanguageModeling`` (same 80/10/10 scheme): random
replacements are drawn from the non-special tokens only (the HF collator draws from the whole
vocabulary, which for the 10-token nucleotide vocabulary means [PAD]/[CLS]/[MASK]... half the time),
spans are supported, and every batch has its own seeded generator, so a resumed run masks
exactly like an uninterrupted one.

Example:
    >>> collator = MaskedLMCollator(SequenceTokenizer.from_pretrained("kmer6"), MaskingConfig(), seed=0)
    >>> batch = collator(TokenBatch(0, [np.array([2, 100, 200, 300, 3])]))
    >>> sorted(batch)
    ['input_ids', 'labels']
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from .config import MaskingConfig
from .corpus import TokenBatch

__all__ = [
    "MaskedLMCollator",
    "select_mask_positions",
    "replace_masked_tokens",
    "mask_tokens",
    "span_centre_probability",
    "resolve_span_length",
    "pad_token_arrays",
    "residue_token_ids",
]


def resolve_span_length(cfg: MaskingConfig, tokenizer) -> int:
    """``masking.span_length``, with 0 meaning k for overlapping k-mer vocabularies and 1 otherwise.

    Example:
        >>> resolve_span_length(MaskingConfig(), SequenceTokenizer.from_pretrained("kmer6"))
        6
    """
    if cfg.span_length:
        return cfg.span_length
    return tokenizer.k if tokenizer.kind == "kmer" else 1


def span_centre_probability(mlm_probability: float, span_length: int) -> float:
    """Centre probability q such that spans of ``span_length`` around independent centres cover
    ``mlm_probability`` of the tokens: 1 - (1 - q)^span = mlm_probability.

    Example:
        >>> round(span_centre_probability(0.15, 6), 4)
        0.0267
    """
    return 1 - (1 - mlm_probability) ** (1 / span_length)


def select_mask_positions(maskable: torch.Tensor, mlm_probability: float, span_length: int,
                          generator: torch.Generator) -> torch.Tensor:
    """Boolean B, L mask of the tokens to predict; ``maskable`` (B, L) excludes specials and padding.

    ``span_length`` 1 picks tokens independently; longer spans dilate random centres so that a
    centre at c masks c - (span-1)//2 ... c + span//2.

    Example:
        >>> maskable = torch.ones(4, 1000, dtype=torch.bool)
        >>> select_mask_positions(maskable, 0.15, 6, torch.Generator().manual_seed(0)).float().mean()  # ~0.15
    """
    if span_length == 1:
        return (torch.rand(maskable.shape, generator=generator) < mlm_probability) & maskable
    q = span_centre_probability(mlm_probability, span_length)
    centres = (torch.rand(maskable.shape, generator=generator) < q) & maskable
    left, right = span_length // 2, (span_length - 1) // 2
    padded = F.pad(centres.float().unsqueeze(1), (left, right))  # B, 1, L + span - 1
    covered = F.max_pool1d(padded, kernel_size=span_length, stride=1).squeeze(1) > 0  # B, L
    return covered & maskable


def replace_masked_tokens(input_ids: torch.Tensor, masked: torch.Tensor, mask_token_id: int,
                          random_token_ids: torch.Tensor, cfg: MaskingConfig,
                          generator: torch.Generator) -> torch.Tensor:
    """The model's input: masked positions become the mask token, a random token, or stay (80/10/10).

    Example:
        >>> replace_masked_tokens(ids, masked, tok.mask_token_id, torch.arange(5, 10), MaskingConfig(), g)
    """
    draw = torch.rand(input_ids.shape, generator=generator)
    to_mask = masked & (draw < cfg.mask_replace_prob)
    to_random = masked & (draw >= cfg.mask_replace_prob) & (draw < cfg.mask_replace_prob + cfg.random_replace_prob)
    corrupted = input_ids.masked_fill(to_mask, mask_token_id)
    picks = torch.randint(len(random_token_ids), (int(to_random.sum()),), generator=generator)
    corrupted[to_random] = random_token_ids[picks]
    return corrupted


def mask_tokens(input_ids: torch.Tensor, maskable: torch.Tensor, mask_token_id: int,
                random_token_ids: torch.Tensor, cfg: MaskingConfig, *, span_length: int,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(corrupted_input_ids, labels)``; labels hold the original id at predicted positions, -100 elsewhere.

    Example:
        >>> inputs, labels = mask_tokens(ids, ids > 4, 4, torch.arange(5, 10), MaskingConfig(), 1, g)
    """
    masked = select_mask_positions(maskable, cfg.mlm_probability, span_length, generator)
    labels = input_ids.masked_fill(~masked, -100)
    return replace_masked_tokens(input_ids, masked, mask_token_id, random_token_ids, cfg, generator), labels


def pad_token_arrays(sequences: list[np.ndarray], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad int64 arrays into ``(input_ids, attention_mask)``, both B, L.

    Example:
        >>> pad_token_arrays([np.array([2, 5, 3]), np.array([2, 3])], 0)[0].tolist()
        [[2, 5, 3], [2, 3, 0]]
    """
    rows = [torch.from_numpy(np.asarray(s, dtype=np.int64)) for s in sequences]
    input_ids = pad_sequence(rows, batch_first=True, padding_value=pad_token_id)
    lengths = torch.tensor([len(row) for row in rows])
    attention_mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
    return input_ids, attention_mask


def residue_token_ids(tokenizer) -> torch.Tensor:
    """Ids of real sequence tokens (k-mers, bases, residues, BPE pieces): the pool for random replacement.

    Special tokens and non-letter tokens such as ESM's ``<null_1>``, ``.`` and ``-`` are left out.

    Example:
        >>> residue_token_ids(SequenceTokenizer.from_pretrained("nucleotide")).tolist()
        [5, 6, 7, 8, 9]
    """
    special = set(tokenizer.special_token_ids)
    ids = sorted(i for token, i in tokenizer.hf.get_vocab().items() if token.isalpha() and i not in special)
    if not ids:
        raise ValueError(f"tokenizer {tokenizer!r} has no letter tokens to draw random replacements from")
    return torch.tensor(ids, dtype=torch.long)


def _batch_seed(seed: int, index: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class MaskedLMCollator:
    """Turn a :class:`TokenBatch` into model inputs: pad, choose positions, corrupt; no per-token Python.

    Returns ``input_ids`` and ``labels`` (plus ``attention_mask`` only when the batch has padding,
    so unpadded batches run attention without a mask). Batch ``index`` seeds the masking.

    Example:
        >>> collator = MaskedLMCollator(tokenizer, MaskingConfig(), seed=0)
        >>> loader = DataLoader(WindowStream(cfg, tokenizer, 32), batch_size=None, collate_fn=collator)
    """

    def __init__(self, tokenizer, cfg: MaskingConfig, seed: int = 0):
        if tokenizer.mask_token_id is None:
            raise ValueError(f"tokenizer {tokenizer!r} has no mask token, so it cannot be used for masked-LM training")
        self.cfg, self.seed = cfg, seed
        self.span_length = resolve_span_length(cfg, tokenizer)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.mask_token_id = tokenizer.mask_token_id
        self.special_ids = torch.tensor(tokenizer.special_token_ids, dtype=torch.long)
        self.random_token_ids = residue_token_ids(tokenizer)

    def __call__(self, batch: TokenBatch) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_token_arrays(batch.sequences, self.pad_token_id)
        maskable = ~torch.isin(input_ids, self.special_ids) & attention_mask.bool()
        generator = torch.Generator().manual_seed(_batch_seed(self.seed, batch.index))
        input_ids, labels = mask_tokens(input_ids, maskable, self.mask_token_id, self.random_token_ids, self.cfg,
                                        span_length=self.span_length, generator=generator)
        out = {"input_ids": input_ids, "labels": labels}
        if not bool(attention_mask.all()):
            out["attention_mask"] = attention_mask
        return out
