"""Publishing: the repository folder, model card, upload (mocked Hub), Hub-id loading, merging.

One tiny fine-tuning run (seconds) is shared by the whole module; every test copies what it changes.
"""

import json
import shutil
import tempfile
from pathlib import Path

import huggingface_hub
import pandas as pd
import pytest
from huggingface_hub import metadata_load
from safetensors.torch import load_file, save_file

from gr_ft import hub
from gr_ft.cli import main as cli_main
from gr_ft.leakage import leakage_report
from gr_ft.recipes import finetune_lora
from gr_ft.predictor import load_run

# Lengths around max_length=64 tokens, so the crop path is exercised too.
SEQUENCES = ["ACGT" * 12, "TATAAAAGGCGC" * 4, "GATTACA" * 20, "CCGGAATT" * 3]
REPO_FILES = {"README.md", "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "backbone/config.json",
              "backbone/model.safetensors", "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json",
              "config.yaml", "label_map.json", "base_model.json", "metrics.json"}


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file()}


def max_logit_difference(first, second) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(first.logits(SEQUENCES), second.logits(SEQUENCES)))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished LoRA run on a config-built backbone (same sizes as conftest's tiny_overrides, one epoch)."""
    out = tmp_path_factory.mktemp("hub") / "run"
    finetune_lora.main([
        f"output_dir={out}", "data.synthetic_size=192", "data.max_length=64", "model.hidden_size=32",
        "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64", "model.tokenizer=kmer3",
        "train.epochs=1", "train.batch_size=32", "train.precision=fp32",
    ])
    return out


@pytest.fixture(scope="module")
def pushed(run_dir) -> Path:
    return hub.push_run(run_dir, "user/demo", local_dir=run_dir.parent / "pushed")


@pytest.fixture
def private_tempdir(tmp_path, monkeypatch) -> Path:
    """Route tempfile to an empty folder, so a test can prove nothing was left behind."""
    folder = tmp_path / "tempdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_pushed_folder_holds_exactly_the_repo_and_predicts_identically(run_dir, pushed):
    assert files_under(pushed) == REPO_FILES
    original, reloaded = load_run(run_dir), load_run(pushed)
    assert max_logit_difference(original, reloaded) <= 1e-6
    probs = [p.predict(SEQUENCES).filter(like="prob_") for p in (original, reloaded)]
    assert (probs[0] - probs[1]).abs().max().max() <= 1e-6
    assert not list(pushed.parent.glob(".pushed.*")), "staging folder left beside the output"


def test_hub_id_loads_through_snapshot_download(run_dir, pushed, monkeypatch):
    calls = []

    def fake_snapshot_download(repo_id, revision=None, **kwargs):
        calls.append(repo_id)
        return str(pushed)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert max_logit_difference(load_run(run_dir), load_run("user/demo")) <= 1e-6
    assert calls == ["user/demo"]


def test_load_run_by_hub_id_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"'user/name' is not a local folder, and downloading .*hf download user/name"):
        load_run("user/name")


def test_merged_run_predicts_the_same_and_loads_standalone(run_dir, tmp_path):
    source = shutil.copytree(run_dir, tmp_path / "source")
    merged = hub.merge_run(source, tmp_path / "merged")
    shutil.rmtree(source)  # standalone: nothing of the adapter run is needed any more
    assert {"model.safetensors", "backbone/model.safetensors", "merged_from.json"} <= files_under(merged)
    assert not (merged / "adapter").exists()
    assert max_logit_difference(load_run(run_dir), load_run(merged)) <= 1e-5
    before = json.loads((run_dir / "base_model.json").read_text())["fingerprint"]
    after = json.loads((merged / "base_model.json").read_text())
    assert after["built_from_config"] and after["fingerprint"] != before, "merge did not change the backbone"
    with pytest.raises(ValueError, match="already full weights"):
        hub.merge_run(merged, tmp_path / "again")
    repo = hub.build_repo_folder(merged, tmp_path / "repo", "user/demo-merged")
    assert "model.safetensors" in files_under(repo) and not (repo / "adapter").exists()
    assert "library_name" not in metadata_load(repo / "README.md")


def test_adapter_is_much_smaller_than_the_base_model(pushed):
    adapter_mb, base_mb = hub.folder_size_mb(pushed / "adapter"), hub.folder_size_mb(pushed / "backbone")
    print(f"adapter/ {adapter_mb:.3f} MB vs backbone/ {base_mb:.3f} MB ({base_mb / adapter_mb:.1f}x)")
    assert adapter_mb < base_mb / 2


def test_adapter_on_other_base_weights_names_the_base_it_needs(pushed, tmp_path):
    other = shutil.copytree(pushed, tmp_path / "other")
    weights = load_file(str(other / "backbone" / "model.safetensors"))
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1e-3
    save_file(weights, str(other / "backbone" / "model.safetensors"))
    needed = json.loads((pushed / "base_model.json").read_text())["fingerprint"][:12]
    with pytest.raises(ValueError, match=f"trained on base model built from config .*{needed}.*load the exact"):
        load_run(other)
    with pytest.raises(ValueError, match=f"fingerprint {needed}"):
        load_run(pushed, base_model=str(other / "backbone"))


def test_model_card_metadata_matches_the_run(run_dir, pushed):
    meta = metadata_load(pushed / "README.md")
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-classification"
    assert {"gr-ft", "genomics", "lora", "binary-classification", "synthetic-data"} <= set(meta["tags"])
    assert "base_model" not in meta  # built from config: nothing on the Hub to point at
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    reported = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert reported == {k: v for k, v in test.items() if k != "n"}
    text = (pushed / "README.md").read_text()
    assert 'gr_ft.load_run("user/demo")' in text and "predict([" in text
    assert "built from config" in text and "the adapter is useless without them" in text
    assert "Synthetic data" in text
    hub.check_card_metadata(text)


