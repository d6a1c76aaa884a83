"""Task models: a backbone from the registry (gr_ft.backbones) plus one head for a gene-regulation task.

:class:`SequenceModel` puts one head on a backbone's token states: pooled (mean or CLS) for
sequence-level tasks (binary, multi-class, multi-label, regression) or per token for
per-position tasks. The head module is named ``task_head`` so peft keeps it trainable through
``modules_to_save=["task_head"]``.

Example:
    >>> backbone = build_backbone(ModelConfig(arch="bert", hidden_size=64), tokenizer)
    >>> model = SequenceModel(backbone, problem_type="binary", num_labels=2)
    >>> out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    >>> out["loss"].backward()
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from .backbones import (
    BackboneSpec,
    build_backbone,
    build_backbone_config,
    detect_backbone,
    load_backbone,
    read_checkpoint_config,
    resolve_checkpoint_folder,
    save_backbone,
    spec_for_model,
    token_states,
)
from .backbones.bert import FRESH_DROPOUT, fresh_dropout
from .backbones.loading import uses_remote_code
from .backbones.record import BaseModelRecord
from .config import ModelConfig
from .tokenization import SequenceTokenizer, check_vocab_matches, load_checkpoint_vocab
from .utils import looks_local

__all__ = [
    "build_backbone_config",
    "build_backbone",
    "load_backbone",
    "SequenceModel",
    "backbone_fingerprint",
    "build_task_model",
    "load_task_tokenizer",
    "check_input_length",
    "keep_fresh_backbone",
    "BaseModelRecord",
    "TASK_LOSSES",
    "FRESH_DROPOUT",
    "fresh_dropout",
]

logger = logging.getLogger(__name__)


def _looks_local(name: str) -> bool:  # kept for callers of the old private name
    return looks_local(name)


def backbone_fingerprint(backbone: nn.Module) -> str:
    """SHA-256 over the backbone's parameter names and bytes: ties an adapter to the exact base weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------- heads and losses


def _classification_loss(logits, labels, weights):
    return F.cross_entropy(logits.float(), labels, weight=weights)


def _multilabel_loss(logits, labels, weights):
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def _regression_loss(logits, labels, weights):
    return F.mse_loss(logits.float().squeeze(-1), labels.float())


def _token_loss(logits, labels, weights):
    # B, L, C logits against B, L labels; -100 marks special tokens and padding.
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), weight=weights, ignore_index=-100)


