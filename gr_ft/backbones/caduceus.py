"""Caduceus: bidirectional, reverse-complement-equivariant Mamba over single nucleotides (own code).

Its code imports ``mamba_ssm``, whose kernels build only with CUDA (nvcc); on a CPU-only machine
the import fails, and gr-ft says so in one line before any model code runs. On a GPU machine:
``pip install 'gr-ft[caduceus]'`` (mamba-ssm, causal-conv1d) and pass model.trust_remote_code=true.
Its forward takes no attention mask and reads both strands, so padding is not exact: batch by
length (train.bucket_by_length, the default) keeps it small.
"""

from __future__ import annotations

from .spec import BackboneSpec


def _is_caduceus(config: dict) -> bool:
    return config.get("model_type") == "caduceus"


CADUCEUS = BackboneSpec(
    name="caduceus",
    description="Caduceus (bidirectional RC-equivariant Mamba; the checkpoint's own code, needs mamba-ssm + CUDA)",
    matches=_is_caduceus,
    hub_ids=("kuleshov-group/caduceus-ph_seqlen-131k_d_model-256_n_layer-16",
             "kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16"),
    needs_remote_code=True,
    requirements=("mamba_ssm",),
    extra="caduceus",
    requirement_note="mamba-ssm compiles CUDA kernels and does not build without nvcc; use a GPU machine",
    hidden_size_keys=("d_model",),
    takes_attention_mask=False,
    padding_note="bidirectional with no attention mask: padding reaches real positions; batch by length",
    lora_targets=("in_proj", "out_proj"),
    input_format="char",
    fallback_tokenizer="caduceus",
)