def test_card_reports_mean_and_sd_over_seed_runs(run_dir, tmp_path):
    seed_run = shutil.copytree(run_dir, tmp_path / "seed1")
    metrics = json.loads((seed_run / "metrics.json").read_text())
    first_mcc = metrics["test"]["mcc"]
    metrics["test"]["mcc"] = first_mcc + 0.2
    (seed_run / "metrics.json").write_text(json.dumps(metrics))
    (seed_run / "config.yaml").write_text((seed_run / "config.yaml").read_text().replace("seed: 0", "seed: 1"))
    card = str(hub.render_model_card(run_dir, "user/demo", seed_runs=[seed_run]))
    assert "mean ± sd over 2 seeds" in card
    assert f"| mcc | {first_mcc:.4f} | {first_mcc + 0.1:.4f} ± 0.1414 (n=2) |" in card
    with pytest.raises(ValueError, match="repeats train.seed=0"):
        hub.render_model_card(run_dir, seed_runs=[run_dir])


@pytest.mark.parametrize("name, has_base_model",
                         [("/models/local_dnabert6", False), ("facebook/esm2_t6_8M_UR50D", True)])
def test_card_links_only_hub_ids_as_base_model(run_dir, tmp_path, name, has_base_model):
    copy = shutil.copytree(run_dir, tmp_path / "copy")
    base = json.loads((copy / "base_model.json").read_text())
    (copy / "base_model.json").write_text(json.dumps({**base, "name_or_path": name, "built_from_config": False}))
    card = hub.render_model_card(copy, "user/demo")
    assert card.data.base_model == (name if has_base_model else None)
    text = str(card)
    if has_base_model:
        assert "Lin Z, Akin H, Rao R" in text  # the ESM-2 citation
    else:
        assert "not a Hub id" in text and 'base_model="path/to/local_dnabert6"' in text


def test_card_summarises_a_leakage_report(run_dir, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / "copy")
    train = pd.DataFrame({"sequence": ["ACGTACGTAAGGCCTT", "TTTTGGGGCCCCAAAA"], "label": ["1", "0"]})
    test = pd.DataFrame({"sequence": ["ACGTACGTAAGGCCTT", "GATTACAGATTACAGA"], "label": ["1", "0"]})
    (copy / "leakage_report.json").write_text(json.dumps(leakage_report({"train": train, "test": test})))
    repo = hub.build_repo_folder(copy, tmp_path / "repo")
    assert "leakage_report.json" in files_under(repo)
    assert "train-test: 1 test rows (50.00%) have an exact or near copy" in (repo / "README.md").read_text()


def test_build_refuses_a_non_empty_folder_unless_overwrite(run_dir, tmp_path):
    out = tmp_path / "repo"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty.*overwrite"):
        hub.build_repo_folder(run_dir, out)
    assert files_under(out) == {"keep.txt"}
    hub.build_repo_folder(run_dir, out, overwrite=True)
    assert files_under(out) == REPO_FILES and files_under(tmp_path) == {f"repo/{f}" for f in REPO_FILES}


def test_push_without_token_or_network_fails_clearly_and_leaves_nothing(run_dir, private_tempdir, monkeypatch):
    before = files_under(run_dir)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(ValueError, match=r"no Hugging Face token.*hf auth login.*--local-dir"):
        hub.push_run(run_dir, "user/demo")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="offline mode is on.*--local-dir"):
        hub.push_run(run_dir, "user/demo", token="hf_test")

    class UnreachableHub:
        def __init__(self, token=None):
            pass

        def create_repo(self, *args, **kwargs):
            raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", UnreachableHub)
    with pytest.raises(ValueError, match="upload of .* to user/demo failed: ConnectionError.*--local-dir"):
        hub.push_run(run_dir, "user/demo", token="hf_test")
    assert list(private_tempdir.iterdir()) == [] and files_under(run_dir) == before


def test_push_creates_the_repo_and_uploads_one_folder(run_dir, private_tempdir, monkeypatch):
    calls = []

    class RecordingHub:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, exist_ok=False, private=None):
            calls.append(("create_repo", repo_id, exist_ok, private))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, *, repo_id, folder_path, **kwargs):
            calls.append(("upload_folder", repo_id, files_under(Path(folder_path))))

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHub)
    url = hub.push_run(run_dir, "user/demo", private=True, token="hf_test")
    assert url == "https://huggingface.co/user/demo"
    assert calls == [("init", "hf_test"), ("create_repo", "user/demo", True, True),
                     ("upload_folder", "user/demo", REPO_FILES)]
    assert list(private_tempdir.iterdir()) == []


def test_cli_push_and_merge(run_dir, tmp_path, capsys):
    assert cli_main(["push", str(run_dir), "user/demo", "--local-dir", str(tmp_path / "repo")]) == 0
    assert files_under(tmp_path / "repo") == REPO_FILES
    assert cli_main(["push", str(run_dir), "user/demo", "--local-dir", str(tmp_path / "repo")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli_main(["push", str(run_dir), "not-a-repo-id", "--local-dir", str(tmp_path / "x")]) == 2
    assert cli_main(["merge", str(run_dir), str(tmp_path / "merged")]) == 0
    assert "wrote merged run folder" in capsys.readouterr().out
    for command in ("push", "merge"):
        with pytest.raises(SystemExit):
            cli_main([command, "--help"])
        assert "examples:\n  gr-ft " + command in capsys.readouterr().out
