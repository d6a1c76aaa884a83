"""Shims that let model code written for transformers 4 run under transformers 5.

- config defaults transformers 4 set on every config (``pad_token_id``, ``is_decoder``) and 5 no longer does;
- models whose ``__init__`` builds tensors (DNABERT-2's ALiBi matrix) are built on CPU from their config and
  their weights loaded afterwards, instead of transformers 5's meta-device init, which leaves such tensors
  on the meta device ("Tensor on device meta is not on the expected device cpu!");
- weights are read from safetensors, or from ``pytorch_model.bin`` with ``torch.load(weights_only=True)``
  (never a full unpickle).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

__all__ = ["apply_config_defaults", "load_weights_into", "checkpoint_state_dict"]

logger = logging.getLogger(__name__)

IGNORABLE_MISSING = ("pooler.",)
"""Encoder weights a masked-LM checkpoint does not have and gr-ft never uses."""


def apply_config_defaults(config, defaults: dict) -> None:
    """Set each default the config lacks (an attribute that is absent, not one set to None)."""
    for key, value in defaults.items():
        try:
            getattr(config, key)
        except AttributeError:
            setattr(config, key, value)


def _state_dict_files(folder: Path) -> list[Path]:
    for index_name, fmt in (("model.safetensors.index.json", "st"), ("pytorch_model.bin.index.json", "bin")):
        index = folder / index_name
        if index.is_file():
            return sorted({folder / name for name in json.loads(index.read_text())["weight_map"].values()})
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    raise ValueError(f"{folder} has no weights (model.safetensors, pytorch_model.bin or a sharded index); "
                     f"is it a complete model folder?")


def checkpoint_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder; pickled files are read with ``weights_only=True``."""
    tensors: dict[str, torch.Tensor] = {}
    for path in _state_dict_files(Path(folder)):
        if path.suffix == ".safetensors":
            tensors.update(load_file(str(path)))
        else:
            tensors.update(torch.load(path, map_location="cpu", weights_only=True))
    return tensors


def load_weights_into(model: nn.Module, folder: Path) -> None:
    """Load a checkpoint saved from the model's *ForMaskedLM (``bert.``-prefixed keys) or from the encoder itself.

    Raises ValueError naming the missing tensors when the checkpoint does not fit the architecture.
    """
    tensors = checkpoint_state_dict(folder)
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    if prefix != "." and any(key.startswith(prefix) for key in tensors):
        tensors = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
    result = model.load_state_dict(tensors, strict=False)
    missing = [key for key in result.missing_keys if not key.startswith(IGNORABLE_MISSING)]
    if missing:
        raise ValueError(
            f"the weights in {folder} do not fit {type(model).__name__}: {len(missing)} tensors missing "
            f"(e.g. {missing[:3]}); is model.name_or_path the checkpoint its config.json describes?"
        )
    if result.unexpected_keys:
        logger.info("ignored %d checkpoint tensors the encoder does not use (e.g. %s)",
                    len(result.unexpected_keys), result.unexpected_keys[:3])
