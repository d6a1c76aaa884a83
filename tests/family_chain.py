"""The whole chain for one backbone family on its Hub-shaped fixture: finetune -> predict -> evaluate -> merge ->
push --local-dir -> load_run of the merged and pushed folders.

Used by tests/test_backbone_families.py (assertions) and benchmarks/family_matrix.py (the table in
docs/families.md), so the table is written from exactly what the tests run.

    >>> result = run_chain("esm2", tmp_path)          # doctest: +SKIP
    >>> result.steps["merge"], result.max_prob_diff   # doctest: +SKIP
    ('ok', 1.2e-07)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from safetensors.torch import load_file

from gr_ft.adapters import total_parameter_count
from gr_ft.cli import main as cli_main
from gr_ft.recipes import finetune_lora
from gr_ft.predictor import load_run
from gr_ft.synthetic import write_task

from hub_fixtures import make_fixture

PROTEIN_FAMILIES = {"esm2", "esm1b", "protbert", "prott5"}
REMOTE_CODE_FAMILIES = {"dnabert2", "hyena", "caduceus"}
CHAIN_FAMILIES = ["esm2", "esm1b", "dnabert6", "dnabert2", "ntv1", "ntv2", "hyena", "protbert", "prott5"]
"""Families that run the chain on this CPU; caduceus needs mamba-ssm (CUDA) and gets its one-line error instead."""
PROBABILITY_TOLERANCE = 1e-4
"""Largest |difference| of class probabilities allowed between the adapter, merged and pushed folders (fp32)."""


@dataclass
class ChainResult:
    family: str
    method: str
    task: str
    steps: dict[str, str] = field(default_factory=dict)
    lora_targets: list[str] = field(default_factory=list)
    trainable_fraction: Optional[float] = None
    tokenizer_format: Optional[str] = None
    max_prob_diff: Optional[float] = None
    evaluate_matches_metrics: Optional[bool] = None
    seconds: float = 0.0


def _data(task: str, folder: Path) -> Path:
    if not folder.exists():
        write_task(task, folder, n_train=48, n_dev=16, n_test=16, seed=0)
    return folder


def _task_for(family: str, per_position: bool) -> str:
    if family in PROTEIN_FAMILIES:
        return "localization"
    return "splice_positions" if per_position else "promoter"


def _probabilities(run_dir: Path, sequences: list[str], trust: bool) -> pd.DataFrame:
    frame = load_run(run_dir, trust_remote_code=trust).predict(sequences)
    return frame[[c for c in frame.columns if c.startswith("prob_")]] if frame.shape[1] > 1 else frame


def _max_diff(a: pd.DataFrame, b: pd.DataFrame) -> float:
    if "prediction" in a.columns and a.shape[1] == 1:  # per-position strings: exact agreement or not
        return 0.0 if a["prediction"].tolist() == b["prediction"].tolist() else float("inf")
    return float((a.to_numpy() - b.to_numpy()).__abs__().max())


def _cli(args: list[str], trust: bool) -> int:
    return cli_main(args + (["--trust-remote-code"] if trust else []))


def run_chain(family: str, tmp: Path, method: str = "lora", per_position: bool = False) -> ChainResult:
    """Run every step for ``family``; raises on the first failure (the tests want the traceback)."""
    started = time.time()
    task = _task_for(family, per_position)
    result = ChainResult(family, method, task)
    trust = family in REMOTE_CODE_FAMILIES
    model_dir = make_fixture(family, tmp / f"model_{family}")
    data = _data(task, tmp / f"data_{task}")
    run_dir = tmp / f"run_{family}_{method}_{task}"
    overrides = [f"output_dir={run_dir}", f"data.path={data}", f"model.name_or_path={model_dir}",
                 "data.max_length=64", "train.epochs=1", "train.batch_size=16", "train.precision=fp32",
                 f"adapter.method={method}", f"model.trust_remote_code={'true' if trust else 'false'}"]
    if method == "full":
        overrides.append("train.lr=1e-4")
    finetune_lora.main(overrides)
    result.steps["finetune"] = "ok"
    metrics = json.loads((run_dir / "metrics.json").read_text())

    predictor = load_run(run_dir, trust_remote_code=trust)
    result.tokenizer_format = predictor.tokenizer.input_format
    total = total_parameter_count(predictor.model)
    adapter_config = run_dir / "adapter" / "adapter_config.json"
    if adapter_config.exists():
        result.lora_targets = sorted(json.loads(adapter_config.read_text())["target_modules"])
        adapter = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
        result.trainable_fraction = sum(t.numel() for t in adapter.values()) / total
    else:
        result.trainable_fraction = 1.0

    test_csv = data / "test.csv.gz"
    assert _cli(["predict", str(run_dir), "--input", str(test_csv), "--output", str(tmp / "pred.csv")], trust) == 0
    result.steps["predict"] = "ok"
    # training scored its test split on crops of data.max_length: evaluate with the same crops reproduces it ...
    assert _cli(["evaluate", str(run_dir), "--data", str(data), "--long", "crop", "--output",
                 str(tmp / "eval.json")], trust) == 0
    evaluated = json.loads((tmp / "eval.json").read_text())
    # ... and the default (sliding windows over sequences longer than data.max_length) runs as well
    assert _cli(["evaluate", str(run_dir), "--data", str(data), "--output", str(tmp / "eval_windows.json")],
                trust) == 0
    result.evaluate_matches_metrics = all(abs(evaluated[k] - v) <= 1e-6 for k, v in metrics["test"].items())
    result.steps["evaluate"] = "ok"

    sequences = pd.read_csv(test_csv)["sequence"].tolist()[:8]
    reference = _probabilities(run_dir, sequences, trust)
    diffs = []
    if method != "full":
        merged = tmp / f"merged_{family}"
        assert _cli(["merge", str(run_dir), str(merged)], trust) == 0
        diffs.append(_max_diff(reference, _probabilities(merged, sequences, trust)))
        result.steps["merge"] = "ok"
    pushed = tmp / f"pushed_{family}"
    assert cli_main(["push", str(run_dir), f"me/{family}-test", "--local-dir", str(pushed)]) == 0
    diffs.append(_max_diff(reference, _probabilities(pushed, sequences, trust)))
    result.steps["push"] = "ok"
    result.max_prob_diff = max(diffs)
    result.seconds = round(time.time() - started, 1)
    return result