TASK_LOSSES = {
    "binary": _classification_loss,
    "multiclass": _classification_loss,
    "multilabel": _multilabel_loss,
    "regression": _regression_loss,
    "token_classification": _token_loss,
}


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token states over real (unpadded) tokens. hidden: B, L, H; mask: B, L."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class SequenceModel(nn.Module):
    """A backbone plus one head for a gene-regulation task."""

    # transformers/peft read this to find the encoder inside a task model (as in BertForSequenceClassification)
    base_model_prefix = "backbone"

    def __init__(self, backbone: PreTrainedModel, problem_type: str, num_labels: int, pooling: str = "mean",
                 head_dropout: float = 0.1, class_weights: Optional[torch.Tensor] = None):
        super().__init__()
        if problem_type not in TASK_LOSSES:
            raise ValueError(f"unknown problem type {problem_type!r}; choose one of {sorted(TASK_LOSSES)}")
        self.backbone = backbone
        self.spec: BackboneSpec = spec_for_model(backbone)
        self.problem_type = problem_type
        self.pooling = pooling
        hidden = self.spec.hidden_size(backbone.config)
        self.task_head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(hidden, num_labels))
        self.register_buffer("class_weights", class_weights, persistent=False)

    @property
    def config(self) -> PretrainedConfig:
        return self.backbone.config

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last-layer token states, B, L, H (the family decides whether the mask is passed and how outputs unpack)."""
        return token_states(self.spec, self.backbone, input_ids, attention_mask)

    def input_embeddings(self) -> nn.Module:
        """The backbone's token embedding layer (for attributions on the input embeddings)."""
        return self.spec.input_embeddings(self.backbone)

    def packed_logits(self, input_ids: torch.Tensor, cu_seq_lens_q: torch.Tensor, packed: dict) -> torch.Tensor:
        """Logits of a packed row: 1, T, C per token, or B, C pooled per sequence (gr_ft.packing)."""
        from .packing import PACKED_KEYS, packed_token_states, pool_segments

        kwargs = {key: packed[key] for key in PACKED_KEYS if key in packed}
        hidden = packed_token_states(self.spec, self.backbone, input_ids, {**kwargs, "cu_seq_lens_q": cu_seq_lens_q})
        if self.problem_type == "token_classification":
            return self.task_head(hidden)
        return self.task_head(pool_segments(hidden, cu_seq_lens_q, self.pooling))

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled sequence embeddings, B, H (used by prototypical networks and retrieval)."""
        hidden = self.token_states(input_ids, attention_mask)
        return hidden[:, 0] if self.pooling == "cls" else mean_pool(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: Optional[torch.Tensor] = None,
                cu_seq_lens_q: Optional[torch.Tensor] = None, **packed) -> dict[str, torch.Tensor]:
        if cu_seq_lens_q is not None:  # a packed row (gr_ft.packing): one logit row per original sequence
            logits = self.packed_logits(input_ids, cu_seq_lens_q, packed)
        elif self.problem_type == "token_classification":
            logits = self.task_head(self.token_states(input_ids, attention_mask))  # B, L, C
        else:
            logits = self.task_head(self.embed(input_ids, attention_mask))  # B, C
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = TASK_LOSSES[self.problem_type](logits, labels, self.class_weights)
        return out


# ----------------------------------------------------------------- builders used by recipes


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "spiece.model", "tokenizer_config.json")


def default_tokenizer_name(model_cfg: ModelConfig, alphabet: str) -> str:
    """The tokenizer a run uses: the configured one, the checkpoint's own, or a built-in by alphabet."""
    if model_cfg.tokenizer:
        return model_cfg.tokenizer
    if model_cfg.name_or_path:
        return model_cfg.name_or_path
    return "protein" if alphabet == "protein" else "kmer6"


def _tokenizer_needs_code(folder: Path) -> bool:
    config = folder / "tokenizer_config.json"
    return config.is_file() and "auto_map" in json.loads(config.read_text())


def _checkpoint_tokenizer_source(folder: Path, spec: BackboneSpec, trust_remote_code: bool) -> str:
    """The checkpoint's own tokenizer files, or its family's published vocabulary when they are missing or are code."""
    has_files = any((folder / name).is_file() for name in TOKENIZER_FILES)
    if has_files and not (_tokenizer_needs_code(folder) and spec.fallback_tokenizer and not trust_remote_code):
        return str(folder)
    if spec.fallback_tokenizer:
        logger.info("%s has no usable tokenizer files; using the %s family's published vocabulary (built-in %r)",
                    folder, spec.name, spec.fallback_tokenizer)
        return spec.fallback_tokenizer
    raise ValueError(f"model folder {folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); set "
                     f"model.tokenizer to a built-in name, a folder or a Hub id")


def load_task_tokenizer(model_cfg: ModelConfig, alphabet: str) -> SequenceTokenizer:
    """The tokenizer of a run, checked against the checkpoint's own vocabulary when a checkpoint is used.

    The checkpoint's family decides how raw sequences are written for it (k-mers, spaced residues, ...).

    Example:
        >>> load_task_tokenizer(ModelConfig(), "dna").kind
        'kmer'
    """
    trust = model_cfg.trust_remote_code
    if not model_cfg.name_or_path:
        return SequenceTokenizer.from_pretrained(default_tokenizer_name(model_cfg, alphabet))
    folder = resolve_checkpoint_folder(model_cfg.name_or_path, model_cfg.revision)
    raw = read_checkpoint_config(folder)
    spec = detect_backbone(raw)
    uses_remote_code(spec, raw, trust)  # a model that is only code needs the opt-in: say so before its tokenizer
    if not model_cfg.tokenizer:
        source = _checkpoint_tokenizer_source(folder, spec, trust)
        return SequenceTokenizer.from_pretrained(source, trust_remote_code=trust, input_format=spec.input_format)
    tokenizer = SequenceTokenizer.from_pretrained(model_cfg.tokenizer, revision=model_cfg.revision,
                                                  trust_remote_code=trust)
    checkpoint_vocab = load_checkpoint_vocab(folder)
    if checkpoint_vocab is not None:
        check_vocab_matches(tokenizer, checkpoint_vocab, model_cfg.name_or_path)
    return tokenizer


