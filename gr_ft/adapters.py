"""Parameter-efficient fine-tuning through peft: LoRA (default), DoRA, IA3, or full fine-tuning.

Target modules are chosen per architecture from the backbone's module names and can be
overridden with ``adapter.target_modules``. The task head is always in ``modules_to_save`` so it
trains and is saved with the adapter (peft freezes a custom head otherwise).

Example:
    >>> model = apply_adapter(SequenceModel(backbone, "binary", 2), AdapterConfig(r=8))
    >>> trainable_parameter_count(model) < total_parameter_count(model)
    True
"""

from __future__ import annotations

import logging
from typing import Callable

import peft
from torch import nn

from .backbones import spec_for_model
from .config import AdapterConfig

__all__ = ["apply_adapter", "default_target_modules", "trainable_parameter_count", "total_parameter_count", "ADAPTERS"]

logger = logging.getLogger(__name__)

# Fallback for backbones whose family (gr_ft.backbones) names no targets: linear layers found by name,
# most specific first.
TARGET_MODULE_PATTERNS: dict[str, list[str]] = {
    "bert/esm-style": ["query", "key", "value", "dense"],
    "fused qkv": ["Wqkv"],
    "llama/mistral-style": ["q_proj", "k_proj", "v_proj"],
    "t5-style": ["q", "k", "v", "o"],
    "gpt-style (fused)": ["c_attn"],
}
# unique name: peft matches modules_to_save by suffix, and ESM backbones carry a `contact_head`
HEAD_NAME = "task_head"


def _leaf_names(model: nn.Module) -> set[str]:
    return {name.split(".")[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)}


def default_target_modules(model: nn.Module) -> list[str]:
    """The Linear layers LoRA adapts in ``model`` (a backbone): its family's targets, else found by name.

    Example:
        >>> default_target_modules(bert_backbone)
        ['query', 'key', 'value', 'dense']
    """
    leaves = _leaf_names(model)
    spec = spec_for_model(model) if hasattr(model, "config") else None
    if spec is not None and spec.lora_targets:
        found = [name for name in spec.lora_targets if name in leaves]
        if found:
            return found
    for names in TARGET_MODULE_PATTERNS.values():
        if set(names) <= leaves:
            return names
    raise ValueError(
        f"could not choose LoRA target modules for this architecture; set adapter.target_modules to some of its "
        f"Linear layers: {sorted(leaves)[:30]}"
    )


def _lora(model: nn.Module, cfg: AdapterConfig, use_dora: bool = False) -> nn.Module:
    targets = cfg.target_modules or default_target_modules(model.backbone)
    config = peft.LoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
        modules_to_save=[HEAD_NAME], use_dora=use_dora,
    )
    return peft.get_peft_model(model, config)


def _dora(model: nn.Module, cfg: AdapterConfig) -> nn.Module:
    return _lora(model, cfg, use_dora=True)


def _ia3(model: nn.Module, cfg: AdapterConfig) -> nn.Module:
    if cfg.target_modules:
        targets, feedforward = cfg.target_modules, []
    else:
        targets, feedforward = (list(names) for names in model.spec.ia3_targets)
        if not targets:
            raise ValueError(
                f"IA3 has no default targets for the {model.spec.name} backbone; set adapter.target_modules (and they "
                f"are all treated as attention modules), or use adapter.method=lora"
            )
    config = peft.IA3Config(target_modules=targets, feedforward_modules=feedforward, modules_to_save=[HEAD_NAME])
    return peft.get_peft_model(model, config)


def _full(model: nn.Module, cfg: AdapterConfig) -> nn.Module:
    for param in model.parameters():
        param.requires_grad_(True)
    return model


ADAPTERS: dict[str, Callable[[nn.Module, AdapterConfig], nn.Module]] = {
    "lora": _lora,
    "dora": _dora,
    "ia3": _ia3,
    "full": _full,
}


def apply_adapter(model: nn.Module, cfg: AdapterConfig) -> nn.Module:
    """Wrap ``model`` (a :class:`~gr_ft.modeling.SequenceModel`) for ``cfg.method`` training."""
    if cfg.method not in ADAPTERS:
        raise ValueError(f"unknown adapter.method {cfg.method!r}; choose one of {sorted(ADAPTERS)}")
    adapted = ADAPTERS[cfg.method](model, cfg)
    logger.info(
        "%s: %d of %d parameters trainable", cfg.method, trainable_parameter_count(adapted),
        total_parameter_count(adapted),
    )
    return adapted


def trainable_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def total_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
