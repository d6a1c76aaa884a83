"""Nucleotide Transformer v2: the ESM layout with a bias-free SwiGLU feed-forward, implemented natively.

NT v2 checkpoints declare ``model_type: esm`` but their feed-forward differs from ESM's: the first
projection maps hidden -> 2 x intermediate without bias, a SiLU-gated linear unit halves it
(``silu(x1) * x2`` over the two halves, as in NT's own code), and the output projection has no bias.
transformers' ``EsmModel`` cannot load those weights (4096x512 against 2048x512), and the published
``modeling_esm.py`` is code that would have to run with ``trust_remote_code``. This module builds the
same layer layout on top of transformers' ESM classes, so the weights load with no remote code.
With ``model.trust_remote_code=true`` and a checkpoint whose ``auto_map`` names its own code, the
generic remote-code path is used instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import EsmModel

from .esm import ESM_COMMON, _is_esm
from .spec import BackboneSpec


def _is_nt_v2(config: dict) -> bool:
    # the v2 family is the only ESM layout with this key; remote-code users opt in through trust_remote_code
    return _is_esm(config) and config.get("add_bias_fnn") is not None


class GatedIntermediate(nn.Module):
    """hidden -> 2 x intermediate (bias per ``add_bias_fnn``), then ``silu(x1) * x2``: B, L, intermediate."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.add_bias_fnn)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dense(hidden_states).chunk(2, dim=-1)
        return F.silu(x1) * x2


class GatedOutput(nn.Module):
    """intermediate -> hidden (bias per ``add_bias_fnn``), dropout, residual."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.add_bias_fnn)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense(hidden_states)) + input_tensor


class NucleotideTransformerV2Model(EsmModel):
    """``EsmModel`` with NT v2's gated, bias-free feed-forward in every layer."""

    def __init__(self, config, add_pooling_layer: bool = False):
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        for layer in self.encoder.layer:
            layer.intermediate = GatedIntermediate(config)
            layer.output = GatedOutput(config)
        self.post_init()


def _nt_v2_class(config):
    return NucleotideTransformerV2Model


NT_V2 = BackboneSpec(
    name="nucleotide_transformer_v2",
    description="Nucleotide Transformer v2 (ESM layout, rotary, bias-free SwiGLU; native gr-ft implementation)",
    matches=_is_nt_v2,
    hub_ids=("InstaDeepAI/nucleotide-transformer-v2-50m-multi-species",
             "InstaDeepAI/nucleotide-transformer-v2-100m-multi-species",
             "InstaDeepAI/nucleotide-transformer-v2-250m-multi-species",
             "InstaDeepAI/nucleotide-transformer-v2-500m-multi-species"),
    input_format="chunked_kmer",
    **{**ESM_COMMON, "model_class": _nt_v2_class, "mlm_parts": None},
)
