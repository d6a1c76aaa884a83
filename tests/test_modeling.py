"""Backbones, heads and adapters on tiny models built from configs."""

import pytest
import torch
from peft import PeftModel

from gr_ft.adapters import apply_adapter, default_target_modules, trainable_parameter_count
from gr_ft.config import LoraConfig, ModelConfig
from gr_ft.modeling import SequenceModel, backbone_fingerprint, build_backbone, load_backbone, mean_pool
from gr_ft.tokenization import SequenceTokenizer

TINY = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, dropout=0.0)


@pytest.fixture(scope="module")
def kmer3():
    return SequenceTokenizer.from_pretrained("kmer3")


@pytest.fixture(scope="module")
def protein():
    return SequenceTokenizer.from_pretrained("protein")


def batch_of(tokenizer, sequences, labels):
    enc = tokenizer.encode(sequences, max_length=64)
    width = max(len(ids) for ids in enc["input_ids"])
    ids = torch.full((len(sequences), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(enc["input_ids"]):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("arch", ["bert", "esm"])
def test_fresh_backbones_and_target_modules(arch, kmer3):
    backbone = build_backbone(ModelConfig(arch=arch, **TINY), kmer3)
    assert backbone.config.model_type == arch
    assert backbone.config._attn_implementation == "sdpa"
    assert default_target_modules(backbone) == ["query", "key", "value", "dense"]


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert mean_pool(hidden, torch.tensor([[1, 1, 0]])).item() == 2.0


@pytest.mark.parametrize("method", ["lora", "dora", "ia3"])
def test_head_and_adapter_train_backbone_stays_frozen(method, kmer3):
    """peft freezes a custom head unless it is in modules_to_save: prove the head moves."""
    torch.manual_seed(0)
    model = SequenceModel(build_backbone(ModelConfig(**TINY), kmer3), "binary", 2)
    frozen_before = {n: p.clone() for n, p in model.backbone.named_parameters()}
    model = apply_adapter(model, LoraConfig(method=method, r=4))
    head = dict(model.named_parameters())
    head_name = next(n for n in head if "head" in n and "modules_to_save" in n and n.endswith("weight"))
    head_before = head[head_name].detach().clone()
    assert trainable_parameter_count(model) < sum(p.numel() for p in model.parameters()) / 2
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = batch_of(kmer3, ["ACGTACGTAC", "TTTTGGGGCC"], torch.tensor([0, 1]))
    for _ in range(3):
        model(**batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    assert not torch.equal(head[head_name].detach(), head_before), "the head did not train"
    adapter_names = [n for n, p in model.named_parameters() if p.requires_grad and "head" not in n]
    assert adapter_names, "no adapter parameters are trainable"
    base = model.get_base_model().backbone
    for name, param in base.named_parameters():
        clean = name.replace(".base_layer", "")
        if clean in frozen_before:
            assert torch.equal(param, frozen_before[clean]), f"frozen weight {name} changed"


@pytest.mark.parametrize("problem_type,labels,shape", [
    ("multiclass", torch.tensor([0, 2]), (2, 3)),
    ("multilabel", torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), (2, 3)),
    ("regression", torch.tensor([0.5, -1.0]), (2, 1)),
])
def test_sequence_heads_give_losses(problem_type, labels, shape, kmer3):
    model = SequenceModel(build_backbone(ModelConfig(**TINY), kmer3), problem_type, shape[1])
    out = model(**batch_of(kmer3, ["ACGTACGTAC", "TTTTGGGGCC"], labels))
    assert out["logits"].shape == shape and torch.isfinite(out["loss"])


def test_token_head_ignores_special_positions(protein):
    model = SequenceModel(build_backbone(ModelConfig(arch="esm", **TINY), protein), "token_classification", 2)
    batch = batch_of(protein, ["MKSTY", "MKS"], None)
    labels = torch.full(batch["input_ids"].shape, -100)
    labels[:, 1] = 1
    out = model(**{**batch, "labels": labels})
    assert out["logits"].shape == (*batch["input_ids"].shape, 2)
    expected = torch.nn.functional.cross_entropy(out["logits"][:, 1], torch.tensor([1, 1]))
    assert torch.allclose(out["loss"], expected, atol=1e-6)


def test_fingerprint_tracks_weights(kmer3):
    backbone = build_backbone(ModelConfig(**TINY), kmer3)
    first = backbone_fingerprint(backbone)
    assert backbone_fingerprint(backbone) == first
    with torch.no_grad():
        next(backbone.parameters())[0, 0] += 1
    assert backbone_fingerprint(backbone) != first


def test_load_backbone_by_path_and_clear_errors(tmp_path, kmer3):
    build_backbone(ModelConfig(**TINY), kmer3).save_pretrained(tmp_path / "bb")
    assert load_backbone(str(tmp_path / "bb")).config.hidden_size == 32
    with pytest.raises(ValueError, match="does not exist"):
        load_backbone(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="offline|could not load"):
        load_backbone("nobody/no-such-model-gr-ft")


def test_attention_dropout_is_off_by_default_for_fast_sdpa(tmp_path, kmer3):
    """Attention-probability dropout pushes SDPA onto the math path (materialised attention)."""
    built = build_backbone(ModelConfig(arch="esm", **TINY), kmer3)
    assert built.config.attention_probs_dropout_prob == 0.0
    noisy = build_backbone(ModelConfig(arch="bert", attention_dropout=0.1, **TINY), kmer3)
    noisy.save_pretrained(tmp_path / "bb")
    assert load_backbone(str(tmp_path / "bb")).config.attention_probs_dropout_prob == 0.1
    assert load_backbone(str(tmp_path / "bb"), attention_dropout=0.0).config.attention_probs_dropout_prob == 0.0


def test_hidden_dropout_fresh_default_and_checkpoint_kept_unless_set(tmp_path, kmer3):
    assert build_backbone(ModelConfig(**{**TINY, "dropout": None}), kmer3).config.hidden_dropout_prob == 0.1
    build_backbone(ModelConfig(**TINY), kmer3).save_pretrained(tmp_path / "bb")  # TINY: dropout 0
    assert load_backbone(str(tmp_path / "bb")).config.hidden_dropout_prob == 0.0  # the checkpoint's own
    assert load_backbone(str(tmp_path / "bb"), hidden_dropout=0.1).config.hidden_dropout_prob == 0.1
    with pytest.raises(ValueError, match="model.dropout"):
        ModelConfig(dropout=1.0)
