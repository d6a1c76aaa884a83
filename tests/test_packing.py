"""Packed training (gr_ft/packing.py): a packed batch is the unpacked batch, computed without padding."""

import json

import pytest
import torch
from transformers import EsmConfig, EsmModel

from gr_ft.adapters import apply_adapter
from gr_ft.backbones import BACKBONES
from gr_ft.config import LoraConfig, ModelConfig
from gr_ft.data import _collator
from gr_ft.modeling import SequenceModel, build_backbone
from gr_ft.packing import (PACKED_ATTENTION, PackedCollator, PackedTokenBudgetBatchSampler, check_packing,
                           enable_packing, packable_families, pool_segments)
from gr_ft.tokenization import SequenceTokenizer

TINY = dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, dropout=0.0)
PROTEINS = ["MKTAYIAKQR", "GSHMLEDPVAGKWYCNNT", "MA", "PEPTIDESEQWENCEKLMNQRSTVWYACDEFGHIK", "MKKLLPTAAAGLLLLAAQPAMA"]
DNA = ["ACGTACGTAAGG", "TTGACAGGCTAGCTAGGATCCAA", "ACGTA", "GGGCCCATATATCGCGTTAACCGGTTAA"]


def tiny_model(arch: str, problem_type: str = "multiclass", pooling: str = "mean"):
    """A tiny task model from config (eval mode, no dropout) and the tokenizer and sequences it reads."""
    torch.manual_seed(0)
    if arch == "bert":
        tokenizer, sequences = SequenceTokenizer.from_pretrained("kmer3"), DNA
        backbone = build_backbone(ModelConfig(arch="bert", **TINY), tokenizer)
    else:
        tokenizer, sequences = SequenceTokenizer.from_pretrained("protein"), PROTEINS
        if arch == "esm":  # ESM-2 layout: rotary positions from 0
            backbone = build_backbone(ModelConfig(arch="esm", **TINY), tokenizer)
        else:  # ESM-1b / NT v1 layout: learned positions numbered from padding_idx + 1
            config = EsmConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=4, intermediate_size=64, pad_token_id=tokenizer.pad_token_id,
                               max_position_embeddings=64, position_embedding_type="absolute", token_dropout=False)
            backbone = EsmModel(config, add_pooling_layer=False)
    num_labels = 3
    model = SequenceModel(backbone, problem_type, num_labels, pooling=pooling, head_dropout=0.0).eval()
    return model, tokenizer, sequences


def features_for(tokenizer, sequences, problem_type):
    ids = tokenizer.encode(sequences, max_length=64)["input_ids"]
    if problem_type == "token_classification":
        return [{"input_ids": row, "labels": [-100] + [i % 3 for i in range(len(row) - 2)] + [-100]} for row in ids]
    return [{"input_ids": row, "labels": i % 3} for i, row in enumerate(ids)]


def packed_and_unpacked(model, tokenizer, features, problem_type):
    """Outputs of the same features padded (transformers' SDPA) and packed (one row, per-sequence attention)."""
    unpacked = model(**_collator(tokenizer, problem_type, pad_to_multiple_of=1)(features))
    enable_packing(model)
    start = model.spec.packing_position_start(model.config)
    packed = model(**PackedCollator(start, problem_type)(features))
    return unpacked, packed


