"""Backbones (any masked LM by Hub id or folder, or built from a config) and task heads.

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
import logging
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, BertConfig, EsmConfig, PretrainedConfig, PreTrainedModel

from .config import ModelConfig

__all__ = [
    "build_backbone_config",
    "build_backbone",
    "load_backbone",
    "SequenceModel",
    "backbone_fingerprint",
    "TASK_LOSSES",
]

logger = logging.getLogger(__name__)


FRESH_DROPOUT = 0.1
"""Hidden-state dropout of a backbone built from config when ``model.dropout`` is empty."""


def fresh_dropout(cfg: ModelConfig) -> float:
    """The hidden-state dropout a backbone built from ``cfg`` gets."""
    return FRESH_DROPOUT if cfg.dropout is None else cfg.dropout


def _bert_config(cfg: ModelConfig, tokenizer) -> PretrainedConfig:
    return BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        hidden_dropout_prob=fresh_dropout(cfg),
        attention_probs_dropout_prob=cfg.attention_dropout,
        pad_token_id=tokenizer.pad_token_id,
        type_vocab_size=1,
    )


def _esm_config(cfg: ModelConfig, tokenizer) -> PretrainedConfig:
    # ESM-2 / Nucleotide Transformer v2 layout: rotary positions, pre-LayerNorm blocks.
    return EsmConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        hidden_dropout_prob=fresh_dropout(cfg),
        attention_probs_dropout_prob=cfg.attention_dropout,
        pad_token_id=tokenizer.pad_token_id,
        mask_token_id=tokenizer.mask_token_id,
        position_embedding_type="rotary",
        token_dropout=False,
        emb_layer_norm_before=False,
    )


BACKBONE_CONFIGS: dict[str, Callable[[ModelConfig, object], PretrainedConfig]] = {
    "bert": _bert_config,
    "esm": _esm_config,
}


def build_backbone_config(cfg: ModelConfig, tokenizer) -> PretrainedConfig:
    """A transformers config for a fresh backbone of ``cfg.arch`` sized by ``cfg``.

    Example:
        >>> build_backbone_config(ModelConfig(arch="esm"), protein_tokenizer).model_type
        'esm'
    """
    if cfg.arch not in BACKBONE_CONFIGS:
        raise ValueError(f"unknown model.arch {cfg.arch!r}; choose one of {sorted(BACKBONE_CONFIGS)}")
    return BACKBONE_CONFIGS[cfg.arch](cfg, tokenizer)


def build_backbone(cfg: ModelConfig, tokenizer) -> PreTrainedModel:
    """A randomly initialised encoder (no MLM head) of ``cfg.arch``, using PyTorch SDPA attention."""
    config = build_backbone_config(cfg, tokenizer)
    return AutoModel.from_config(config, add_pooling_layer=False, attn_implementation="sdpa")


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).suffix != "" or name.count("/") != 1


def load_backbone(name_or_path: str, revision: Optional[str] = None, trust_remote_code: bool = False,
                  attention_dropout: Optional[float] = None, hidden_dropout: Optional[float] = None) -> PreTrainedModel:
    """Load the encoder of a masked LM from a local folder or a Hub id (same call for both).

    ``attention_dropout`` overrides the checkpoint's attention-probability dropout (see
    ``ModelConfig.attention_dropout``: non-zero values push SDPA onto its slow, memory-hungry path);
    ``hidden_dropout``, when given, its hidden-state dropout.

    Example:
        >>> load_backbone("facebook/esm2_t6_8M_UR50D")  # doctest: +SKIP
    """
    if not Path(name_or_path).exists() and _looks_local(name_or_path):
        raise ValueError(f"model path {name_or_path!r} does not exist (and is not a Hub id of the form user/name)")
    try:
        config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
        if attention_dropout is not None and hasattr(config, "attention_probs_dropout_prob"):
            config.attention_probs_dropout_prob = attention_dropout
        if hidden_dropout is not None and hasattr(config, "hidden_dropout_prob"):
            config.hidden_dropout_prob = hidden_dropout
        kwargs = {"add_pooling_layer": False} if config.model_type in ("bert", "esm", "roberta") else {}
        return AutoModel.from_pretrained(
            name_or_path, config=config, revision=revision, trust_remote_code=trust_remote_code, **kwargs
        )
    except OSError as err:
        raise ValueError(
            f"could not load model {name_or_path!r}: {str(err).splitlines()[0][:300]}. If this is a Hub id and you "
            f"are offline, download it first (huggingface-cli download {name_or_path}) and pass the local folder."
        ) from err
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise ValueError(
                f"model {name_or_path!r} needs its own code from the Hub; if you trust it, set "
                f"model.trust_remote_code=true"
            ) from err
        raise


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
        self.problem_type = problem_type
        self.pooling = pooling
        hidden = backbone.config.hidden_size
        self.task_head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(hidden, num_labels))
        self.register_buffer("class_weights", class_weights, persistent=False)

    @property
    def config(self) -> PretrainedConfig:
        return self.backbone.config

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last-layer token states, B, L, H."""
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled sequence embeddings, B, H (used by prototypical networks and retrieval)."""
        hidden = self.token_states(input_ids, attention_mask)
        return hidden[:, 0] if self.pooling == "cls" else mean_pool(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: Optional[torch.Tensor] = None,
                **_unused) -> dict[str, torch.Tensor]:
        if self.problem_type == "token_classification":
            logits = self.task_head(self.token_states(input_ids, attention_mask))  # B, L, C
        else:
            logits = self.task_head(self.embed(input_ids, attention_mask))  # B, C
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = TASK_LOSSES[self.problem_type](logits, labels, self.class_weights)
        return out


# ----------------------------------------------------------------- builders used by recipes


def default_tokenizer_name(model_cfg: ModelConfig, alphabet: str) -> str:
    """The tokenizer a run uses: the configured one, the checkpoint's own, or a built-in by alphabet."""
    if model_cfg.tokenizer:
        return model_cfg.tokenizer
    if model_cfg.name_or_path:
        return model_cfg.name_or_path
    return "protein" if alphabet == "protein" else "kmer6"


def build_task_model(model_cfg: ModelConfig, tokenizer, problem_type: str, num_labels: int,
                     class_weights: Optional[torch.Tensor] = None):
    """Backbone (loaded or built) plus head; returns ``(model, base_record_fields)``.

    ``base_record_fields`` describes the backbone (name, revision, weight fingerprint) so the
    run folder can refuse to pair the adapter with other weights later.

    Example:
        >>> model, base = build_task_model(ModelConfig(), tokenizer, "binary", 2)
    """
    if model_cfg.name_or_path:
        backbone = load_backbone(model_cfg.name_or_path, model_cfg.revision, model_cfg.trust_remote_code,
                                 attention_dropout=model_cfg.attention_dropout, hidden_dropout=model_cfg.dropout)
        if backbone.config.vocab_size < tokenizer.vocab_size:
            raise ValueError(
                f"tokenizer has {tokenizer.vocab_size} tokens but model {model_cfg.name_or_path!r} embeds only "
                f"{backbone.config.vocab_size}; use the model's own tokenizer (leave model.tokenizer empty)"
            )
    else:
        backbone = build_backbone(model_cfg, tokenizer)
    base = {
        "name_or_path": model_cfg.name_or_path,
        "revision": model_cfg.revision,
        "fingerprint": backbone_fingerprint(backbone),
        "built_from_config": not model_cfg.name_or_path,
        "trust_remote_code": model_cfg.trust_remote_code,
    }
    model = SequenceModel(backbone, problem_type, num_labels, model_cfg.pooling, model_cfg.head_dropout, class_weights)
    return model, base
