from pathlib import Path

import pytest
import yaml

from gr_ft.config import FinetuneConfig, load_config, parse_overrides, recipe_config_class

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "recipes" / "configs").glob("*.yaml"))


def test_defaults_are_the_demo():
    cfg = load_config(FinetuneConfig, None)
    assert cfg.data.path == "synthetic:promoter"
    assert cfg.model.name_or_path is None and cfg.adapter.method == "lora"


def test_overrides_are_typed_and_nested():
    cfg = load_config(FinetuneConfig, None, ["train.lr=3e-4", "adapter.r=16", "adapter.target_modules=query,value",
                                              "model.name_or_path=null", "train.bucket_by_length=false"])
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.adapter.r == 16 and cfg.adapter.target_modules == ["query", "value"]
    assert cfg.model.name_or_path is None and cfg.train.bucket_by_length is False


def test_unknown_key_names_the_key_and_the_choices():
    with pytest.raises(ValueError, match=r"train\.learning_rate.*valid keys.*'lr'"):
        load_config(FinetuneConfig, None, ["train.learning_rate=1e-3"])
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['bogus'\]"):
        load_config(FinetuneConfig, None, ["bogus=1"])


def test_invalid_values_name_the_flag():
    with pytest.raises(ValueError, match="adapter.method"):
        load_config(FinetuneConfig, None, ["adapter.method=prefix"])
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


def test_renamed_meta_keys_still_load_with_a_warning_and_both_names_is_an_error(caplog):
    from gr_ft.meta.config import MetaTrainConfig

    with caplog.at_level("WARNING", logger="gr_ft.config"):
        cfg = load_config(MetaTrainConfig, None, ["meta.query_size=4", "meta.eval_every=10"])
    assert cfg.meta.query_per_class == 4 and cfg.meta.eval_every_steps == 10
    assert "meta.query_size is now meta.query_per_class" in caplog.text
    with pytest.raises(ValueError, match="same setting"):
        load_config(MetaTrainConfig, None, ["meta.query_size=4", "meta.query_per_class=4"])


def test_the_old_lora_section_name_loads_and_merges_with_the_new_one(tmp_path, caplog):
    old = tmp_path / "old.yaml"
    old.write_text("adapter:\n  r: 4\n  alpha: 8\n")
    with caplog.at_level("WARNING", logger="gr_ft.config"):
        cfg = load_config(FinetuneConfig, old, ["lora.r=16"])  # an old-style override on a new-style file
    assert (cfg.adapter.r, cfg.adapter.alpha) == (16, 8)
    assert "lora is now adapter" in caplog.text
    old.write_text("lora:\n  method: dora\n  r: 4\n")  # a config.yaml written before the rename
    cfg = load_config(FinetuneConfig, old, ["adapter.alpha=2"])
    assert (cfg.adapter.method, cfg.adapter.r, cfg.adapter.alpha) == ("dora", 4, 2)
    old.write_text("lora:\n  r: 4\nadapter:\n  r: 8\n")
    with pytest.raises(ValueError, match="same setting"):
        load_config(FinetuneConfig, old)


def test_a_checkpoint_saved_with_old_key_names_resumes_and_changes_are_still_found(tmp_path):
    import json

    from gr_ft.run_folder import check_resume_config, flat_config
    from gr_ft.run_state import RUN_CONFIG_FILE

    cfg = load_config(FinetuneConfig, None, [f"output_dir={tmp_path}"])
    saved = {key.replace("adapter.", "lora.", 1): value for key, value in flat_config(cfg).items()}
    (tmp_path / RUN_CONFIG_FILE).write_text(json.dumps(saved))
    check_resume_config(cfg, tmp_path)  # same settings under the old names: resumes
    changed = load_config(FinetuneConfig, None, [f"output_dir={tmp_path}", "adapter.r=4"])
    with pytest.raises(ValueError, match=r"adapter\.r: 8 -> 4"):
        check_resume_config(changed, tmp_path)
