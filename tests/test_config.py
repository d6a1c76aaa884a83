from pathlib import Path

import pytest
import yaml

from gr_ft.config import FinetuneConfig, load_config, parse_overrides, recipe_config_class

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "recipes" / "configs").glob("*.yaml"))


def test_defaults_are_the_demo():
    cfg = load_config(FinetuneConfig, None)
    assert cfg.data.path == "synthetic:promoter"
    assert cfg.model.name_or_path is None and cfg.lora.method == "lora"


def test_overrides_are_typed_and_nested():
    cfg = load_config(FinetuneConfig, None, ["train.lr=3e-4", "lora.r=16", "lora.target_modules=query,value",
                                              "model.name_or_path=null", "train.bucket_by_length=false"])
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.lora.r == 16 and cfg.lora.target_modules == ["query", "value"]
    assert cfg.model.name_or_path is None and cfg.train.bucket_by_length is False


def test_unknown_key_names_the_key_and_the_choices():
    with pytest.raises(ValueError, match=r"train\.learning_rate.*valid keys.*'lr'"):
        load_config(FinetuneConfig, None, ["train.learning_rate=1e-3"])
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['bogus'\]"):
        load_config(FinetuneConfig, None, ["bogus=1"])


def test_invalid_values_name_the_flag():
    with pytest.raises(ValueError, match="lora.method"):
        load_config(FinetuneConfig, None, ["lora.method=prefix"])
    with pytest.raises(ValueError, match="train.epochs must be > 0"):
        load_config(FinetuneConfig, None, ["train.epochs=0"])
    with pytest.raises(ValueError, match="train.batch_size must be a whole number"):
        load_config(FinetuneConfig, None, ["train.batch_size=2.5"])
    with pytest.raises(ValueError, match="divisible"):
        load_config(FinetuneConfig, None, ["model.hidden_size=30", "model.num_heads=4"])
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["train.lr"])


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"lr": 0.01, "epochs": 5}}))
    cfg = load_config(FinetuneConfig, path, ["train.epochs=1"])
    assert (cfg.train.lr, cfg.train.epochs) == (0.01, 1)
    with pytest.raises(ValueError, match="does not exist"):
        load_config(FinetuneConfig, tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_recipe_config_validates(path):
    header = path.read_text().splitlines()[:12]
    assert any(line.startswith("#") and ("gr-ft" in line or "accelerate launch" in line) for line in header), \
        f"{path.name} must start with a comment showing the command that runs it"
    load_config(recipe_config_class(path), path)


def test_demo_config_spells_out_the_builtin_default():
    demo = Path(__file__).resolve().parent.parent / "recipes" / "configs" / "demo.yaml"
    assert load_config(FinetuneConfig, demo) == load_config(FinetuneConfig, None)
