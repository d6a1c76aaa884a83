"""Zero-shot variant scores from a backbone's masked-LM head: the masked-marginal log-likelihood ratio.

For an SNV in a REF window (see :mod:`gr_ft.interpret.variants`), every token that covers the variant
base is masked at once: one token for single-base and non-overlapping tokenizers, all k tokens for
overlapping k-mers (masking fewer would let the unmasked neighbours give the base away). At each
masked token j the MLM head gives a distribution over the vocabulary; the REF and ALT strings of j
are the bases j covers in the REF and ALT windows (for k-mers: the k-mer with the variant base
substituted). The score is the mean over the masked tokens of ``log p_j(ALT string) - log p_j(REF string)``
(natural log; the mean keeps k-mer and single-base scores on one scale), as ESM-1v, the Nucleotide
Transformer and GPN score variants. Negative: the model finds ALT less likely than REF in this context.
Only SNVs are scored (indels change the token count: ``not_snv``); a token whose ALT or REF string is
not one vocabulary token (BPE pieces often are not) is skipped (``token_not_in_vocab``).

The model: a backbone folder or Hub id with a trained MLM head (e.g. the output of ``gr-ft pretrain``),
or a fine-tuning run folder, whose *base* backbone is used (fine-tuning changes the encoder, and the
head was trained against the original one). A checkpoint without MLM head weights is refused, not
scored with a random head.

Example:
    >>> scorer = load_masked_lm("runs/pretrain_dna_kmer")
    >>> scorer.score([VariantWindows("ACGTACGTA", "ACGTTCGTA", 4, 4)])
    [(-1.93, -0.52, -2.45)]      # (score, mean log p(REF), mean log p(ALT)) per variant
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..genome import reverse_complement
from .variants import VariantWindows

__all__ = ["MaskedLMScorer", "load_masked_lm", "zero_shot_scorer"]

logger = logging.getLogger(__name__)


@dataclass
class _MaskedItem:
    ids: list[int]
    positions: list[int]  # masked token indices
    ref_ids: list[int]
    alt_ids: list[int]


class MaskedLMScorer:
    """A masked LM and its tokenizer, scoring SNV windows by masked-marginal log-likelihood ratio."""

    def __init__(self, model: torch.nn.Module, tokenizer, window_bp: Optional[int], source: str,
                 batch_size: int = 64):
        if tokenizer.mask_token_id is None:
            raise ValueError(f"{source}: the tokenizer has no mask token, so it cannot be used for zero-shot scores")
        self.model, self.tokenizer, self.window_bp, self.source = model.eval(), tokenizer, window_bp, source
        self.vocab = tokenizer.hf.get_vocab()
        self.batch_size = batch_size

    def _item(self, window: VariantWindows) -> tuple[Optional[_MaskedItem], str]:
        from .projection import token_windows

        encoded = self.tokenizer.encode([window.ref])
        ids, spans = encoded["input_ids"][0], encoded["token_spans"][0]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and len(ids) > limit:
            raise ValueError(f"--window-bp {len(window.ref)} makes {len(ids)} tokens but {self.source} has "
                             f"{limit} positions; pass a smaller --window-bp")
        base = window.ref_start
        covering = [(j, w) for j, w in enumerate(token_windows(spans, self.tokenizer, len(window.ref)))
                    if w is not None and w[0] <= base < w[1]]
        ref_ids, alt_ids = [], []
        for j, (start, end) in covering:
            ref_id, alt_id = self.vocab.get(window.ref[start:end]), self.vocab.get(window.alt[start:end])
            if ref_id is None or alt_id is None or ref_id != ids[j]:
                return None, f"token_not_in_vocab: {window.alt[start:end]!r} is not one token of {self.source}"
            ref_ids.append(ref_id)
            alt_ids.append(alt_id)
        if not covering:
            return None, "token_not_in_vocab: no token covers the variant base"
        masked = list(ids)
        for j, _ in covering:
            masked[j] = self.tokenizer.mask_token_id
        return _MaskedItem(masked, [j for j, _ in covering], ref_ids, alt_ids), ""

    def score(self, windows: Sequence[VariantWindows]) -> list[tuple[Optional[tuple[float, float, float]], str]]:
        """Per window: ((score, mean log p(REF), mean log p(ALT)), "") or (None, reason)."""
        from .ism import _padded

        items = [self._item(w) for w in windows]
        ready = [i for i, (item, _) in enumerate(items) if item is not None]
        results: list = [(None, reason) for _, reason in items]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        with torch.inference_mode():
            for begin in range(0, len(ready), self.batch_size):
                chunk = [items[i][0] for i in ready[begin : begin + self.batch_size]]
                input_ids, mask = _padded([item.ids for item in chunk], pad)
                log_probs = self.model(input_ids=input_ids, attention_mask=mask).logits.float().log_softmax(-1)
                for row, (index, item) in enumerate(zip(ready[begin : begin + self.batch_size], chunk)):
                    at = log_probs[row, item.positions]  # masked tokens, V
                    ref = at[torch.arange(len(item.positions)), item.ref_ids].mean().item()
                    alt = at[torch.arange(len(item.positions)), item.alt_ids].mean().item()
                    results[index] = ((alt - ref, ref, alt), "")
        return results


def zero_shot_scorer(scorer: MaskedLMScorer, both_strands: bool):
    """A :data:`gr_ft.interpret.variants.WindowScorer`: windows -> ([mean log p(REF)], [mean log p(ALT)]), so the
    row's delta is the score; ``both_strands`` averages it with the reverse-complement windows' score."""

    def reverse(w: VariantWindows) -> VariantWindows:
        last = len(w.ref) - 1
        return VariantWindows(reverse_complement(w.ref), reverse_complement(w.alt), last - w.ref_start,
                              last - w.alt_start)

    def score(windows: list[VariantWindows]):
        results = scorer.score(windows)
        if both_strands:
            backward = scorer.score([reverse(w) for w in windows])
            results = [(tuple(np.mean([f, b], axis=0).tolist()), "") if f and b else (None, fr or br)
                       for (f, fr), (b, br) in zip(results, backward)]
        return [(([v[1]], [v[2]]), "") if v else (None, reason) for v, reason in results]

    return score


def _check_head(info: dict, source: str) -> None:
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise ValueError(f"{source} has no trained masked-LM head (missing weights: {', '.join(missing[:4])}"
                         f"{' ...' if len(missing) > 4 else ''}); zero-shot scores need one: use the output folder "
                         f"of gr-ft pretrain or a masked-LM checkpoint")


def _load_mlm(source: str, revision: Optional[str], trust_remote_code: bool):
    from transformers import AutoConfig, AutoModelForMaskedLM

    try:
        config = AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
        model, info = AutoModelForMaskedLM.from_pretrained(source, config=config, revision=revision,
                                                           trust_remote_code=trust_remote_code,
                                                           output_loading_info=True)
    except (OSError, ValueError) as err:
        hint = " (pass --trust-remote-code if you trust its code)" if "trust_remote_code" in str(err) else ""
        raise ValueError(f"could not load a masked LM from {source!r}: {str(err).splitlines()[0][:300]}{hint}") from err
    _check_head(info, source)
    return model


def _pretrain_window_bp(folder: Path) -> Optional[int]:
    config = folder / "pretrain_config.yaml"
    if not config.is_file():
        return None
    import yaml

    return (yaml.safe_load(config.read_text()) or {}).get("corpus", {}).get("window_bp")


def load_masked_lm(run_or_model: str, trust_remote_code: bool = False) -> MaskedLMScorer:
    """A :class:`MaskedLMScorer` for a backbone folder / Hub id, or for a fine-tuning run's base backbone.

    Model code shipped with a checkpoint runs only with ``trust_remote_code=True`` (--trust-remote-code).
    """
    from ..backbones.record import BaseModelRecord
    from ..data import _max_chars
    from ..run_folder import resolve_run_dir
    from ..tokenization import SequenceTokenizer

    folder = Path(run_or_model)
    if (folder / "base_model.json").is_file():  # a fine-tuning run folder
        from ..config import FinetuneConfig, load_config

        base = BaseModelRecord.load(folder / "base_model.json")
        if base.built_from_config:
            raise ValueError(f"run {folder} was fine-tuned from a randomly initialised backbone: it has no pretrained "
                             f"masked-LM head for zero-shot scores; pass a pretrained backbone folder instead")
        if base.needs_remote_code and not trust_remote_code:
            raise ValueError(f"the backbone of run {folder} ({base.name_or_path}) runs model code shipped with the "
                             f"checkpoint; pass --trust-remote-code if you trust its source")
        tokenizer = SequenceTokenizer.from_pretrained(str(folder / "tokenizer"))
        cfg = load_config(FinetuneConfig, folder / "config.yaml")
        model = _load_mlm(base.name_or_path, base.revision, trust_remote_code)
        return MaskedLMScorer(model, tokenizer, _max_chars(tokenizer, cfg.data.max_length), base.name_or_path)
    folder = resolve_run_dir(run_or_model)
    model = _load_mlm(str(folder), None, trust_remote_code)
    tokenizer = SequenceTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    return MaskedLMScorer(model, tokenizer, _pretrain_window_bp(folder), str(run_or_model))
