"""Local evaluate metrics (offline) and MetricAccumulator: known answers and parity with sklearn/scipy."""

import json
import logging
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    matthews_corrcoef,
    mean_squared_error,
    roc_auc_score,
)

from gr_ft.evaluation import (
    METRIC_SCRIPTS,
    PRIMARY_METRIC,
    PROBLEM_TYPES,
    MetricAccumulator,
    load_metric,
    metric_direction,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"f1": [None, "multilabel"], "roc_auc": [None, "multiclass", "multilabel"],
           "pr_auc": [None, "multiclass", "multilabel"]}


def _refuse_network(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args[1:]!r}")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test here runs offline: HF offline flags set and sockets refuse to connect."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", _refuse_network)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse_network)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse_network)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ---- loading -------------------------------------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import socket, sys, time
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    socket.socket.connect = socket.socket.connect_ex = socket.getaddrinfo = refuse
    from gr_ft.evaluation import METRIC_SCRIPTS, load_metric
    for name in METRIC_SCRIPTS:
        start = time.perf_counter()
        metric = load_metric(name)
        print(name, round(time.perf_counter() - start, 3), file=sys.stderr)
    for _ in range(20):  # many computes at once in both processes: must not collide on cache files
        assert load_metric("mcc").compute(predictions=[0, 1, 1], references=[0, 1, 1]) == {"mcc": 1.0}
        assert load_metric("roc_auc").compute(prediction_scores=[0.1, 0.9], references=[0, 1]) == {"roc_auc": 1.0}
    print("ok")
    """
)


@pytest.mark.slow  # several fresh Python processes (about a minute on a loaded 2-core machine)
def test_fresh_processes_load_and_compute_offline_concurrently(tmp_path):
    """Two new processes with empty evaluate caches, sockets disabled, load every metric at once."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_METRICS_CACHE": str(tmp_path / "metrics")}
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        assert out.strip() == "ok"
    assert not list((tmp_path / "metrics").rglob("*.arrow"))  # kept in memory: no shared cache files


@pytest.mark.parametrize("name", sorted(METRIC_SCRIPTS))
def test_each_metric_loads_offline_with_info(name):
    load_metric.cache_clear()
    for config_name in CONFIGS.get(name, [None]):
        metric = load_metric(config_name=config_name, name=name)
        assert metric.description.strip() and metric.citation.strip()
        assert metric.features is not None
        assert load_metric(config_name=config_name, name=name) is metric  # cached per process


def test_metric_folders_are_plain_script_folders():
    for name, script in METRIC_SCRIPTS.items():
        assert script.is_file() and script.parent.name == name
        assert not (script.parent / "__init__.py").exists()
    assert not (script.parent.parent / "__init__.py").exists()  # package data, not a package


def test_unknown_metric_or_config_lists_choices():
    with pytest.raises(ValueError, match="choose one of .*'mcc'"):
        load_metric("auc")
    with pytest.raises(ValueError, match="choose one of .*'multiclass'"):
        load_metric("roc_auc", "ovo")


# ---- metric modules: known answers -------------------------------------------------------


def test_mcc_perfect_and_reversed():
    assert load_metric("mcc").compute(predictions=[0, 1, 1, 0], references=[0, 1, 1, 0])["mcc"] == 1.0
    assert load_metric("mcc").compute(predictions=[1, 0, 0, 1], references=[0, 1, 1, 0])["mcc"] == -1.0


def test_hand_computed_classification_examples():
    preds, refs = [0, 1, 1, 0], [0, 1, 0, 0]
    assert load_metric("accuracy").compute(predictions=preds, references=refs)["accuracy"] == 0.75
    # class 0: P=1, R=2/3 -> F1=0.8; class 1: P=1/2, R=1 -> F1=2/3
    f1 = load_metric("f1").compute(predictions=preds, references=refs)["f1"]
    assert f1 == pytest.approx((0.8 + 2 / 3) / 2)
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    # positive/negative pairs ranked correctly: 0.35>0.1, 0.8>0.4, 0.8>0.1 -> 3 of 4
    assert load_metric("roc_auc").compute(prediction_scores=scores, references=labels)["roc_auc"] == 0.75
    # ranked: 0.8(+) 0.4(-) 0.35(+) 0.1(-): AP = 0.5 * 1 + 0.5 * 2/3
    auprc = load_metric("pr_auc").compute(prediction_scores=scores, references=labels)["pr_auc"]
    assert auprc == pytest.approx(5 / 6)


