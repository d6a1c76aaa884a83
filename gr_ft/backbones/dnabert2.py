"""DNABERT-2: MosaicBERT with ALiBi over a DNA BPE, loaded from the code shipped with the checkpoint.

Its ``bert_layers.py`` was written for transformers 4: it reads ``config.pad_token_id`` (no longer
defaulted by transformers 5), builds its ALiBi matrix in ``__init__`` (a meta tensor under
transformers 5's meta-device init), returns a tuple instead of a ModelOutput, and imports einops.
The spec supplies the defaults, builds the model on CPU before loading the weights, and the generic
output handling takes the tuple's first element. ALiBi has no position limit.
"""

from __future__ import annotations

from .spec import BackboneSpec


def _is_dnabert2(config: dict) -> bool:
    auto_map = config.get("auto_map") or {}
    return any(str(target).startswith("bert_layers.") for target in auto_map.values()) or "alibi_starting_size" in config


DNABERT2 = BackboneSpec(
    name="dnabert2",
    description="DNABERT-2 (MosaicBERT + ALiBi, DNA BPE; the checkpoint's own code)",
    matches=_is_dnabert2,
    hub_ids=("zhihan1996/DNABERT-2-117M", "zhihan1996/DNABERT-S"),
    needs_remote_code=True,
    requirements=("einops",),
    extra="remote",
    config_defaults={"pad_token_id": 0, "is_decoder": False},
    init_on_cpu=True,
    load_kwargs={"add_pooling_layer": False},
    lora_targets=("Wqkv", "dense", "gated_layers", "wo"),
    input_format="raw",
    mlm_parts=("bert", "cls"),
)
