"""benchmarks/fewshot_curves.py: the settings it hands the meta-learners (the curves themselves are a benchmark)."""

from __future__ import annotations

import importlib.util
import sys

from conftest import REPO
from gr_ft.config import ModelConfig, load_config
from gr_ft.meta.config import MetaTrainConfig
from gr_ft.modeling import build_backbone
from gr_ft.tokenization import SequenceTokenizer


def _load_script():
    spec = importlib.util.spec_from_file_location("fewshot_curves", REPO / "benchmarks" / "fewshot_curves.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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
