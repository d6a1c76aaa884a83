"""benchmarks/fewshot_curves.py: the settings it hands the meta-learners, and one tiny run end to end."""

from __future__ import annotations


import pytest

from conftest import load_benchmark
from gr_ft.config import ModelConfig, load_config
from gr_ft.meta.config import MetaTrainConfig
from gr_ft.modeling import build_backbone
from gr_ft.synthetic import cell_type_sequences
from gr_ft.tokenization import SequenceTokenizer


def _load_script():
    return load_benchmark("fewshot_curves")


curves = _load_script()


def test_a_given_backbone_keeps_its_own_tokenizer_and_shape(tmp_path):
    tokenizer = SequenceTokenizer.from_pretrained("kmer6")
    shape = ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_position_embeddings=512)
    build_backbone(shape, tokenizer).save_pretrained(tmp_path / "bb")
    args = curves.parse_args(["--data", "tasks/", "--meta-test", "a", "--backbone", str(tmp_path / "bb")])
    overrides = curves.base_overrides(args)
    assert not any(o.startswith("model.hidden_size") for o in overrides)
    cfg = load_config(MetaTrainConfig, None, overrides)
    assert cfg.model.tokenizer is None  # not the preset's kmer4: the backbone folder's tokenizer is used
    assert curves.prepare_backbone(cfg, args, tmp_path)[1] == str(tmp_path / "bb")
    assert curves.backbone_shape(str(tmp_path / "bb")) == {"arch": "bert", "num_layers": 1, "hidden_size": 32}


def test_without_a_backbone_the_preset_builds_a_small_one():
    args = curves.parse_args(["--data", "tasks/", "--meta-test", "a"])
    cfg = load_config(MetaTrainConfig, None, curves.base_overrides(args))
    assert (cfg.model.tokenizer, cfg.model.hidden_size, cfg.max_length) == ("kmer4", 64, 256)


def test_meta_test_tasks_from_another_collection_with_their_own_label_names(tmp_path):
    """Meta-train on every synthetic cell type (labels 0/1), meta-test on a task labelled HepG2/K562."""
    task = tmp_path / "dhs" / "hepg2_vs_k562"
    task.mkdir(parents=True)
    for seed, split in enumerate(("train", "dev", "test")):
        frame = cell_type_sequences(80, cell_types=["HeLa"], length_bp=60, seed=seed)[["sequence", "label"]]
        frame.assign(label=frame.label.map({0: "HepG2", 1: "K562"})).to_csv(task / f"{split}.csv", index=False)
    args = curves.parse_args([
        "--meta-test-data", str(tmp_path / "dhs"), "--shots", "2", "4", "--seeds", "0", "1", "--max-query", "30",
        "--adapt-steps", "2", "--adapt-lrs", "1e-2", "--work-dir", str(tmp_path / "work"),
        "--set", "meta.synthetic_size=320", "meta.synthetic_length_bp=60", "max_length=64", "model.hidden_size=32",
        "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64", "meta.meta_steps=2",
        "meta.eval_every_steps=2", "meta.val_episodes=1", "meta.inner_steps=1", "meta.k_shot=4", "meta.query_per_class=4",
    ])
    report = curves.run(args)
    assert report["meta_train"] == ["GM12878", "HeLa", "HepG2", "K562"]  # every task of --data
    assert report["meta_test"] == ["hepg2_vs_k562"] and report["classes"] == {"hepg2_vs_k562": ["HepG2", "K562"]}
    rows = report["results"]
    assert len(rows) == 6 * 2 * 2 and {r["method"] for r in rows} == set(curves.METHODS)
    assert all(r["n"] == 30 and -1 <= r["mcc"] <= 1 for r in rows)
    assert "a collection never seen in meta-training" in curves.markdown_section(report)


def test_unknown_meta_test_task_fails_before_meta_training(tmp_path):
    (tmp_path / "dhs" / "hepg2_vs_k562").mkdir(parents=True)
    args = curves.parse_args(["--meta-test-data", str(tmp_path / "dhs"), "--meta-test", "liver"])
    with pytest.raises(SystemExit, match=r"\['liver'\] not in .*hepg2_vs_k562"):
        curves.base_overrides(args)
