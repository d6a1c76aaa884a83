"""torchrun with 2 CPU processes (gloo) matches 1 process at the same global batch size."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "finetune_lora.py"
# Exact parity needs identical randomness: dropout off (each process draws its own dropout masks).
DETERMINISTIC = ["model.dropout=0", "model.head_dropout=0", "adapter.dropout=0"]
TOLERANCE = 1e-4  # float summation order differs between 1 and 2 processes


def launch(command: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.distributed
def test_two_processes_match_one(tiny_overrides, tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    common = tiny_overrides + DETERMINISTIC + ["train.epochs=2"]
    launch([sys.executable, str(RECIPE), *common, f"output_dir={tmp_path / 'one'}"], tmp_path)
    launch([torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()), str(RECIPE), *common,
            f"output_dir={tmp_path / 'two'}"], tmp_path)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert (one["processes"], two["processes"]) == (1, 2)
    for key in ("mcc", "auroc", "auprc", "loss", "accuracy"):
        assert two["test"][key] == pytest.approx(one["test"][key], abs=TOLERANCE), key
    for h1, h2 in zip(one["history"], two["history"]):
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], abs=TOLERANCE)


@pytest.mark.distributed
def test_accelerate_launch_runs_the_recipe(tiny_overrides, tmp_path):
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    launch([accelerate, "launch", "--config_file", str(REPO / "recipes" / "accelerate" / "cpu_single.yaml"),
            str(RECIPE), *tiny_overrides, "train.epochs=1"], tmp_path)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["processes"] == 1
