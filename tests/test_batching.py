"""Training batches: token budgets (train.batch_tokens) and gradient checkpointing (train.gradient_checkpointing)."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from gr_ft.data import PAD_MULTIPLE, TokenBudgetBatchSampler
from gr_ft.recipes import finetune_lora


def padded_tokens(batch: list[int], lengths: list[int]) -> int:
    return len(batch) * (-(-max(lengths[i] for i in batch) // PAD_MULTIPLE) * PAD_MULTIPLE)


def test_token_budget_batches_cover_every_row_once_within_the_budget():
    lengths = np.random.default_rng(0).integers(5, 1000, size=700).tolist() + [5000]  # one row over the budget
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=4096, max_rows=32, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 32 for b in batches)
    over = [b for b in batches if padded_tokens(b, lengths) > 4096]
    assert over == [[len(lengths) - 1]]  # only the row longer than the budget, alone
    # short rows fill batches up to the row cap, long rows get few: far fewer batches than fixed-size ones at
    # the same token budget (4096 tokens / 1000-token rows = 4 rows per fixed batch)
    assert len(batches) < len(lengths) / 4 * 0.75
    assert max(len(b) for b in batches) == 32 and min(len(b) for b in batches) <= 5


def test_token_budget_batches_keep_their_rows_and_change_order_by_epoch():
    lengths = np.random.default_rng(1).integers(5, 400, size=300).tolist()
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=2048, max_rows=16, seed=0)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert len(first) == len(second) == len(sampler)
    assert first != second and sorted(map(sorted, first)) == sorted(map(sorted, second))
    again = TokenBudgetBatchSampler(lengths, max_tokens=2048, max_rows=16, seed=0)
    again.set_epoch(1)
    assert list(again) == second  # a resumed run replays the same epoch


def run(tiny_overrides, tmp_path: Path, name: str, *extra: str) -> dict:
    overrides = [o for o in tiny_overrides if not o.startswith("output_dir=")]
    return finetune_lora.main([*overrides, f"output_dir={tmp_path / name}", "model.dropout=0", "model.head_dropout=0",
                               *extra])


def test_finetune_with_a_token_budget_trains_and_records_it(tiny_overrides, tmp_path):
    metrics = run(tiny_overrides, tmp_path, "budget", "train.batch_tokens=768", "train.epochs=1")
    saved = yaml.safe_load((tmp_path / "budget" / "config.yaml").read_text())
    assert saved["train"]["batch_tokens"] == 768
    assert json.loads((tmp_path / "budget" / "metrics.json").read_text())["test"] == metrics["test"]
    assert len(metrics["history"]) == 1 and np.isfinite(metrics["history"][-1]["train_loss"])


def test_gradient_checkpointing_gives_the_same_training(tiny_overrides, tmp_path):
    plain = run(tiny_overrides, tmp_path, "plain", "adapter.method=full", "train.epochs=1")
    checkpointed = run(tiny_overrides, tmp_path, "checkpointed", "adapter.method=full", "train.epochs=1",
                       "train.gradient_checkpointing=true")
    for a, b in zip(plain["history"], checkpointed["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5, abs=1e-6)
    assert checkpointed["test"]["auroc"] == pytest.approx(plain["test"]["auroc"], abs=1e-6)


def test_gradient_checkpointing_is_switched_on_in_the_backbone():
    from gr_ft.config import ModelConfig
    from gr_ft.modeling import build_task_model, load_task_tokenizer
    from gr_ft.training import enable_gradient_checkpointing

    cfg = ModelConfig(tokenizer="kmer3", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    model, _ = build_task_model(cfg, load_task_tokenizer(cfg, "dna"), "binary", 2)
    assert not model.backbone.is_gradient_checkpointing
    enable_gradient_checkpointing(model)
    assert model.backbone.is_gradient_checkpointing


def test_cpu_batches_are_padded_to_the_longest_row_and_score_as_padded_ones():
    import torch

    from gr_ft.config import ModelConfig
    from gr_ft.data import EncodedSplit, make_dataloader, pad_multiple_for
    from gr_ft.modeling import SequenceModel, build_backbone
    from gr_ft.tokenization import SequenceTokenizer

    assert pad_multiple_for("cpu") == 1 and pad_multiple_for(torch.device("cuda", 0)) == PAD_MULTIPLE
    tokenizer = SequenceTokenizer.from_pretrained("kmer3")
    rows = tokenizer.encode(["ACGTACGTACGTAC", "TTGACCATGAGGCA", "GGGCCCAAATTTGC"])["input_ids"]  # 14 bp: 14 tokens
    data = EncodedSplit(rows, [0, 1, 0], "binary")
    unpadded = next(iter(make_dataloader(data, tokenizer, 3, shuffle=False, pad_to_multiple_of=1)))
    padded = next(iter(make_dataloader(data, tokenizer, 3, shuffle=False)))
    assert unpadded["input_ids"].shape == (3, 14) and bool(unpadded["attention_mask"].all())
    assert padded["input_ids"].shape == (3, 16) and not bool(padded["attention_mask"].all())
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=64)
    model = SequenceModel(build_backbone(config, tokenizer), "binary", 2).eval()
    with torch.no_grad():  # the same function of the real tokens: equal up to float rounding (fp32)
        a = model(input_ids=unpadded["input_ids"], attention_mask=unpadded["attention_mask"])["logits"]
        b = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"])["logits"]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
