"""ProtT5-style T5 encoders (``T5EncoderModel``): residues space-separated, U Z O B written as X.

ProtT5 (``Rostlab/prot_t5_xl_uniref50``) is an encoder-decoder; only its encoder is used, as the
authors recommend for embeddings. Relative position buckets: no position limit.
"""

from __future__ import annotations

from .spec import BackboneSpec


def _is_t5(config: dict) -> bool:
    return config.get("model_type") in ("t5", "mt5") or any(
        a.startswith("T5") for a in (config.get("architectures") or []))


def _t5_encoder_class(config):
    from transformers import T5EncoderModel

    return T5EncoderModel


T5_ENCODER = BackboneSpec(
    name="t5_encoder",
    description="T5 encoder (ProtT5-style protein LMs; residues space-separated, rare U Z O B mapped to X)",
    matches=_is_t5,
    hub_ids=("Rostlab/prot_t5_xl_uniref50", "Rostlab/prot_t5_xl_half_uniref50-enc", "Rostlab/prot_t5_xl_bfd"),
    model_class=_t5_encoder_class,
    hidden_size_keys=("d_model",),
    lora_targets=("q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"),
    ia3_targets=(("k", "v", "wo"), ("wo",)),
    input_format="spaced_uzob_to_x",
    dropout_keys=("dropout_rate", "dropout_rate"),
)
