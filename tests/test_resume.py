"""Resume after a real SIGKILL equals the uninterrupted run bit for bit; changed configs and half-written folders are refused.

Each kill case runs a recipe as a subprocess with ``GRFT_TEST_KILL_AT=<point>[:<step>]`` (see
:func:`gr_ft.run_state.kill_point`): the process SIGKILLs itself there. The same command is then run
again (no hook) and its trainable tensors and metrics.json are compared with an uninterrupted run of
the same seed, with ``torch.equal`` and ``==``: no tolerance. Dropout stays ON (hidden 0.1, LoRA 0.05).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO
from gr_ft.predictor import load_run
from gr_ft.run_state import folder_status

TIMING_KEYS = {"wall_time_s", "train_tokens", "train_tokens_per_s"}
"""Per-invocation timing in metrics.json (a resumed run times only its own part); everything else must match."""

FINETUNE = [
    "data.synthetic_size=192", "data.max_length=64", "model.hidden_size=32", "model.num_layers=1",
    "model.num_heads=2", "model.intermediate_size=64", "model.tokenizer=kmer3", "train.epochs=3",
    "train.batch_size=32", "train.precision=fp32", "train.checkpoint_every_steps=4",
]  # 6 optimiser steps per epoch (the kill points below rely on it; test_kill_points_are_where_they_claim checks)
STEPS_PER_EPOCH = 6


def run_recipe(script: str, overrides: list[str], kill_at: str | None = None, cwd: Path | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    env.pop("GRFT_TEST_KILL_AT", None)
    if kill_at:
        env["GRFT_TEST_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, str(REPO / "recipes" / script), *overrides], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def kill_then_resume(script: str, overrides: list[str], out: Path, kill_at: str):
    """Run until the kill point (must die by SIGKILL), then rerun the same command to the end."""
    killed = run_recipe(script, overrides + [f"output_dir={out}"], kill_at)
    assert killed.returncode == -signal.SIGKILL, (kill_at, killed.returncode, killed.stderr[-3000:])
    assert folder_status(out) == "interrupted", sorted(p.name for p in out.iterdir())
    state_after_kill = _checkpoint_state(out)
    resumed = run_recipe(script, overrides + [f"output_dir={out}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert folder_status(out) == "complete"
    return state_after_kill


def _checkpoint_state(out: Path) -> dict | None:
    for name in ("last", "last.old"):
        for state_file in ("trainer_state.json", "meta_state.json"):
            path = out / "checkpoints" / name / state_file
            if path.exists():
                return json.loads(path.read_text())
    return None


def assert_same_run(out: Path, reference: Path, weights: str) -> None:
    """Exactly equal trainable tensors and metrics (timing aside)."""
    ours, theirs = load_file(str(out / weights)), load_file(str(reference / weights))
    assert sorted(ours) == sorted(theirs)
    differing = [name for name in theirs if not torch.equal(ours[name], theirs[name])]
    assert not differing, f"{len(differing)} of {len(theirs)} tensors differ, e.g. {differing[:3]}"
    metrics = [{k: v for k, v in json.loads((folder / "metrics.json").read_text()).items() if k not in TIMING_KEYS}
               for folder in (out, reference)]
    for m in metrics:  # the data checks time themselves, in each process
        m.get("data_checks", {}).pop("seconds", None)
    assert metrics[0] == metrics[1]


def reference_run(out: Path, recipe: str, overrides: list[str]) -> Path:
    """The uninterrupted run that every killed-and-resumed run must equal."""
    result = run_recipe(recipe, overrides + [f"output_dir={out}"])
    assert result.returncode == 0, result.stderr[-3000:]
    return out


# ----------------------------------------------------------------------------- fine-tuning


@pytest.fixture(scope="module")
def finetune_reference(tmp_path_factory):
    return reference_run(tmp_path_factory.mktemp("finetune") / "reference", "finetune_lora.py", FINETUNE)


ADAPTER = "adapter/adapter_model.safetensors"
FINETUNE_KILLS = {
    # point -> (epoch, batches_in_epoch) of the checkpoint the resume starts from
    "checkpoint:8": (1, 2),  # mid-epoch 2 (a resumed epoch > 0 must get its own sample order)
    "checkpoint:4": (0, 4),  # mid-epoch 1
    "checkpoint:6": (1, 0),  # epoch boundary (the epoch-end checkpoint, after dev evaluation)
    "checkpoint:12": (1, 6),  # after the last batch of epoch 2, before its dev evaluation
    "checkpoint_staged:16": (2, 0),  # step 16's last.tmp written, not yet renamed: resume from step 12
    "checkpoint_swapping:8": (1, 0),  # between the two renames: last is gone, last.old (step 6) is used
    "marker": (3, 0),  # after metrics.json, before checkpoints/ is cleaned
    "publishing": (3, 0),  # during the final write of the run folder
}


@pytest.mark.slow  # three recipe processes (~35 s); the fast suite resumes in-process (test_finetune.py)
@pytest.mark.parametrize("kill_at", list(FINETUNE_KILLS))
def test_finetune_killed_and_resumed_equals_uninterrupted(finetune_reference, kill_at):
    out = finetune_reference.parent / kill_at.replace(":", "_")
    state = kill_then_resume("finetune_lora.py", FINETUNE, out, kill_at)
    assert (state["epoch"], state["batches_in_epoch"]) == FINETUNE_KILLS[kill_at]
    if kill_at.startswith("checkpoint:"):
        assert state["global_step"] == int(kill_at.split(":")[1])
    assert_same_run(out, finetune_reference, ADAPTER)
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]


@pytest.mark.slow  # checks the reference run of the slow cases above
def test_kill_points_are_where_they_claim(finetune_reference):
    """The reference run trains with dropout on and STEPS_PER_EPOCH steps per epoch (else the cases above prove less)."""
    import yaml

    cfg = yaml.safe_load((finetune_reference / "config.yaml").read_text())
    assert cfg["adapter"]["dropout"] == 0.05
    assert json.loads((finetune_reference / "backbone" / "config.json").read_text())["hidden_dropout_prob"] == 0.1
    from gr_ft.config import FinetuneConfig, load_config
    from gr_ft.data import load_splits

    splits = load_splits(load_config(FinetuneConfig, None, FINETUNE).data, "dna", 0)
    assert -(-len(splits["train"].frame) // 32) == STEPS_PER_EPOCH


# ----------------------------------------------------------------------------- pretraining


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("corpus") / "dna.fa.gz"
    with gzip.open(path, "wt") as handle:
        for i in range(60):
            handle.write(f">rec{i}\n{''.join(rng.choice(list('ACGT'), size=int(rng.integers(150, 900))))}\n")
    return path


def pretrain_overrides(fasta: Path) -> list[str]:
    return [
        f"corpus.train_files={fasta}", "corpus.window_bp=120", "corpus.validation_fraction=0.2",
        "corpus.validation_windows=16", "corpus.shuffle_buffer=64", "corpus.bucket_batches=2",
        "model.tokenizer=kmer3", "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
        "model.intermediate_size=64", "model.max_position_embeddings=130", "train.max_steps=6",
        "train.batch_size=8", "train.eval_every_steps=2", "train.checkpoint_every_steps=2",
        "train.log_every_steps=1", "train.precision=fp32",
    ]  # dropout: the fresh model's default (0.1)


@pytest.fixture(scope="module")
def pretrain_reference(fasta):
    return reference_run(fasta.parent / "reference", "pretrain_mlm.py", pretrain_overrides(fasta))


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["checkpoint:2", "checkpoint_staged:4", "publishing", "marker"])
def test_pretrain_killed_and_resumed_equals_uninterrupted(fasta, pretrain_reference, kill_at):
    from gr_ft.modeling import load_backbone

    out = fasta.parent / kill_at.replace(":", "_")
    killed = run_recipe("pretrain_mlm.py", pretrain_overrides(fasta) + [f"output_dir={out}"], kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    if kill_at in ("publishing", "marker"):  # half-published: config.json is there, the folder is not complete
        assert (out / "config.json").exists()
        with pytest.raises(ValueError, match="interrupted gr-ft pretrain run"):
            load_backbone(str(out))
    resumed = run_recipe("pretrain_mlm.py", pretrain_overrides(fasta) + [f"output_dir={out}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(out, pretrain_reference, "model.safetensors")
    load_backbone(str(out))


# ----------------------------------------------------------------------------- Reptile

REPTILE = [
    "meta.synthetic_size=320", "meta.synthetic_length_bp=60", "max_length=64", "model.tokenizer=kmer3",
    "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64",
    "train.precision=fp32", "meta.meta_steps=4", "meta.eval_every_steps=2", "meta.checkpoint_every_steps=1",
    "meta.val_episodes=2", "meta.test_episodes=2", "meta.k_shot=4", "meta.query_per_class=4", "meta.inner_steps=2",
    "meta.meta_test=[HeLa]",
]


@pytest.fixture(scope="module")
def reptile_reference(tmp_path_factory):
    return reference_run(tmp_path_factory.mktemp("reptile") / "reference", "meta_reptile.py", REPTILE)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["checkpoint:1", "checkpoint:2", "checkpoint_staged:3", "marker"])
def test_reptile_killed_and_resumed_equals_uninterrupted(reptile_reference, kill_at):
    out = reptile_reference.parent / kill_at.replace(":", "_")
    kill_then_resume("meta_reptile.py", REPTILE, out, kill_at)
    assert_same_run(out, reptile_reference, ADAPTER)


# ----------------------------------------------------------------------------- config changes, markers


@pytest.fixture
def interrupted_run(tmp_path, monkeypatch):
    """A fine-tuning run (in this process) stopped right after its first checkpoint."""
    from gr_ft.recipes import finetune_lora

    real_save = finetune_lora.save_checkpoint

    def crash(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(finetune_lora, "save_checkpoint", crash)
    base = FINETUNE + [f"output_dir={tmp_path / 'run'}", "train.epochs=1"]
    with pytest.raises(KeyboardInterrupt):
        finetune_lora.main(base)
    monkeypatch.setattr(finetune_lora, "save_checkpoint", real_save)
    return finetune_lora, base


def test_resume_with_another_lr_and_seed_is_refused_naming_them(interrupted_run):
    recipe, base = interrupted_run
    with pytest.raises(ValueError) as err:
        recipe.main(base + ["train.lr=1e-2", "train.seed=5"])
    message = str(err.value)
    assert "train.lr: 0.003 -> 0.01" in message and "train.seed: 0 -> 5" in message
    assert "overwrite=true" in message and "lora" not in message


def test_resume_with_another_adapter_rank_is_a_config_error_not_a_traceback(interrupted_run):
    recipe, base = interrupted_run
    with pytest.raises(ValueError, match=r"adapter\.r: 8 -> 16"):
        recipe.main(base + ["adapter.r=16"])


def test_neutral_keys_resume_and_overwrite_starts_over(interrupted_run):
    recipe, base = interrupted_run
    metrics = recipe.main(base + ["train.eval_batch_size=16", "train.log_every_steps=1"])
    assert [h["epoch"] for h in metrics["history"]] == [1]
    out = Path(base[-2].split("=", 1)[1])
    assert folder_status(out) == "complete"
    fresh = recipe.main(base + ["train.lr=1e-2", "overwrite=true"])
    assert fresh["history"][0]["train_loss"] != metrics["history"][0]["train_loss"]


def test_interrupted_folder_is_refused_by_load_run_and_predict(interrupted_run, tmp_path, capsys):
    from gr_ft.cli import main as cli_main

    recipe, base = interrupted_run
    out = tmp_path / "run"
    recipe.main(base)
    (out / "checkpoints").mkdir()  # the state a kill between metrics.json and the cleanup used to leave
    with pytest.raises(ValueError, match="interrupted gr-ft finetune run.*resume"):
        load_run(out)
    fasta = tmp_path / "seqs.txt"
    fasta.write_text("ACGTACGTACGTACGTACGT\n")
    assert cli_main(["predict", str(out), "--input", str(fasta), "--output", str(tmp_path / "pred.csv")]) == 2
    assert "interrupted" in capsys.readouterr().err


def test_run_folder_never_switches_remote_code_on(interrupted_run, tmp_path):
    """A (downloaded, untrusted) run folder that claims its backbone needs remote code, and even sets
    model.trust_remote_code in its config.yaml, still loads only with the caller's own opt-in."""
    import yaml

    recipe, base = interrupted_run
    out = tmp_path / "run"
    recipe.main(base)
    record = json.loads((out / "base_model.json").read_text())
    (out / "base_model.json").write_text(json.dumps({**record, "needs_remote_code": True}))
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    cfg["model"]["trust_remote_code"] = True
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="--trust-remote-code"):
        load_run(out)


def test_output_dir_states(tmp_path):
    """prepare_output_dir: foreign folders and complete runs are refused; a fresh start marks the folder interrupted."""
    from gr_ft.config import FinetuneConfig
    from gr_ft.run_folder import prepare_output_dir

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not a gr-ft run"):
        prepare_output_dir(FinetuneConfig(output_dir=str(foreign)))
    assert (foreign / "notes.txt").read_text() == "mine"

    out = tmp_path / "run"
    assert prepare_output_dir(FinetuneConfig(output_dir=str(out))) is None
    assert folder_status(out) == "interrupted"  # checkpoints/ exists from the start
    (out / "checkpoints").rmdir()
    (out / "metrics.json").write_text("{}")
    assert folder_status(out) == "complete"
    with pytest.raises(ValueError, match="already holds a finished run"):
        prepare_output_dir(FinetuneConfig(output_dir=str(out)))
    assert prepare_output_dir(FinetuneConfig(output_dir=str(out), overwrite=True)) is None
    assert folder_status(out) == "interrupted" and not (out / "metrics.json").exists()
