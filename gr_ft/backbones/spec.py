"""What gr-ft knows about one family of backbones, in one record.

A :class:`BackboneSpec` says how a checkpoint of the family is recognised (from its raw
``config.json``, before any model code runs), how it is loaded (which class, which shims for model
code written for transformers 4), how its outputs become token states, what LoRA/IA3 adapt, how
raw sequences are written for its tokenizer, and how long its inputs may be. The registry in
:mod:`gr_ft.backbones` is a plain dict of these, one entry per family module.

Example:
    >>> spec = detect_backbone({"model_type": "esm", "vocab_size": 33})
    >>> spec.name, spec.lora_targets[:3]
    ('esm', ('query', 'key', 'value'))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from torch import nn

__all__ = ["BackboneSpec", "PositionLimit", "config_value", "bert_layout"]


def config_value(config: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` present on a config object or a raw config dict."""
    for name in names:
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        if value is not None:
            return value
    return default


@dataclass(frozen=True)
class PositionLimit:
    """How many tokens (special tokens included) one input may hold."""

    tokens: Optional[int]
    """The limit, or None when the architecture has none (ALiBi, relative positions, convolutions)."""
    hard: bool = True
    """True: longer inputs fail or index past learned positions; False: they run, but beyond trained lengths."""


def _no_limit(config) -> PositionLimit:
    return PositionLimit(None, hard=False)


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone family. Adding a family is one of these in a module of :mod:`gr_ft.backbones`."""

    name: str
    """Registry key (also what `model.arch` names for families that can be built from config)."""
    description: str
    matches: Callable[[dict], bool]
    """Recognises the family from the checkpoint's raw config.json (a dict): model_type, auto_map, architectures,
    keys, vocabulary size. Families are tried in registry order, specific ones first."""
    hub_ids: tuple[str, ...] = ()
    """Published checkpoints of the family (for docs, cards and error messages)."""
    needs_remote_code: bool = False
    """The model exists only as code shipped with the checkpoint (auto_map); loading it needs
    model.trust_remote_code=true on the command that loads it."""
    requirements: tuple[str, ...] = ()
    """Python modules the model code imports (checked before it runs, so a missing one is a one-line error)."""
    extra: Optional[str] = None
    """The gr-ft extra that installs ``requirements`` (`pip install 'gr-ft[remote]'`)."""
    requirement_note: str = ""
    """What else to know about the requirements (e.g. mamba-ssm builds only with CUDA)."""
    model_class: Optional[Callable[[Any], type]] = None
    """Native class for the encoder, given the config (default: AutoModel, or the auto_map's AutoModel)."""
    encoder_attr: Optional[str] = None
    """When the checkpoint's auto_map has no AutoModel: load AutoModelForMaskedLM/CausalLM and take this attribute."""
    hidden_size_keys: tuple[str, ...] = ("hidden_size",)
    """Config attributes that may hold the width of the token states, first found wins."""
    takes_attention_mask: bool = True
    """False for models whose forward has no attention mask (HyenaDNA, Caduceus)."""
    padding_note: str = ""
    """Why right padding is or is not exact for a model that takes no attention mask."""
    config_defaults: dict = field(default_factory=dict)
    """Attributes transformers 4 defaulted and transformers 5 no longer does, set when the config lacks them."""
    init_on_cpu: bool = False
    """Build the model on CPU from its config and then load the weights, instead of transformers 5's meta-device
    init: for model code that builds tensors in ``__init__`` (DNABERT-2's ALiBi matrix)."""
    load_kwargs: dict = field(default_factory=dict)
    """Extra keyword arguments of the encoder class (e.g. ``add_pooling_layer=False``)."""
    lora_targets: tuple[str, ...] = ()
    """Leaf names of the Linear layers LoRA adapts (empty: found by name, see gr_ft.adapters)."""
    ia3_targets: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    """(target modules, feed-forward modules) for IA3; empty: IA3 is not offered for the family."""
    input_format: Optional[str] = None
    """How raw sequences are written for the family's tokenizer (see gr_ft.tokenization); None: inferred."""
    fallback_tokenizer: Optional[str] = None
    """Built-in tokenizer supplied when a checkpoint folder has no tokenizer files (its published vocabulary)."""
    position_limit: Callable[[Any], PositionLimit] = _no_limit
    """Maximum tokens per input, from the loaded config."""
    build_config: Optional[Callable] = None
    """``(ModelConfig, tokenizer) -> PretrainedConfig`` for a fresh backbone (only families gr-ft builds)."""
    mlm_parts: Optional[tuple[str, str]] = None
    """(encoder attribute, MLM head attribute) of the family's *ForMaskedLM class, for pretraining."""
    after_load: Optional[Callable[[nn.Module], None]] = None
    """Fix-up run on the loaded encoder (e.g. re-tying weights)."""
    input_embeddings_attr: Optional[str] = None
    """Dotted path of the token embedding inside the encoder, for code whose ``get_input_embeddings`` is missing."""
    dropout_keys: tuple[str, str] = ("hidden_dropout_prob", "attention_probs_dropout_prob")
    """Config attributes of (hidden-state dropout, attention-probability dropout)."""
    packing_position_start: Optional[Callable[[Any], int]] = None
    """For families that can train packed (``train.packing``, gr_ft.packing): the position id of a sequence's first
    token, from the loaded config (what the model numbers it unpacked). None: the family cannot pack."""

    def input_embeddings(self, backbone: nn.Module) -> nn.Embedding:
        """The encoder's token embedding layer (ids -> vectors)."""
        if self.input_embeddings_attr:
            return backbone.get_submodule(self.input_embeddings_attr)
        return backbone.get_input_embeddings()

    def hidden_size(self, config) -> int:
        """Width of the token states."""
        value = config_value(config, *self.hidden_size_keys)
        if value is None:
            raise ValueError(
                f"{self.name} backbone: none of the config attributes {list(self.hidden_size_keys)} gives the hidden "
                f"size; set hidden_size_keys in its BackboneSpec (gr_ft/backbones/)"
            )
        return int(value)


def bert_layout(model_class: Callable[[Any], type], position_limit: Callable[[Any], PositionLimit], *,
                mlm_parts: tuple[str, str], packing_position_start: Callable[[Any], int]) -> dict:
    """The spec fields every BERT-layout encoder shares (BERT, ProtBERT, ESM, Nucleotide Transformer): the pooler
    left out, LoRA on all linear layers of a block (attention + feed-forward, as QLoRA found best), IA3 on key,
    value and the feed-forward output."""
    return dict(model_class=model_class, load_kwargs={"add_pooling_layer": False},
                lora_targets=("query", "key", "value", "dense"),
                ia3_targets=(("key", "value", "output.dense"), ("output.dense",)),
                position_limit=position_limit, mlm_parts=mlm_parts, packing_position_start=packing_position_start)