def largest_used_token_id(tokenizer: SequenceTokenizer) -> int:
    """The largest id encoding can produce: every non-special token, the template's specials, padding and mask.

    Special tokens a vocabulary lists but never emits (NT v1's ``<eos>``/``<bos>`` past its 4,105 embeddings) do
    not count.
    """
    hf = tokenizer.hf
    special = set(hf.all_special_ids)
    used = [i for token, i in hf.get_vocab().items()
            if i not in special and not (token[:1] + token[-1:] in ("<>", "[]") and len(token) > 2)]
    used += hf("")["input_ids"] + [i for i in (hf.pad_token_id, hf.mask_token_id, hf.unk_token_id) if i is not None]
    return max(used)


def check_input_length(model: "SequenceModel", max_length: int, where: str = "data.max_length") -> None:
    """Refuse inputs longer than the backbone's positions (before anything is written); warn past a soft limit."""
    limit = model.spec.position_limit(model.backbone.config)
    if limit.tokens is None or max_length <= limit.tokens:
        return
    if limit.hard:
        raise ValueError(
            f"{where}={max_length} tokens exceeds the {limit.tokens} positions of this {model.spec.name} backbone; "
            f"set {where}<={limit.tokens} (training crops longer sequences, see data.crop; predict and evaluate "
            f"score them in sliding windows)"
        )
    logger.warning("%s=%d is beyond the %d tokens this %s backbone was trained on; it runs, but quality past the "
                   "trained length is untested", where, max_length, limit.tokens, model.spec.name)


def build_task_model(model_cfg: ModelConfig, tokenizer: SequenceTokenizer, problem_type: str, num_labels: int,
                     class_weights: Optional[torch.Tensor] = None) -> tuple["SequenceModel", BaseModelRecord]:
    """Backbone (loaded through the registry, or built) plus head; returns ``(model, base_record)``.

    ``base_record`` describes the backbone (name, revision, family, weight fingerprint) so the run folder
    can refuse to pair the adapter with other weights later.

    Example:
        >>> model, base = build_task_model(ModelConfig(), tokenizer, "binary", 2)
        >>> base.family, base.built_from_config
        ('bert', True)
    """
    if model_cfg.name_or_path:
        backbone = load_backbone(model_cfg.name_or_path, model_cfg.revision, model_cfg.trust_remote_code,
                                 attention_dropout=model_cfg.attention_dropout, hidden_dropout=model_cfg.dropout)
        embedded = spec_for_model(backbone).input_embeddings(backbone).num_embeddings
        largest = largest_used_token_id(tokenizer)
        if largest >= embedded:
            raise ValueError(
                f"the tokenizer produces ids up to {largest} but model {model_cfg.name_or_path!r} embeds only "
                f"{embedded}; use the model's own tokenizer (leave model.tokenizer empty)"
            )
    else:
        backbone = build_backbone(model_cfg, tokenizer)
    model = SequenceModel(backbone, problem_type, num_labels, model_cfg.pooling, model_cfg.head_dropout, class_weights)
    base = BaseModelRecord(
        name_or_path=model_cfg.name_or_path,
        revision=model_cfg.revision,
        fingerprint=backbone_fingerprint(backbone),
        built_from_config=not model_cfg.name_or_path,
        needs_remote_code=bool(model_cfg.trust_remote_code and getattr(backbone.config, "auto_map", None)),
        family=model.spec.name,
    )
    return model, base


def keep_fresh_backbone(model: "SequenceModel", base: BaseModelRecord, folder: Path) -> None:
    """Save a backbone built from config (its random initial weights are part of the result) before adapters go in.

    Call on the main process only; does nothing for a loaded checkpoint.
    """
    if base.built_from_config:
        save_backbone(model.backbone, folder)
