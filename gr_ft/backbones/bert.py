"""BERT encoders: DNABERT 3-6 (overlapping k-mers), ProtBERT (one residue per word) and fresh BERTs built from config.

transformers' own ``BertModel``; learned absolute positions, so an input may hold at most
``max_position_embeddings`` tokens. ProtBERT's published config has no ``model_type``: it is
recognised by its ``BertForMaskedLM`` architecture and its 30-token residue vocabulary.
"""

from __future__ import annotations

from transformers import BertConfig, PretrainedConfig

from .spec import BackboneSpec, PositionLimit, bert_layout

FRESH_DROPOUT = 0.1
"""Hidden-state dropout of a backbone built from config when ``model.dropout`` is empty."""

PROTBERT_VOCAB_SIZE = 30  # [PAD] [UNK] [CLS] [SEP] [MASK] + 25 residue letters (Rostlab/prot_bert)


def fresh_dropout(cfg) -> float:
    """The hidden-state dropout a backbone built from ``cfg`` (a ModelConfig) gets."""
    return FRESH_DROPOUT if cfg.dropout is None else cfg.dropout


def fresh_encoder_sizes(cfg, tokenizer) -> dict:
    """The config arguments BERT-layout encoders (BERT, ESM) built from ``cfg`` (a ModelConfig) share."""
    return dict(
        vocab_size=tokenizer.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        hidden_dropout_prob=fresh_dropout(cfg),
        attention_probs_dropout_prob=cfg.attention_dropout,
        pad_token_id=tokenizer.pad_token_id,
    )


def _is_bert(config: dict) -> bool:
    if config.get("model_type") == "bert":
        return True
    architectures = config.get("architectures") or []
    return config.get("model_type") is None and any(a.startswith("Bert") for a in architectures)


def _is_protbert(config: dict) -> bool:
    return _is_bert(config) and config.get("vocab_size") == PROTBERT_VOCAB_SIZE


def _learned_positions(config) -> PositionLimit:
    return PositionLimit(int(config.max_position_embeddings), hard=True)


def build_bert_config(cfg, tokenizer) -> PretrainedConfig:
    """A DNABERT-style BERT config sized by ``cfg`` (a ModelConfig) for ``tokenizer``."""
    return BertConfig(**fresh_encoder_sizes(cfg, tokenizer), type_vocab_size=1)


def _bert_class(config):
    from transformers import BertModel

    return BertModel


_COMMON = bert_layout(_bert_class, _learned_positions, mlm_parts=("bert", "cls"),
                      packing_position_start=lambda config: 0)  # BertModel numbers positions from 0

PROTBERT = BackboneSpec(
    name="protbert",
    description="ProtBERT-style protein BERT (one residue per word, space-separated; U Z O B -> X as its model card does)",
    matches=_is_protbert,
    hub_ids=("Rostlab/prot_bert", "Rostlab/prot_bert_bfd"),
    input_format="spaced_uzob_to_x",
    **_COMMON,
)

BERT = BackboneSpec(
    name="bert",
    description="BERT encoder: DNABERT 3-6 (overlapping k-mers) or a DNABERT-style BERT built from config",
    matches=_is_bert,
    hub_ids=("zhihan1996/DNA_bert_3", "zhihan1996/DNA_bert_4", "zhihan1996/DNA_bert_5", "zhihan1996/DNA_bert_6"),
    build_config=build_bert_config,
    **_COMMON,
)
