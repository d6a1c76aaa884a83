"""Masked-LM models for pretraining, and the objective that scores only the predicted positions.

A fresh model is ``AutoModelForMaskedLM.from_config`` of the same backbone config the fine-tuning
recipe builds (``BertForMaskedLM`` for arch=bert, ``EsmForMaskedLM`` for arch=esm), with SDPA
attention; an existing one (Hub id or folder) continues pretraining. :class:`MaskedLMObjective`
runs the encoder on the whole batch but the MLM head only on the ~15% masked positions: for a
4101-token 6-mer vocabulary the head is otherwise a large share of the compute.

Example:
    >>> model = build_mlm_model(ModelConfig(arch="bert", hidden_size=64), tokenizer)
    >>> objective = MaskedLMObjective(model)
    >>> out = objective(input_ids=batch["input_ids"], labels=batch["labels"])
    >>> out["loss"].backward(); float(out["correct"] / out["count"])       # masked-token accuracy
"""

from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM, PreTrainedModel

from ..config import ModelConfig
from ..backbones import build_backbone_config, detect_backbone
from .corpus import TokenBatch

__all__ = ["build_mlm_model", "load_mlm_model", "MaskedLMObjective", "evaluate_masked_lm", "mlm_parts"]

logger = logging.getLogger(__name__)

def mlm_parts(config) -> Optional[tuple[str, str]]:
    """(encoder attribute, MLM head attribute) of the family's *ForMaskedLM class (gr_ft.backbones); None runs it whole."""
    return detect_backbone(config).mlm_parts
UNUSED_BY_MLM = ("contact_head",)
"""Submodules the MLM loss never reaches (ESM's contact head); frozen so DDP does not wait for their gradients."""


def load_mlm_model(name_or_path: str, revision: Optional[str] = None, trust_remote_code: bool = False) -> PreTrainedModel:
    """A masked LM (encoder + MLM head) from a Hub id or folder, with SDPA attention where supported.

    A folder holding only an encoder (e.g. a fine-tuning run's ``backbone/``) gets a fresh head.

    Example:
        >>> load_mlm_model("runs/pretrain_dna_kmer").config.model_type
        'bert'
    """
    try:
        config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
        kwargs = {"attn_implementation": "sdpa"} if mlm_parts(config) else {}
        return AutoModelForMaskedLM.from_pretrained(name_or_path, config=config, revision=revision,
                                                    trust_remote_code=trust_remote_code, **kwargs)
    except OSError as err:
        raise ValueError(
            f"could not load model {name_or_path!r}: {str(err).splitlines()[0][:300]}. If this is a Hub id and you "
            f"are offline, download it first (huggingface-cli download {name_or_path}) and pass the local folder."
        ) from err


def build_mlm_model(cfg: ModelConfig, tokenizer) -> PreTrainedModel:
    """``cfg.name_or_path`` loaded to continue pretraining, or a fresh ``cfg.arch`` masked LM sized by ``cfg``.

    Example:
        >>> build_mlm_model(ModelConfig(arch="esm", hidden_size=64), protein_tokenizer).__class__.__name__
        'EsmForMaskedLM'
    """
    if cfg.name_or_path:
        model = load_mlm_model(cfg.name_or_path, cfg.revision, cfg.trust_remote_code)
        if model.config.vocab_size < tokenizer.vocab_size:
            raise ValueError(
                f"tokenizer has {tokenizer.vocab_size} tokens but model {cfg.name_or_path!r} embeds only "
                f"{model.config.vocab_size}; use the model's own tokenizer (leave model.tokenizer empty)"
            )
    else:
        model = AutoModelForMaskedLM.from_config(build_backbone_config(cfg, tokenizer), attn_implementation="sdpa")
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in UNUSED_BY_MLM:
            module.requires_grad_(False)
    return model


class MaskedLMObjective(nn.Module):
    """Wrap a ``*ForMaskedLM`` model: encoder on the batch, MLM head and loss at labelled positions only.

    ``forward`` returns ``loss`` (mean cross-entropy over predicted tokens), ``correct`` and ``count``
    (for masked-token accuracy). Wrap this module, not the model, with DDP / ``accelerator.prepare``.
    """

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model
        self.parts = mlm_parts(model.config)

    def masked_logits(self, input_ids: torch.Tensor, labels: torch.Tensor,
                      attention_mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (M, V) and targets (M,) at the M labelled positions."""
        selected = labels != -100  # B, L
        if self.parts is None:  # unknown architecture: full forward, then select
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            return logits[selected], labels[selected]
        encoder, head = (getattr(self.model, name) for name in self.parts)
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # B, L, H
        return head(hidden[selected]), labels[selected]

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor,
                attention_mask: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        logits, targets = self.masked_logits(input_ids, labels, attention_mask)
        count = torch.tensor(targets.numel(), device=input_ids.device)
        loss = F.cross_entropy(logits.float(), targets, reduction="sum") / count.clamp(min=1)
        correct = (logits.argmax(-1) == targets).sum()
        return {"loss": loss, "correct": correct, "count": count}


@torch.no_grad()
def evaluate_masked_lm(objective: nn.Module, windows: list[np.ndarray], collator, batch_size: int,
                       accelerator) -> dict[str, float]:
    """Validation loss, perplexity and masked-token accuracy over fixed windows and fixed masks.

    Each process scores every ``num_processes``-th batch with the unwrapped module (a DDP forward
    would wait for processes that have no batch left); sums are reduced across processes.

    Example:
        >>> evaluate_masked_lm(objective, held_out, collator, 128, accelerator)["perplexity"]
    """
    module = accelerator.unwrap_model(objective)
    module.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=accelerator.device)  # loss sum, correct, count
    starts = range(accelerator.process_index * batch_size, len(windows), batch_size * accelerator.num_processes)
    for start in starts:  # the batch number seeds its masks, so any process count scores the same masks
        batch = collator(TokenBatch(start // batch_size, windows[start : start + batch_size]))
        with accelerator.autocast():
            out = module(**{k: v.to(accelerator.device) for k, v in batch.items()})
        totals += torch.stack([out["loss"].double() * out["count"], out["correct"].double(), out["count"].double()])
    totals = accelerator.reduce(totals, reduction="sum") if accelerator.num_processes > 1 else totals
    module.train()
    loss = float(totals[0] / totals[2].clamp(min=1))
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "accuracy": float(totals[1] / totals[2].clamp(min=1)),
            "masked_tokens": int(totals[2])}