def test_hand_computed_regression_examples():
    pearson = load_metric("pearson").compute(predictions=[1.0, 2.0, 3.0], references=[2.0, 4.0, 6.0])
    assert pearson["pearson"] == pytest.approx(1.0)
    spearman = load_metric("spearman").compute(predictions=[1.0, 2.0, 30.0], references=[3.0, 2.0, 1.0])
    assert spearman["spearman"] == -1.0
    # float64 end to end: 4/3 exactly, not float32's 1.3333333730697632
    mse = load_metric("mse").compute(predictions=[1.0, 2.0, 3.0], references=[1.0, 2.0, 5.0])
    assert mse["mse"] == 4 / 3


def test_single_class_gives_nan_and_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="gr_ft.metrics"):
        auroc = load_metric("roc_auc").compute(prediction_scores=[0.2, 0.7, 0.9], references=[1, 1, 1])
        auprc = load_metric("pr_auc").compute(prediction_scores=[0.2, 0.7, 0.9], references=[0, 0, 0])
    assert math.isnan(auroc["roc_auc"]) and math.isnan(auprc["pr_auc"])
    assert "single class" in caplog.text and "no positive" in caplog.text


def test_multiclass_auc_skips_absent_class(caplog):
    probs = [[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1]]
    with caplog.at_level(logging.WARNING, logger="gr_ft.metrics"):
        auroc = load_metric("roc_auc", "multiclass").compute(prediction_scores=probs, references=[0, 1, 0, 1])
    assert auroc["roc_auc"] == 1.0  # classes 0 and 1 separate perfectly; class 2 never occurs
    assert "[2]" in caplog.text


# ---- metric modules: parity with scikit-learn / scipy on random data ----------------------


def test_label_metrics_match_sklearn(rng):
    preds, refs = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    inputs = {"predictions": preds, "references": refs}
    assert load_metric("accuracy").compute(**inputs)["accuracy"] == pytest.approx(accuracy_score(refs, preds))
    assert load_metric("mcc").compute(**inputs)["mcc"] == pytest.approx(matthews_corrcoef(refs, preds))
    for average in ("macro", "micro", "weighted"):
        expected = f1_score(refs, preds, average=average)
        assert load_metric("f1").compute(**inputs, average=average)["f1"] == pytest.approx(expected)


def test_ranking_metrics_match_sklearn(rng):
    labels = rng.integers(0, 3, 300)
    probs = rng.dirichlet(np.ones(3), 300).astype(np.float32) + np.eye(3, dtype=np.float32)[labels] * 0.3
    probs /= probs.sum(axis=1, keepdims=True)
    onehot = np.eye(3)[labels]
    got = load_metric("roc_auc", "multiclass").compute(prediction_scores=probs, references=labels)["roc_auc"]
    assert got == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    got = load_metric("pr_auc", "multiclass").compute(prediction_scores=probs, references=labels)["pr_auc"]
    assert got == pytest.approx(average_precision_score(onehot, probs, average="macro"))
    binary = (labels == 0).astype(int)
    got = load_metric("roc_auc").compute(prediction_scores=probs[:, 0], references=binary)["roc_auc"]
    assert got == pytest.approx(roc_auc_score(binary, probs[:, 0]))
    got = load_metric("pr_auc").compute(prediction_scores=probs[:, 0], references=binary)["pr_auc"]
    assert got == pytest.approx(average_precision_score(binary, probs[:, 0]))


