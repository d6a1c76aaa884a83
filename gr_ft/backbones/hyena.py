"""HyenaDNA: implicit long convolutions over single nucleotides, from the checkpoint's own code.

Its config calls the width ``d_model`` and the length ``max_seq_len``; its forward takes no attention
mask. The model is causal, so right padding leaves every real position unchanged and mean pooling
over the mask is exact. Its ``tokenization_hyena.py`` is not in public copies; the vocabulary is fixed
by its code ([CLS] [SEP] [BOS] [MASK] [PAD] [RESERVED] [UNK] at 0-6, then A C G T N), supplied as the
built-in ``hyena`` tokenizer when a folder has no tokenizer files.
"""

from __future__ import annotations

from .spec import BackboneSpec, PositionLimit


def _is_hyena(config: dict) -> bool:
    return config.get("model_type") == "hyenadna"


def _hyena_limit(config) -> PositionLimit:
    return PositionLimit(int(config.max_seq_len), hard=True)


HYENA = BackboneSpec(
    name="hyenadna",
    description="HyenaDNA (implicit long convolutions, single nucleotides; the checkpoint's own code)",
    matches=_is_hyena,
    hub_ids=("LongSafari/hyenadna-tiny-1k-seqlen-hf", "LongSafari/hyenadna-small-32k-seqlen-hf",
             "LongSafari/hyenadna-medium-160k-seqlen-hf", "LongSafari/hyenadna-large-1m-seqlen-hf"),
    needs_remote_code=True,
    hidden_size_keys=("d_model",),
    takes_attention_mask=False,
    padding_note="causal model: right padding does not change real positions",
    lora_targets=("in_proj", "out_proj", "fc1", "fc2"),
    ia3_targets=(("in_proj", "out_proj", "fc2"), ("fc2",)),
    input_format="char",
    fallback_tokenizer="hyena",
    position_limit=_hyena_limit,
    dropout_keys=("embed_dropout", "hyena_dropout"),
    input_embeddings_attr="backbone.embeddings.word_embeddings",
)
