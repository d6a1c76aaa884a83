"""ESM encoders: ESM-2 and ESM-1b/1v (proteins) and Nucleotide Transformer v1 (DNA, learned positions).

transformers' own ``EsmModel``. Rotary checkpoints (ESM-2) run past their trained length, so their
limit is soft; learned absolute positions (ESM-1b, NT v1) are a hard limit of
``max_position_embeddings - padding_idx - 1`` tokens (ESM numbers positions from ``padding_idx + 1``).
"""

from __future__ import annotations

from transformers import EsmConfig, PretrainedConfig

from .bert import fresh_encoder_sizes
from .spec import BackboneSpec, PositionLimit, bert_layout

NT_MIN_VOCAB = 1000  # NT vocabularies hold 4,096 6-mers plus bases and specials; protein ESMs hold 33 tokens


def _is_esm(config: dict) -> bool:
    return config.get("model_type") == "esm"


def _is_nt_v1(config: dict) -> bool:
    return _is_esm(config) and int(config.get("vocab_size") or 0) > NT_MIN_VOCAB


def esm_position_limit(config) -> PositionLimit:
    offset = int(getattr(config, "pad_token_id", None) or 0) + 1
    tokens = int(config.max_position_embeddings) - offset
    return PositionLimit(tokens, hard=getattr(config, "position_embedding_type", "absolute") != "rotary")


def esm_packing_position_start(config) -> int:
    """Rotary ESM-2 numbers positions from 0; learned positions (ESM-1b, NT v1) from ``padding_idx + 1``."""
    if getattr(config, "position_embedding_type", "absolute") == "rotary":
        return 0
    return int(getattr(config, "pad_token_id", None) or 0) + 1


def build_esm_config(cfg, tokenizer) -> PretrainedConfig:
    """An ESM-2 layout config (rotary positions, pre-LayerNorm blocks) sized by ``cfg`` for ``tokenizer``."""
    return EsmConfig(
        **fresh_encoder_sizes(cfg, tokenizer),
        mask_token_id=tokenizer.mask_token_id,
        position_embedding_type="rotary",
        token_dropout=False,
        emb_layer_norm_before=False,
    )


def _esm_class(config):
    from transformers import EsmModel

    return EsmModel


ESM_COMMON = bert_layout(_esm_class, esm_position_limit, mlm_parts=("esm", "lm_head"),
                         packing_position_start=esm_packing_position_start)

NT_V1 = BackboneSpec(
    name="nucleotide_transformer_v1",
    description="Nucleotide Transformer v1 (ESM layout, learned positions, non-overlapping 6-mers)",
    matches=_is_nt_v1,
    hub_ids=("InstaDeepAI/nucleotide-transformer-500m-human-ref", "InstaDeepAI/nucleotide-transformer-500m-1000g",
             "InstaDeepAI/nucleotide-transformer-2.5b-multi-species"),
    input_format="chunked_kmer",
    **ESM_COMMON,
)

ESM = BackboneSpec(
    name="esm",
    description="ESM-2 / ESM-1b / ESM-1v protein encoders, or an ESM-2 layout built from config",
    matches=_is_esm,
    hub_ids=("facebook/esm2_t6_8M_UR50D", "facebook/esm2_t33_650M_UR50D", "facebook/esm1b_t33_650M_UR50S"),
    build_config=build_esm_config,
    **ESM_COMMON,
)
