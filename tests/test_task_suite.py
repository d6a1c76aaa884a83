"""The task suite (benchmarks/task_suite.py): runs, records, resumes, aggregates and judges correctly.

Tiny synthetic tasks stand in for the real data; one `data` test checks that every task config (and every
suite task) points at an existing ../shared/data folder.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, load_benchmark, shared_data

sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmark harness lives with the benchmarks, not in gr_ft
from harness import (  # noqa: E402
    ResultsFile,
    aggregate_runs,
    call_outcome,
    cap_rows,
    compare_to_baselines,
    format_mean_sd,
    mean_sd,
)
from gr_ft.config import ModelConfig
from gr_ft.modeling import FRESH_DROPOUT, build_backbone
from gr_ft.synthetic import write_task
from gr_ft.tokenization import SequenceTokenizer


def _load_suite():
    return load_benchmark("task_suite")


suite = _load_suite()

TINY_LM = (
    "data.max_length=64", "model.tokenizer=kmer3", "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
    "model.intermediate_size=64", "train.batch_size=32", "train.eval_batch_size=64", "train.precision=fp32",
)
TINY_BUDGET = suite.SuiteBudget(max_train_rows=120, max_eval_rows=60, epochs=1, cnn_epochs=1)
MODELS = ["kmer_logreg", "lm_lora"]
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def synthetic_task(tmp_path_factory) -> "suite.SuiteTask":
    folder = write_task("promoter", tmp_path_factory.mktemp("data") / "promoter", n_train=200, n_dev=80, n_test=80)
    return suite.SuiteTask("syn_promoter", suite.CONFIGS / "demo.yaml", "mcc", suite.BINARY, data=str(folder),
                           overrides=TINY_LM)


@pytest.fixture(scope="module")
def finished(synthetic_task, tmp_path_factory):
    """The suite run once: 1 task x 2 models x 2 seeds, then the report written."""
    out = tmp_path_factory.mktemp("suite")
    store = suite.run_suite([synthetic_task], MODELS, SEEDS, TINY_BUDGET, out / "results.json", work_dir=out / "work",
                            command="test")
    suite.write_report(store, [synthetic_task], out / "benchmarks.md", out / "benchmarks.png")
    return out, store


def test_suite_records_every_run_and_writes_the_report(finished):
    out, store = finished
    saved = json.loads((out / "results.json").read_text())
    assert saved["budget"]["max_train_rows"] == 120
    keys = sorted((r["model"], r["seed"], r["status"]) for r in saved["runs"])
    assert keys == [("kmer_logreg", 0, "ok"), ("kmer_logreg", 1, "ok"), ("lm_lora", 0, "ok"), ("lm_lora", 1, "ok")]
    assert all({"mcc", "auroc", "auprc"} <= set(r["test"]) and r["wall_time_s"] >= 0 for r in saved["runs"])
    task = saved["tasks"]["syn_promoter"]
    assert task["leakage_used"]["rows"] == {"train": 120, "dev": 60, "test": 60}  # the caps were applied
    assert "train-test" in task["leakage_full"]
    doc = (out / "benchmarks.md").read_text()
    for expected in ("## Budget", "train capped at 120 rows", "### syn_promoter", "| kmer_logreg |", "| lm_lora |",
                     "## Where the LM wins, ties and loses", "## Train/test leakage", "benchmarks.png"):
        assert expected in doc
    assert (out / "benchmarks.png").stat().st_size > 1000


def test_rerun_skips_finished_runs_and_retries_failed_ones(finished, synthetic_task, monkeypatch):
    out, store = finished
    record = store.finished("syn_promoter", "kmer_logreg", 1)
    store.record({**record, "status": "failed", "error": "RuntimeError: injected", "test": {}})
    called = []

    def fake_runner(data, model, seed, *rest):
        called.append((model, seed))
        return {"test": record["test"]}

    for model in MODELS:
        monkeypatch.setitem(suite.RUNNERS, model, fake_runner)
    again = suite.run_suite([synthetic_task], MODELS, SEEDS, TINY_BUDGET, out / "results.json", work_dir=out / "work")
    assert called == [("kmer_logreg", 1)]  # only the failed run ran again
    assert len(again.runs) == 4 and all(r["status"] == "ok" for r in again.runs)


def test_a_different_budget_is_refused(finished, synthetic_task):
    out, _ = finished
    other = suite.SuiteBudget(max_train_rows=100, max_eval_rows=60, epochs=1, cnn_epochs=1)
    with pytest.raises(ValueError, match="another budget"):
        suite.run_suite([synthetic_task], MODELS, SEEDS, other, out / "results.json", work_dir=out / "work")


def test_same_seed_gives_the_same_numbers(finished, synthetic_task, tmp_path):
    out, store = finished
    data, _ = suite.prepare_task_data(synthetic_task, TINY_BUDGET, tmp_path)
    for model in MODELS:
        again = suite.run_one(data, model, 0, TINY_BUDGET, None, tmp_path)
        assert again["test"] == store.finished("syn_promoter", model, 0)["test"]


def test_pretrained_models_start_from_the_backbone_at_the_fresh_dropout(synthetic_task, tmp_path):
    """lm_pretrained(_full) differ from lm_lora/lm_full only in the initial weights (same dropout, same budget)."""
    tokenizer = SequenceTokenizer.from_pretrained("kmer3")
    folder = tmp_path / "pretrained"
    shape = ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, dropout=0.0)
    build_backbone(shape, tokenizer).save_pretrained(folder)  # saved at dropout 0, like gr-ft pretrain
    tokenizer.save_pretrained(folder)
    data, _ = suite.prepare_task_data(synthetic_task, TINY_BUDGET, tmp_path)
    for model, method in (("lm_pretrained", "lora"), ("lm_pretrained_full", "full")):
        record = suite.run_one(data, model, 0, TINY_BUDGET, str(folder), tmp_path)
        assert record["status"] == "ok", record.get("error")
        saved = yaml.safe_load((Path(record["run_dir"]) / "config.yaml").read_text())
        assert saved["model"]["name_or_path"] == str(folder) and saved["model"]["dropout"] == FRESH_DROPOUT
        assert saved["adapter"]["method"] == method


def _fake_run(task: str, model: str, seed: int, mcc: float, wall: float = 10.0) -> dict:
    return {"task": task, "model": model, "seed": seed, "status": "ok", "test": {"mcc": mcc, "auroc": 0.5},
            "wall_time_s": wall}


def test_mean_and_sd_over_seeds_known_answer(tmp_path):
    runs = [_fake_run("t", "cnn", s, v, w) for s, v, w in [(0, 0.5, 10), (1, 0.7, 20), (2, 0.9, 30)]]
    runs.append({**_fake_run("t", "cnn", 3, 0.0), "status": "failed", "error": "RuntimeError: boom"})  # not averaged
    stats = aggregate_runs(runs)[("t", "cnn")]
    assert stats["seeds"] == [0, 1, 2]
    assert stats["mcc"] == pytest.approx((0.7, 0.2))
    assert stats["wall_time_s"] == pytest.approx((20.0, 10.0))
    assert format_mean_sd([0.5, 0.7, 0.9]) == "0.700 ± 0.200"
    assert math.isnan(mean_sd([0.5])[1]) and format_mean_sd([0.5]) == "0.500 ± -"
    store = ResultsFile(tmp_path / "r.json", {"x": 1})
    for run in runs:
        store.record(run)
    task = suite.SuiteTask("t", suite.CONFIGS / "demo.yaml", "mcc", ("mcc",))
    table = "\n".join(suite.render_task_table(task, store, aggregate_runs(store.runs)))
    assert "| cnn | 0.700 ± 0.200 | 3 | 20.0 ± 10.0 |" in table and "FAILED: cnn seed 3" in table


def _record_runs(path: str, task: str, count: int) -> None:
    store = ResultsFile(path, {"x": 1})
    for seed in range(count):
        store.record(_fake_run(task, "cnn", seed, 0.5))
    store.set_task(task, {"source": task})


@pytest.mark.slow  # parallel suite processes (about a minute on a loaded 2-core machine)
def test_suite_processes_sharing_a_results_file_keep_every_record(tmp_path):
    path = str(tmp_path / "shared.json")
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_record_runs, args=(path, task, 25)) for task in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    store = ResultsFile.load(path)
    assert sorted((r["task"], r["seed"]) for r in store.runs) == [(t, s) for t in "ab" for s in range(25)]
    assert set(store.tasks) == {"a", "b"}
    stale = ResultsFile(path, {"x": 1})  # opened before another process adds a record: nothing is lost
    _record_runs(path, "c", 1)
    stale.record(_fake_run("a", "lm_lora", 0, 0.6))
    assert len(ResultsFile.load(path).runs) == 52


def test_win_tie_lose_on_a_hand_made_example():
    summary = {
        ("A", "lm_lora"): {"mcc": (0.80, 0.01)}, ("A", "kmer_logreg"): {"mcc": (0.70, 0.0)},
        ("A", "cnn"): {"mcc": (0.60, 0.05)},
        ("B", "lm_lora"): {"mcc": (0.62, 0.03)}, ("B", "kmer_logreg"): {"mcc": (0.60, 0.02)},
        ("C", "lm_lora"): {"mcc": (0.40, 0.02)}, ("C", "kmer_logreg"): {"mcc": (0.50, 0.0)},
        ("C", "cnn"): {"mcc": (0.55, 0.01)},
        ("D", "lm_lora"): {"mcc": (0.705, math.nan)}, ("D", "kmer_logreg"): {"mcc": (0.70, math.nan)},
    }
    got = {t: compare_to_baselines(summary, t, "lm_lora", ["kmer_logreg", "cnn"], "mcc") for t in "ABCD"}
    assert {t: (v.outcome, v.opponent) for t, v in got.items()} == {
        "A": ("wins", "kmer_logreg"),  # +0.10, margin 0.01
        "B": ("ties", "kmer_logreg"),  # +0.02 inside the seed noise sqrt(0.03² + 0.02²) = 0.036
        "C": ("loses", "cnn"),         # measured against the stronger baseline
        "D": ("ties", "kmer_logreg"),  # single seeds: the 0.01 floor applies
    }
    assert got["B"].margin == pytest.approx(math.hypot(0.03, 0.02))
    assert compare_to_baselines(summary, "A", "lm_full", ["kmer_logreg"], "mcc") is None
    assert call_outcome((0.2, 0.0), (0.5, 0.0), direction="min") == "wins"  # lower is better (loss, mse)
    text = "\n".join(suite.render_verdicts(list(got.values())))
    assert "wins on 1 (A); ties on 2 (B, D); loses on 1 (C)" in text


def test_pretrained_vs_random_init_table(tmp_path):
    store = ResultsFile(tmp_path / "r.json", {"x": 1})
    for seed, (scratch, pretrained) in enumerate([(0.40, 0.50), (0.42, 0.54), (0.44, 0.52)]):
        store.record(_fake_run("t", "lm_lora", seed, scratch))
        store.record({**_fake_run("t", "lm_pretrained", seed, pretrained), "backbone": str(tmp_path / "nowhere")})
        store.record(_fake_run("t", "lm_full", seed, 0.60 + seed / 100))
        store.record(_fake_run("t", "lm_pretrained_full", seed, 0.605 + seed / 100))
    task = suite.SuiteTask("t", suite.CONFIGS / "demo.yaml", "mcc", ("mcc",))
    text = "\n".join(suite.render_pretraining_effect(store, [task], aggregate_runs(store.runs)))
    assert "| t | MCC | LoRA | 0.420 ± 0.020 | 0.520 ± 0.020 | +0.100 | pretrained wins |" in text
    assert "| t | MCC | all weights | 0.610 ± 0.010 | 0.615 ± 0.010 | +0.005 | pretrained ties |" in text
    assert "wins on 1; ties on 1; loses on 0" in text and "no gr-ft pretraining record" in text


def test_cap_rows_is_seeded_stratified_and_keeps_row_order():
    frame = pd.DataFrame({"sequence": [f"S{i}" for i in range(100)], "label": [1] * 10 + [0] * 90})
    capped = cap_rows(frame, 20, seed=3)
    assert len(capped) == 20 and (capped["label"] == 1).sum() == 2
    assert capped.index.is_monotonic_increasing
    assert capped.equals(cap_rows(frame, 20, seed=3)) and not capped.equals(cap_rows(frame, 20, seed=4))
    assert cap_rows(frame, None, seed=0) is frame


def test_budget_and_model_flags():
    args = suite.parse_args(["--quick", "--max-train-rows", "0", "--epochs", "2"])
    budget = suite.budget_from_args(args)
    assert (budget.max_train_rows, budget.max_eval_rows, budget.epochs) == (None, 300, 2)
    assert suite.models_from_args(args) == ["kmer_logreg", "cnn", "lm_lora", "lm_full"]
    with_backbone = suite.parse_args(["--pretrained-dna", str(suite.CONFIGS)])  # any existing folder
    assert suite.models_from_args(with_backbone)[-2:] == ["lm_pretrained", "lm_pretrained_full"]
    assert suite.planned_models(suite.MODELS, "protein", {"dna": "x"}) == ["kmer_logreg", "cnn", "lm_lora", "lm_full"]
    with pytest.raises(ValueError, match="--pretrained-dna"):
        suite.models_from_args(suite.parse_args(["--models", "lm_pretrained"]))
    with pytest.raises(ValueError, match="--max-eval-rows"):
        suite.SuiteBudget(max_eval_rows=0)


def test_every_suite_task_has_a_loadable_config():
    for task in suite.TASKS.values():
        cfg = suite.task_config(task)
        assert task.headline in task.metrics, task.name
        assert task.data or not cfg.data.path.startswith("synthetic:"), task.name
    assert set(suite.PUBLISHED) <= set(suite.TASKS)


def _shared_paths_of(config: Path) -> list[str]:
    raw = yaml.safe_load(config.read_text()) or {}
    paths = [raw.get("data", {}).get("path")] + list(raw.get("corpus", {}).get("train_files") or [])
    return [p for p in paths if p and not p.startswith("synthetic:")]


@pytest.mark.data
def test_every_config_points_at_existing_shared_data():
    shared = shared_data("")  # skips when ../shared/data is absent
    configs = sorted((REPO / "recipes" / "configs").glob("*.yaml"))
    paths = {f"{c.name}: {p}": p for c in configs for p in _shared_paths_of(c)}
    paths.update({f"task_suite {t.name}: {t.data}": t.data for t in suite.TASKS.values() if t.data})
    assert len(paths) >= 8
    for where, path in paths.items():
        assert path.startswith("../shared/data/"), where
        assert (REPO / path).exists(), f"{where} does not exist under {shared}"