def test_multilabel_metrics_match_sklearn(rng):
    labels = rng.integers(0, 2, (200, 4))
    scores = np.clip(labels * 0.3 + rng.random((200, 4)) * 0.7, 0, 1).astype(np.float32)
    preds = (scores > 0.5).astype(int)
    rows = {"prediction_scores": scores, "references": labels}
    assert load_metric("roc_auc", "multilabel").compute(**rows)["roc_auc"] == pytest.approx(
        roc_auc_score(labels, scores, average="macro"))
    assert load_metric("pr_auc", "multilabel").compute(**rows)["pr_auc"] == pytest.approx(
        average_precision_score(labels, scores, average="macro"))
    for average in ("macro", "micro"):
        got = load_metric("f1", "multilabel").compute(predictions=preds, references=labels, average=average)["f1"]
        assert got == pytest.approx(f1_score(labels, preds, average=average))


def test_regression_metrics_match_scipy(rng):
    refs = rng.normal(size=300)
    preds = refs + rng.normal(scale=0.5, size=300)
    inputs = {"predictions": preds, "references": refs}
    expected = pearsonr(preds, refs)[0]
    assert load_metric("pearson").compute(**inputs)["pearson"] == pytest.approx(expected, rel=1e-12)
    assert load_metric("spearman").compute(**inputs)["spearman"] == pytest.approx(spearmanr(preds, refs)[0])
    assert load_metric("mse").compute(**inputs)["mse"] == pytest.approx(mean_squared_error(refs, preds), rel=1e-12)


# ---- MetricAccumulator ---------------------------------------------------------------------


def _random_batch(problem_type, num_labels, generator, batch=16, length=12):
    """Random (logits, labels) of the shapes each problem type expects."""
    if problem_type == "regression":
        target = torch.randn(batch, generator=generator)
        return (target + torch.randn(batch, generator=generator)).unsqueeze(1), target
    if problem_type == "multilabel":
        labels = torch.randint(0, 2, (batch, num_labels), generator=generator)
        return torch.randn(batch, num_labels, generator=generator) + labels, labels
    if problem_type == "token_classification":
        labels = torch.randint(0, num_labels, (batch, length), generator=generator)
        labels[:, -3:] = -100  # padding
        return torch.randn(batch, length, num_labels, generator=generator), labels
    labels = torch.randint(0, num_labels, (batch,), generator=generator)
    return torch.randn(batch, num_labels, generator=generator) + 2 * torch.nn.functional.one_hot(labels), labels


NUM_LABELS = {"binary": 2, "multiclass": 4, "multilabel": 3, "regression": 1, "token_classification": 3}
EXPECTED_KEYS = {
    "binary": {"accuracy", "f1", "mcc", "auroc", "auprc", "n"},
    "multiclass": {"accuracy", "macro_f1", "mcc", "auroc", "auprc", "n"},
    "token_classification": {"accuracy", "macro_f1", "mcc", "auroc", "auprc", "n"},
    "multilabel": {"macro_f1", "micro_f1", "auroc", "auprc", "n"},
    "regression": {"pearson", "spearman", "mse", "n"},
}


@pytest.mark.parametrize("problem_type", PROBLEM_TYPES)
def test_batches_equal_one_shot(problem_type):
    generator = torch.Generator().manual_seed(0)
    num_labels = NUM_LABELS[problem_type]
    batches = [_random_batch(problem_type, num_labels, generator) for _ in range(4)]
    batched, one_shot = MetricAccumulator(problem_type, num_labels), MetricAccumulator(problem_type, num_labels)
    for logits, labels in batches:
        batched.add_batch(logits, labels)
    one_shot.add_batch(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    result = batched.compute()
    assert result == pytest.approx(one_shot.compute())
    assert set(result) == EXPECTED_KEYS[problem_type] and PRIMARY_METRIC[problem_type] in result
    assert all(type(value) is float for value in result.values())
    json.dumps(result)


def test_binary_matches_sklearn():
    generator = torch.Generator().manual_seed(1)
    logits, labels = _random_batch("binary", 2, generator, batch=64)
    acc = MetricAccumulator("binary", 2)
    acc.add_batch(logits, labels)
    result = acc.compute()
    preds, positive = logits.argmax(1).numpy(), torch.softmax(logits, 1)[:, 1].numpy()
    assert result["f1"] == pytest.approx(f1_score(labels, preds, average="macro"))
    assert result["mcc"] == pytest.approx(matthews_corrcoef(labels, preds))
    assert result["auroc"] == pytest.approx(roc_auc_score(labels, positive))
    assert result["auprc"] == pytest.approx(average_precision_score(labels, positive))
    assert result["n"] == 64.0


def test_token_classification_ignores_padding_positions():
    # valid positions are predicted perfectly; the -100 positions are confidently "wrong"
    logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0], [0.0, 9.0], [0.0, 9.0]],
                           [[0.0, 5.0], [5.0, 0.0], [9.0, 0.0], [0.0, 9.0]]])
    labels = torch.tensor([[0, 1, -100, -100], [1, 0, -100, -100]])
    acc = MetricAccumulator("token_classification", 2)
    acc.add_batch(logits, labels)
    result = acc.compute()
    assert result["n"] == 4.0
    assert result["accuracy"] == 1.0 and result["mcc"] == 1.0 and result["macro_f1"] == 1.0
    assert result["auroc"] == 1.0 and result["auprc"] == 1.0


