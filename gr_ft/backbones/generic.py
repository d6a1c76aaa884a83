"""Any other checkpoint: loaded through AutoModel (or its own code, when the user trusts it).

The LoRA targets are found by module name (gr_ft.adapters); where that or loading fails, the error
names the setting to change (adapter.target_modules, model.trust_remote_code).
"""

from __future__ import annotations

from .spec import BackboneSpec


def _anything(config: dict) -> bool:
    return True


GENERIC = BackboneSpec(
    name="generic",
    description="any other encoder: AutoModel, or the checkpoint's own code with model.trust_remote_code=true",
    matches=_anything,
    hidden_size_keys=("hidden_size", "d_model", "dim", "n_embd", "embed_dim"),
)
