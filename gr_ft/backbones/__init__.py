"""The backbone registry: one :class:`BackboneSpec` per family of DNA and protein language models.

Everything gr-ft knows about an architecture lives in its family module here: how a checkpoint is
recognised, loaded, adapted (LoRA/IA3 targets), fed (input format, fallback tokenizer), bounded
(position limit) and, for bert/esm, built fresh from a config. Families are tried in the order of
``BACKBONES`` (most specific first); ``generic`` takes anything else through AutoModel.

| family | checkpoints | code |
|---|---|---|
| dnabert2 | zhihan1996/DNABERT-2-117M | its own (`model.trust_remote_code=true`, `gr-ft[remote]`) |
| nucleotide_transformer_v2 | InstaDeepAI/nucleotide-transformer-v2-* | native (gr_ft/backbones/nucleotide_transformer.py) |
| nucleotide_transformer_v1 | InstaDeepAI/nucleotide-transformer-500m-* / 2.5b-* | transformers EsmModel |
| esm | facebook/esm2_*, esm1b, esm1v | transformers EsmModel |
| protbert | Rostlab/prot_bert | transformers BertModel |
| bert | zhihan1996/DNA_bert_3..6 | transformers BertModel |
| hyenadna | LongSafari/hyenadna-*-hf | its own |
| caduceus | kuleshov-group/caduceus-* | its own, needs mamba-ssm (CUDA) |
| t5_encoder | Rostlab/prot_t5_xl_uniref50 | transformers T5EncoderModel |
| generic | anything else | AutoModel |

Example:
    >>> spec = detect_backbone({"model_type": "hyenadna", "d_model": 256})
    >>> spec.name, spec.takes_attention_mask, spec.fallback_tokenizer
    ('hyenadna', False, 'hyena')
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModel, PretrainedConfig, PreTrainedModel

from .bert import BERT, PROTBERT
from .caduceus import CADUCEUS
from .dnabert2 import DNABERT2
from .esm import ESM, NT_V1
from .generic import GENERIC
from .hyena import HYENA
from .loading import load_backbone, read_checkpoint_config, resolve_checkpoint_folder
from .nucleotide_transformer import NT_V2
from .spec import BackboneSpec, PositionLimit
from .t5 import T5_ENCODER

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "PositionLimit",
    "detect_backbone",
    "spec_for_model",
    "build_backbone_config",
    "build_backbone",
    "load_backbone",
    "token_states",
    "read_checkpoint_config",
    "resolve_checkpoint_folder",
    "buildable_architectures",
    "save_backbone",
]

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (DNABERT2, NT_V2, NT_V1, ESM, PROTBERT, BERT, HYENA, CADUCEUS, T5_ENCODER, GENERIC)
}
"""Family name -> spec, in detection order (most specific first; ``generic`` matches anything)."""


def detect_backbone(config: dict | PretrainedConfig) -> BackboneSpec:
    """The family of a checkpoint from its raw config.json dict (or a loaded config).

    Example:
        >>> detect_backbone({"model_type": "esm", "vocab_size": 4107, "add_bias_fnn": False}).name
        'nucleotide_transformer_v2'
    """
    if isinstance(config, dict):
        raw = config
    else:  # a transformers config, or any object with attributes (a hand-built torch encoder's config)
        raw = config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))
    return next(spec for spec in BACKBONES.values() if spec.matches(raw))


def spec_for_model(backbone: PreTrainedModel) -> BackboneSpec:
    """The family of a loaded or built encoder."""
    return detect_backbone(backbone.config)


def buildable_architectures() -> list[str]:
    """Families gr-ft can build fresh from a config (values of ``model.arch``)."""
    return sorted(name for name, spec in BACKBONES.items() if spec.build_config is not None)


def build_backbone_config(cfg, tokenizer) -> PretrainedConfig:
    """A transformers config for a fresh backbone of ``cfg.arch`` (a ModelConfig) sized by ``cfg``.

    Example:
        >>> build_backbone_config(ModelConfig(arch="esm"), protein_tokenizer).model_type  # doctest: +SKIP
        'esm'
    """
    spec = BACKBONES.get(cfg.arch)
    if spec is None or spec.build_config is None:
        raise ValueError(f"unknown model.arch {cfg.arch!r}; choose one of {buildable_architectures()}")
    return spec.build_config(cfg, tokenizer)


def build_backbone(cfg, tokenizer) -> PreTrainedModel:
    """A randomly initialised encoder (no MLM head) of ``cfg.arch``, using PyTorch SDPA attention."""
    config = build_backbone_config(cfg, tokenizer)
    return AutoModel.from_config(config, add_pooling_layer=False, attn_implementation="sdpa")


def save_backbone(backbone: PreTrainedModel, folder: Path) -> Path:
    """``save_pretrained`` of an encoder (safetensors; remote-code models keep their code files beside it).

    Model code that shares tensors between modules (HyenaDNA's filter frequencies) makes transformers refuse
    to save; the state dict is then written as safetensors with cloned tensors next to the config and code.
    """
    folder = Path(folder)
    try:
        backbone.save_pretrained(str(folder))
    except RuntimeError as err:
        if "shared tensors" not in str(err):
            raise
        from ..utils import save_tensors

        backbone.save_pretrained(str(folder), state_dict={})  # config (+ code files), no weights
        for stale in folder.glob("*.safetensors*"):
            stale.unlink()
        save_tensors(backbone.state_dict(), folder / "model.safetensors")
    return folder


def token_states(spec: BackboneSpec, backbone: torch.nn.Module, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor | None, **packed) -> torch.Tensor:
    """Last-layer token states, B, L, H, whatever the family returns (ModelOutput, tuple or tensor).

    ``packed``: position ids and sequence boundaries of a packed row (gr_ft.packing), passed to the backbone as is.
    """
    kwargs = {"attention_mask": attention_mask} if spec.takes_attention_mask and attention_mask is not None else {}
    out = backbone(input_ids=input_ids, **kwargs, **packed)
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    return out.last_hidden_state