def test_multiclass_auroc_hand_example():
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.3, 0.4, 0.3], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    acc = MetricAccumulator("multiclass", 3)
    acc.add_batch(probs.log(), torch.tensor([0, 1, 2, 2]))  # softmax(log p) = p
    # one-vs-rest: class 0 -> 1; class 1 -> 0.4 beats 2 of 3 negatives = 2/3;
    # class 2 -> pairs (0.3>0.1, 0.3=0.3 counts 1/2, 0.8>0.1, 0.8>0.3) = 3.5/4
    assert acc.compute()["auroc"] == pytest.approx((1 + 2 / 3 + 0.875) / 3, abs=1e-6)


def test_single_class_accumulator_gives_nan_not_crash():
    acc = MetricAccumulator("binary", 2)
    acc.add_batch(torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.2, 0.3]]), torch.tensor([1, 1, 1]))
    result = acc.compute()
    assert math.isnan(result["auroc"]) and result["n"] == 3.0
    assert "NaN" in json.dumps(result)


def test_bf16_logits_and_single_logit_binary():
    generator = torch.Generator().manual_seed(2)
    logits, labels = _random_batch("multiclass", 4, generator, batch=32)
    full, half = MetricAccumulator("multiclass", 4), MetricAccumulator("multiclass", 4)
    full.add_batch(logits.bfloat16().float(), labels)
    half.add_batch(logits.bfloat16(), labels)
    assert half.compute() == pytest.approx(full.compute())
    one_logit = MetricAccumulator("binary", 1)
    one_logit.add_batch(torch.tensor([[-2.0], [3.0], [1.0]]), torch.tensor([0, 1, 1]))
    assert one_logit.compute()["mcc"] == 1.0


def test_accumulator_keeps_only_small_arrays():
    acc = MetricAccumulator("token_classification", 3)
    labels = torch.full((2, 50), -100)
    labels[:, :5] = 1
    acc.add_batch(torch.randn(2, 50, 3, dtype=torch.bfloat16), labels)
    assert len(acc) == 10
    assert all(part.dtype in (np.float32, np.int32) for parts in acc._parts.values() for part in parts)
    acc.reset()
    with pytest.raises(ValueError, match="add_batch"):
        acc.compute()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="choose one of .*'regression'"):
        MetricAccumulator("ranking", 2)
    with pytest.raises(ValueError, match="num_labels"):
        MetricAccumulator("binary", 3)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        MetricAccumulator("binary", 2).add_batch(torch.zeros(2, 2), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="shape"):
        MetricAccumulator("multiclass", 3).add_batch(torch.zeros(2, 4), torch.tensor([0, 1]))


def test_metric_direction():
    assert {metric_direction(PRIMARY_METRIC[p]) for p in PROBLEM_TYPES} == {"max"}
    assert metric_direction("mse") == "min" and metric_direction("eval_loss") == "min"
    with pytest.raises(ValueError, match="choose one of"):
        metric_direction("bleu")
