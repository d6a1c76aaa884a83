"""Baselines learn planted signals, are reproducible, and report the fine-tuning path's metric names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import shared_data
from gr_ft.baselines import (
    BASELINES,
    BaselineConfig,
    CnnConfig,
    KmerConfig,
    SequenceCNN,
    one_hot_table,
    run_baseline,
    symbol_ids,
)
from gr_ft.config import load_config
from gr_ft.data import LabeledSplit
from gr_ft.labels import LabelSpec, infer_label_spec
from gr_ft.synthetic import make_task

LM_METRICS = {"accuracy", "f1", "mcc", "auroc", "auprc", "n", "loss"}  # MetricAccumulator (binary) + loss


def synthetic_splits(task: str, n_train: int, seed: int = 0, **kwargs) -> dict[str, LabeledSplit]:
    splits = {}
    for offset, (name, n) in enumerate({"train": n_train, "dev": n_train // 3, "test": n_train // 3}.items()):
        frame = make_task(task, n, seed=100 * seed + offset, **kwargs)
        frame["label"] = frame["label"].astype(str)
        frame["_line"] = range(2, len(frame) + 2)
        splits[name] = LabeledSplit(frame, f"synthetic:{task}[{name}]")
    return splits


@pytest.fixture(scope="module")
def promoter():
    splits = synthetic_splits("promoter", 360)
    return splits, infer_label_spec(splits["train"].frame["label"])


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: faster on a shared 2-core machine and bitwise reproducible."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_CNN = CnnConfig(channels=16, hidden_size=16, first_kernel_size=9, epochs=8, patience=0, batch_size=32, lr=1e-2,
                     dropout=0.1)


def test_kmer_logreg_learns_promoters(promoter):
    splits, spec = promoter
    result = run_baseline("kmer_logreg", splits, spec, BaselineConfig(kmer=KmerConfig(c_grid=(0.3, 3.0))), seed=0)
    assert set(result["test"]) == LM_METRICS and set(result["dev"]) == LM_METRICS
    assert result["test"]["mcc"] > 0.3 and result["test"]["auroc"] > 0.75
    assert result["selected"]["C"] in (0.3, 3.0) and result["num_parameters"] == result["selected"]["features"] + 1
    assert result["dev_mcc"] == result["dev"]["mcc"] and result["wall_time_s"] >= 0


def test_cnn_learns_promoters_and_is_reproducible(promoter):
    splits, spec = promoter
    cfg = BaselineConfig(cnn=TINY_CNN)
    first = run_baseline("cnn", splits, spec, cfg, seed=0)
    assert set(first["test"]) == LM_METRICS
    assert first["test"]["mcc"] > 0.3 and first["test"]["auroc"] > 0.75
    assert first["best_epoch"] >= 1 and len(first["history"]) == TINY_CNN.epochs
    again = run_baseline("cnn", splits, spec, cfg, seed=0)
    assert again["test"] == first["test"] and again["history"] == first["history"]
    other = run_baseline("cnn", splits, spec, cfg, seed=1)
    assert other["history"] != first["history"]


def test_kmer_logreg_multiclass_splice():
    splits = synthetic_splits("splice", 240, length_bp=120)
    spec = infer_label_spec(splits["train"].frame["label"])
    assert spec.problem_type == "multiclass"
    cfg = BaselineConfig(kmer=KmerConfig(k_max=4, c_grid=(1.0,)))
    result = run_baseline("kmer_logreg", splits, spec, cfg, seed=0)
    assert result["test"]["mcc"] > 0.3 and "macro_f1" in result["test"]


def test_cnn_on_imbalanced_protein_windows_with_class_weights():
    splits = synthetic_splits("ptm", 300, positive_fraction=0.2)
    spec = infer_label_spec(splits["train"].frame["label"])
    cnn = CnnConfig(channels=8, hidden_size=8, first_kernel_size=7, conv_layers=1, epochs=2, patience=0, batch_size=64)
    result = run_baseline("cnn", splits, spec, BaselineConfig(alphabet="protein", class_weighting="balanced", cnn=cnn))
    assert set(result["test"]) == LM_METRICS and result["test"]["n"] == 100


def test_one_hot_encodes_n_and_protein_ambiguity_codes():
    dna = one_hot_table("dna")[torch.from_numpy(symbol_ids(["ACGTN"], "dna", 10, "start")[0]).long()]
    assert dna.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0.25] * 4]
    protein = one_hot_table("protein")
    ids = symbol_ids(["XB"], "protein", 10, "start")[0]
    assert protein[ids[0]].tolist() == [0.0] * 20 + [1.0] and protein[ids[1]].sum() == 1.0
    with pytest.raises(ValueError, match="outside the dna alphabet"):
        symbol_ids(["ACGU"], "dna", 10, "start")


def test_cnn_ignores_padding():
    torch.manual_seed(0)
    model = SequenceCNN(one_hot_table("dna"), 2, CnnConfig(channels=4, hidden_size=4)).eval()
    ids = torch.tensor([[1, 2, 3, 4, 1, 2, 3]])
    padded = torch.cat([ids, torch.zeros(1, 9, dtype=torch.long)], dim=1)
    assert torch.allclose(model(ids, torch.tensor([7])), model(padded, torch.tensor([7])))


def test_errors_list_choices_and_name_flags(promoter):
    splits, spec = promoter
    with pytest.raises(ValueError, match=r"unknown baseline 'svm'; choose one of \['cnn', 'kmer_logreg'\]"):
        run_baseline("svm", splits, spec)
    with pytest.raises(ValueError, match="regression"):
        run_baseline("cnn", splits, LabelSpec("regression"))
    with pytest.raises(ValueError, match="cnn.first_kernel_size must be odd"):
        CnnConfig(first_kernel_size=8)
    with pytest.raises(ValueError, match="kmer.k_min"):
        KmerConfig(k_min=5, k_max=3)
    assert sorted(BASELINES) == ["cnn", "kmer_logreg"]


def test_config_loads_with_overrides():
    cfg = load_config(BaselineConfig, None, ["alphabet=protein", "cnn.epochs=3", "kmer.c_grid=0.5,2"])
    assert cfg.alphabet == "protein" and cfg.cnn.epochs == 3 and cfg.kmer.c_grid == (0.5, 2.0)
    assert cfg.kmer.k_range("protein") == (1, 3)


@pytest.mark.data
def test_kmer_logreg_on_gue_prom_core_all():
    from gr_ft.config import DataConfig
    from gr_ft.data import load_splits

    splits = load_splits(DataConfig(path=str(shared_data("promoter/gue_prom_core_all"))), "dna")
    spec = infer_label_spec(splits["train"].frame["label"])
    result = run_baseline("kmer_logreg", splits, spec, BaselineConfig(kmer=KmerConfig(c_grid=(3.0,))), seed=0)
    assert result["test"]["mcc"] > 0.55  # 0.59 measured (seed 0, C grid 0.1-10)


def test_balanced_class_weights_are_sklearns_and_cover_absent_classes():
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    from gr_ft.data import balanced_class_weights

    labels = np.array([0, 0, 0, 1, 2, 2])
    assert np.allclose(balanced_class_weights(labels, 3), compute_class_weight("balanced", classes=np.arange(3), y=labels))
    weights = balanced_class_weights(np.array([0, 0, 0, 2]), 4)  # classes 1 and 3 never seen: weighted as one row
    assert np.allclose(weights, [4 / 12, 1, 1, 1])