@pytest.mark.parametrize("arch", ["esm", "esm_absolute", "bert"])
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_packed_batch_gives_the_unpacked_logits_and_loss(arch, pooling):
    model, tokenizer, sequences = tiny_model(arch, pooling=pooling)
    features = features_for(tokenizer, sequences, "multiclass")
    with torch.no_grad():
        unpacked, packed = packed_and_unpacked(model, tokenizer, features, "multiclass")
    assert packed["logits"].shape == (len(sequences), 3)
    torch.testing.assert_close(packed["logits"], unpacked["logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed["loss"], unpacked["loss"], atol=1e-6, rtol=1e-6)
    # and not merely equal to each other: the sequences' logits differ from one another
    assert (unpacked["logits"][0] - unpacked["logits"][1]).abs().max() > 1e-3


def test_packed_per_position_logits_match_unpacked():
    model, tokenizer, sequences = tiny_model("esm", problem_type="token_classification")
    features = features_for(tokenizer, sequences, "token_classification")
    with torch.no_grad():
        unpacked, packed = packed_and_unpacked(model, tokenizer, features, "token_classification")
    lengths = [len(f["input_ids"]) for f in features]
    rows = [unpacked["logits"][i, :n] for i, n in enumerate(lengths)]
    torch.testing.assert_close(packed["logits"][0], torch.cat(rows), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed["loss"], unpacked["loss"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("arch", ["esm", "bert"])
def test_attention_does_not_cross_sequence_boundaries(arch):
    """Changing one packed sequence leaves every other sequence's logits unchanged."""
    model, tokenizer, sequences = tiny_model(arch)
    enable_packing(model)
    collate = PackedCollator(model.spec.packing_position_start(model.config), "multiclass")
    changed = list(sequences)
    changed[1] = changed[1][::-1]  # same length, other tokens: the row's layout stays the same
    with torch.no_grad():
        before = model(**collate(features_for(tokenizer, sequences, "multiclass")))["logits"]
        after = model(**collate(features_for(tokenizer, changed, "multiclass")))["logits"]
    assert (before[1] - after[1]).abs().max() > 1e-4
    others = [i for i in range(len(sequences)) if i != 1]
    torch.testing.assert_close(after[others], before[others], atol=1e-6, rtol=0)


def test_packed_lora_training_step_gives_the_unpacked_gradients():
    """Through peft (LoRA), the packed loss backpropagates to the same adapter and head gradients."""
    model, tokenizer, sequences = tiny_model("esm")
    model = apply_adapter(model, LoraConfig(r=4, dropout=0.0))
    features = features_for(tokenizer, sequences, "multiclass")
    grads = []
    for packed in (False, True):
        model.zero_grad()
        if packed:
            enable_packing(model.base_model.model)
            batch = PackedCollator(0, "multiclass")(features)
        else:
            batch = _collator(tokenizer, "multiclass", pad_to_multiple_of=1)(features)
        model(**batch)["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert len(grads[0]) > 4 and any(g.abs().max() > 0 for g in grads[0].values())
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_collator_positions_restart_and_boundaries():
    batch = PackedCollator(2, "multiclass")([{"input_ids": [0, 5, 6, 2], "labels": 1}, {"input_ids": [0, 7, 2], "labels": 0}])
    assert batch["input_ids"].tolist() == [[0, 5, 6, 2, 0, 7, 2]]
    assert batch["position_ids"].tolist() == [[2, 3, 4, 5, 2, 3, 4]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 4, 7] and batch["max_length_q"] == 4
    assert batch["labels"].tolist() == [1, 0] and batch["attention_mask"].sum() == 7


def test_pool_segments_mean_and_cls():
    hidden = torch.arange(5.0).view(1, 5, 1)
    bounds = torch.tensor([0, 2, 5], dtype=torch.int32)
    assert pool_segments(hidden, bounds, "mean").flatten().tolist() == [0.5, 3.0]
    assert pool_segments(hidden, bounds, "cls").flatten().tolist() == [0.0, 2.0]


def test_families_that_cannot_pack_are_named():
    assert {"esm", "bert", "protbert", "nucleotide_transformer_v1", "nucleotide_transformer_v2"} <= set(packable_families())
    for name in ("hyenadna", "caduceus", "dnabert2", "t5_encoder", "generic"):
        with pytest.raises(ValueError, match=r"train.packing=true: the .* cannot pack.*families that can: .*esm"):
            check_packing(BACKBONES[name])


def test_a_packed_batch_needs_packed_attention():
    model, tokenizer, sequences = tiny_model("esm")
    batch = PackedCollator(0, "multiclass")(features_for(tokenizer, sequences, "multiclass"))
    with pytest.raises(ValueError, match="enable_packing"):
        model(**batch)
    enable_packing(model)
    assert model.config._attn_implementation == PACKED_ATTENTION


def test_token_budget_sampler_caps_real_tokens_and_is_seeded():
    lengths = [10, 500, 20, 480, 300, 700, 50, 1200]
    sampler = PackedTokenBudgetBatchSampler(lengths, max_tokens=1000, max_rows=3, seed=0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 3 and (sum(lengths[i] for i in b) <= 1000 or len(b) == 1) for b in batches)
    sampler.set_epoch(1)
    assert sorted(map(sorted, sampler)) == sorted(map(sorted, batches)) and len(sampler) == len(batches)


def test_recipe_trains_packed(tiny_overrides, tmp_path):
    from recipes import finetune_lora

    metrics = finetune_lora.main(tiny_overrides + ["train.packing=true", "train.epochs=1"])
    assert metrics["history"][0]["train_loss"] > 0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test"]["accuracy"] == metrics["test"]["accuracy"]
    config = json.loads((tmp_path / "run" / "backbone" / "config.json").read_text())
    assert PACKED_ATTENTION not in json.dumps(config)
