"""gr-ft sweep (Optuna) and multi-seed runs on tiny synthetic data: validation before any trial, best.yaml,
restarts continuing the study, two workers sharing one storage, and a SIGKILLed worker's trial retried."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from gr_ft.cli import main as cli_main
from gr_ft.config import FinetuneConfig, load_config
from gr_ft.hub import render_model_card
from gr_ft.recipes import finetune_lora
from gr_ft.sweep import SweepConfig, load_space, parse_seeds, run_sweep, validate_space

SPACE = "train.lr: {type: float, low: 1e-4, high: 1e-2, log: true}\nadapter.r: {type: categorical, choices: [2, 4]}\n"


def tiny(tmp_path, epochs: int = 2, rows: int = 192) -> list[str]:
    return ["data.synthetic_size=%d" % rows, "data.max_length=64", "model.hidden_size=32", "model.num_layers=1",
            "model.num_heads=2", "model.intermediate_size=64", "model.tokenizer=kmer3", f"train.epochs={epochs}",
            "train.batch_size=32", "train.precision=fp32", f"output_dir={tmp_path / 'unused'}"]


def write_space(tmp_path, text: str = SPACE) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def finished(study) -> int:
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)


@pytest.mark.parametrize("text,message", [
    ("adapter.rank: {type: categorical, choices: [4, 8]}\n", r"'adapter.rank'.*unknown config key"),
    ("adapter.method: {type: categorical, choices: [lora, lorax]}\n", r"'adapter.method' \(value 'lorax'\).*must be one of"),
    ("train.lr: {type: float, low: 1e-2, high: 1e-4}\n", r"'train.lr'.*must be below high"),
    ("train.lr: {type: uniform, low: 1, high: 2}\n", r"'train.lr'.*type must be one of"),
    ("train.epochs: {type: int, low: 0, high: 3}\n", r"'train.epochs' \(value 0\).*train.epochs must be > 0"),
])
def test_space_is_validated_before_any_trial(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        validate_space(load_space(write_space(tmp_path, text)), None, [])


def test_bad_space_is_exit_2_and_nothing_is_written(tmp_path, capsys):
    space = write_space(tmp_path, "lora.rank: {type: categorical, choices: [4]}\n")
    assert cli_main(["sweep", "--space", space, "--trials", "2", "--out", str(tmp_path / "sweep")]) == 2
    assert "lora.rank" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()
    assert parse_seeds("0, 1,2") == [0, 1, 2]
    with pytest.raises(ValueError, match="distinct"):
        parse_seeds("1,1")


def test_three_trial_sweep_writes_best_yaml_and_a_restart_continues(tmp_path):
    out = tmp_path / "sweep"
    cfg = SweepConfig(space=write_space(tmp_path), trials=3, overrides=tiny(tmp_path), out_dir=str(out),
                      sampler_seed=0)
    summary = run_sweep(cfg)
    assert sum(summary["states"].get(s, 0) for s in ("COMPLETE", "PRUNED")) == 3
    assert summary["this_worker_ran"] == [0, 1, 2]
    best = summary["best"]
    best_cfg = load_config(FinetuneConfig, out / "best.yaml")  # a valid config the recipe can run
    assert best_cfg.adapter.r == best["params"]["adapter.r"] and best_cfg.train.lr == pytest.approx(best["params"]["train.lr"])
    assert best_cfg.train.epochs == 2 and best_cfg.output_dir == str(out / "best")
    saved = json.loads((out / f"trial_{best['number']:03d}" / "metrics.json").read_text())
    assert saved["dev_mcc"] == pytest.approx(best["value"])
    for row in summary["trials"]:
        folder = Path(row["run_dir"])
        assert (folder / ("metrics.json" if row["state"] == "COMPLETE" else "pruned.json")).exists(), row
    assert (out / "study.db").exists() and json.loads((out / "sweep.json").read_text())["best"]["number"] == best["number"]

    again = run_sweep(SweepConfig(space=cfg.space, trials=4, overrides=cfg.overrides, out_dir=str(out),
                                  rerun_seeds=[0, 1], sampler_seed=0))
    assert again["this_worker_ran"] == [3]  # the study continued: only the missing trial ran
    assert again["trials"][3]["params"] != again["trials"][0]["params"]  # the same seed does not replay draws
    seeds = json.loads((out / "best_seeds.json").read_text())
    best_params = again["best"]["params"]
    for seed in (0, 1):
        rerun = load_config(FinetuneConfig, out / "best" / f"seed_{seed}" / "config.yaml")
        assert rerun.train.seed == seed and rerun.adapter.r == best_params["adapter.r"]
    assert len(seeds["test"]["mcc"]["values"]) == 2
    with pytest.raises(ValueError, match="another config or space"):
        run_sweep(SweepConfig(space=cfg.space, trials=5, overrides=cfg.overrides + ["train.lr=0.1"], out_dir=str(out)))
    with pytest.raises(ValueError, match="belongs to another study"):  # never mistaken for this study's trial 0
        run_sweep(SweepConfig(space=cfg.space, trials=1, overrides=cfg.overrides, out_dir=str(out), study_name="other"))


def sweep_command(tmp_path, space, out, trials, storage=None, epochs=2, rows=192, extra=()) -> list[str]:
    command = [sys.executable, "-m", "gr_ft.cli", "sweep", "--space", space, "--trials", str(trials),
               "--out", str(out), *extra, *tiny(tmp_path, epochs, rows)]
    return command + (["--storage", storage] if storage else [])


def worker_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.mark.slow
def test_two_worker_processes_share_one_study(tmp_path):
    space, storage = write_space(tmp_path), f"sqlite:///{tmp_path / 'shared.db'}"
    workers = [subprocess.Popen(sweep_command(tmp_path, space, tmp_path / f"out{i}", 4, storage),
                                env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = optuna.load_study(study_name="gr-ft-sweep", storage=storage)
    assert finished(study) == 4 and sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    by_worker = {}
    for trial in study.trials:
        by_worker.setdefault(trial.user_attrs["worker"], []).append(trial.number)
    assert len(by_worker) == 2, by_worker  # both workers took trials, and their counts add up to the study's
    assert sum(map(len, by_worker.values())) == 4


@pytest.mark.slow
def test_sigkilled_sweep_restarts_and_completes_the_requested_trials(tmp_path):
    space, out = write_space(tmp_path), tmp_path / "sweep"
    command = sweep_command(tmp_path, space, out, 3, epochs=4, rows=1500, extra=["--heartbeat", "1", "--no-prune"])
    first = subprocess.Popen(command, env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = f"sqlite:///{out / 'study.db'}"
    deadline = time.time() + 240
    killed = None
    while killed is None and time.time() < deadline and first.poll() is None:
        time.sleep(0.3)
        try:
            trials = optuna.load_study(study_name="gr-ft-sweep", storage=storage).trials
        except Exception:  # the study is not created yet
            continue
        running = [t for t in trials if t.state.name == "RUNNING" and t.intermediate_values]
        if running:  # mid-trial: at least one epoch done and checkpointed, more to go
            os.kill(first.pid, signal.SIGKILL)
            killed = running[0]
    first.wait()
    assert killed is not None, "the first worker never reached the middle of a trial"
    assert not (Path(killed.user_attrs["run_dir"]) / "metrics.json").exists()

    restarted = subprocess.run(command, env=worker_env(), capture_output=True, text=True, timeout=400)
    assert restarted.returncode == 0, restarted.stdout[-3000:] + restarted.stderr[-3000:]
    study = optuna.load_study(study_name="gr-ft-sweep", storage=storage)
    states = [t.state.name for t in study.trials]
    assert finished(study) == 3 and "RUNNING" not in states, states
    assert study.trials[killed.number].state.name == "FAIL"
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == killed.params
    # the retry resumed the killed trial's own run folder from its checkpoint: one history, epochs 1-4
    assert retry[0].user_attrs["run_dir"] == killed.user_attrs["run_dir"]
    metrics = json.loads((Path(killed.user_attrs["run_dir"]) / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4]


def test_seeds_flag_writes_one_run_per_seed_and_the_summary(tiny_overrides, tmp_path):
    summary = finetune_lora.main(["--seeds", "0,1", *tiny_overrides, "train.epochs=1"])
    out = tmp_path / "run"
    runs = [json.loads((out / f"seed_{s}" / "metrics.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in runs] == [0, 1]
    saved = json.loads((out / "seeds_summary.json").read_text())
    assert saved == summary and saved["seeds"] == [0, 1]
    auroc = [r["test"]["auroc"] for r in runs]
    assert saved["test"]["auroc"]["values"] == [round(v, 4) for v in auroc]
    assert saved["test"]["auroc"]["mean"] == pytest.approx(sum(auroc) / 2, abs=1e-4)
    assert saved["test"]["auroc"]["sd"] == pytest.approx(abs(auroc[0] - auroc[1]) / 2 ** 0.5, abs=1e-4)
    assert "--seed-runs" in saved["card"]
    card = render_model_card(out / "seed_0", seed_runs=[out / "seed_1"])  # the card reports the seeds' mean ± sd
    assert f"{saved['test']['auroc']['mean']:.4f} ± {saved['test']['auroc']['sd']:.4f} (n=2)" in str(card)
    again = finetune_lora.main(["--seeds", "0,1", *tiny_overrides, "train.epochs=1"])  # finished seeds are read
    assert again["test"] == saved["test"]


def test_cluster_folds_keep_near_copies_together():
    from gr_ft import synthetic
    from gr_ft.folds import cluster_folds

    sequences = synthetic.make_task("cell_type", 120, seed=3)["sequence"].tolist()
    copies = [s[:-1] + ("A" if s[-1] != "A" else "C") for s in sequences[:40]]  # one substitution in 200 bp
    fold = cluster_folds(sequences + copies, k_folds=3, seed=0)
    assert (fold[:40] == fold[120:]).all()  # each near copy sits in its original's fold
    assert sorted(set(fold.tolist())) == [0, 1, 2] and max(np.bincount(fold)) - min(np.bincount(fold)) <= 2


def test_folds_run_one_run_per_fold_and_summarise(tiny_overrides, tmp_path):
    summary = finetune_lora.main([*tiny_overrides, "train.epochs=1", "data.folds=2"])
    out = tmp_path / "run"
    assert summary == json.loads((out / "folds_summary.json").read_text())
    assert sum(summary["fold_rows"]) == 192 + 48  # synthetic train + dev pooled
    for i in range(2):
        metrics = json.loads((out / f"fold_{i}" / "metrics.json").read_text())
        assert metrics["data_checks"]["splits"]["dev"]["rows"] == summary["fold_rows"][i]
    assert len(summary["test"]["mcc"]["values"]) == 2 and "dev_mcc" in summary
    with pytest.raises(ValueError, match="cannot be combined"):
        finetune_lora.main([*tiny_overrides, "data.folds=2", "--seeds", "0,1"])
