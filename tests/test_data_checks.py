"""gr-ft check-data on planted cases: copied rows, reverse-complement copies, near copies, a GC shortcut,
label conflicts and protein identity overlap are each found; a clean synthetic set passes."""

import json

import numpy as np
import pandas as pd
import pytest

from gr_ft import synthetic
from gr_ft.cli import main as cli_main
from gr_ft.config import FinetuneConfig, load_config
from gr_ft.data_checks import (
    CheckConfig,
    check_splits,
    failed_rules,
    finetune_data_checks,
    parse_fail_on,
    reverse_complement,
    shortcut_features,
)
from gr_ft.recipes import finetune_lora

STRICT_RULES = ["exact-dup>0", "near-dup>0", "within-dup>0", "label-conflict>0", "shortcut-auroc>0.7"]


def clean_splits(task: str = "cell_type", sizes=(600, 200, 200)) -> dict[str, pd.DataFrame]:
    """Synthetic splits with no overlap, conflict or shortcut (cell_type: motifs on a matched background)."""
    frames = {}
    for offset, (name, n) in enumerate(zip(("train", "dev", "test"), sizes)):
        frame = synthetic.make_task(task, n, seed=100 + offset)
        frames[name] = frame[["sequence", "label"]].astype({"label": str}).reset_index(drop=True)
    return frames


def mutate(sequence: str, n: int, rng: np.random.Generator, letters: str = "ACGT") -> str:
    chars = list(sequence)
    for position in rng.choice(len(chars), size=n, replace=False):
        chars[position] = next(c for c in rng.permutation(list(letters)) if c != chars[position])
    return "".join(chars)


def replace_rows(frame: pd.DataFrame, rows: list[int], sequences: list[str], labels=None) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[rows, "sequence"] = sequences
    if labels is not None:
        frame.loc[rows, "label"] = labels
    return frame


def write_folder(frames: dict[str, pd.DataFrame], folder) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_csv(folder / f"{name}.csv.gz", index=False)
    return str(folder)


def test_reverse_complement_and_features_known_answers():
    assert reverse_complement("AACGTN") == "NACGTT"
    features = shortcut_features(["GGCA", "ATAT"], "dna")
    assert features["gc_content"].ravel().tolist() == [0.75, 0.0]
    # overlapping di-nucleotides: AAA has two AA windows, so AA gets all the mass
    di = shortcut_features(["AAA"], "dna")["dinucleotide"]
    assert di[0, 0] == 1.0 and di.sum() == 1.0


def test_clean_synthetic_set_passes():
    report = check_splits(clean_splits(), CheckConfig("dna"))
    assert report["summary"]["exact-dup"] == 0 and report["summary"]["near-dup"] == 0
    assert report["label_conflicts"]["all_splits"] == 0
    assert report["summary"]["shortcut-auroc"] < 0.7
    assert failed_rules(report["summary"], parse_fail_on(STRICT_RULES)) == []
    assert report["warnings"] == []


def test_copied_reverse_complemented_and_near_copies_are_found_separately():
    frames = clean_splits()
    rng = np.random.default_rng(0)
    train = frames["train"]["sequence"]
    copied = train[:20].tolist()
    revcomp = [reverse_complement(s) for s in train[20:35]]
    near_rc = [reverse_complement(mutate(s, 2, rng)) for s in train[35:45]]  # 2 substitutions in 200 bp, other strand
    frames["test"] = replace_rows(frames["test"], list(range(45)), copied + revcomp + near_rc)
    report = check_splits(frames, CheckConfig("dna"))
    test = report["overlap"]["train-test"]
    assert (test["exact_rows"], test["revcomp_rows"], test["near_rows"], test["leaked_rows"]) == (20, 15, 10, 45)
    assert report["overlap"]["train-dev"]["leaked_rows"] == 0
    assert report["summary"]["exact-dup"] == pytest.approx(35 / 200)
    assert report["summary"]["near-dup"] == pytest.approx(45 / 200)
    assert failed_rules(report["summary"], parse_fail_on(["near-dup>0.2"])) == ["near-dup = 0.225 > 0.2"]
    assert failed_rules(report["summary"], parse_fail_on(["near-dup>0.25"])) == []


def test_protein_set_has_no_reverse_complement_but_identity_overlap():
    frames = clean_splits("localization", (300, 100, 100))
    rng = np.random.default_rng(1)
    train = frames["train"]["sequence"]
    letters = "ACDEFGHIKLMNPQRSTVWY"
    # ~10% substitutions: identity ~0.9, well above 0.7, but 3-mer Jaccard well below the 0.8 near-duplicate bar
    similar = [mutate(s, len(s) // 10, rng, letters) for s in train[:12]]
    frames["test"] = replace_rows(frames["test"], list(range(12)), similar)
    report = check_splits(frames, CheckConfig("protein", identity=0.7))
    test = report["overlap"]["train-test"]
    assert test["revcomp_rows"] == 0 and test["exact_rows"] == 0
    assert test["identity_rows"] == 12
    assert report["overlap"]["train-dev"]["identity_rows"] == 0
    assert report["summary"]["identity-overlap"] == pytest.approx(12 / 100)


def gc_enriched(sequence: str, rng: np.random.Generator) -> str:
    return "".join(rng.choice(["G", "C"]) if c in "AT" and rng.random() < 0.3 else c for c in sequence)


def test_gc_shortcut_is_found_and_named():
    frames = clean_splits()
    rng = np.random.default_rng(2)
    for name, frame in frames.items():
        positive = frame["label"] == "1"
        frame.loc[positive, "sequence"] = [gc_enriched(s, rng) for s in frame.loc[positive, "sequence"]]
    report = check_splits(frames, CheckConfig("dna"))
    features = report["shortcuts"]["features"]
    assert features["gc_content"]["auroc"] > 0.95
    assert features["length"]["auroc"] == 0.5  # every window is 200 bp: no length signal
    assert any(w.startswith("shortcut-auroc") for w in report["warnings"])
    assert failed_rules(report["summary"], parse_fail_on(["shortcut-auroc>0.8"]))


def test_label_conflicts_within_and_across_splits():
    frames = clean_splits()
    train = frames["train"]
    flipped = {"0": "1", "1": "0"}
    # row 1 of train repeats row 0's sequence with the other label; test row 0 repeats train row 5 flipped
    frames["train"] = replace_rows(train, [1], [train.loc[0, "sequence"]], [flipped[train.loc[0, "label"]]])
    frames["test"] = replace_rows(frames["test"], [0], [train.loc[5, "sequence"]], [flipped[train.loc[5, "label"]]])
    report = check_splits(frames, CheckConfig("dna"))
    conflicts = report["label_conflicts"]
    assert conflicts["within"] == {"train": 1, "dev": 0, "test": 0}
    assert conflicts["all_splits"] == 2
    assert report["splits"]["train"]["duplicate_rows"] == 1
    assert report["summary"]["label-conflict"] > 0


def test_cli_exit_codes_text_and_json(tmp_path, capsys):
    clean = write_folder(clean_splits(), tmp_path / "clean")
    rules = [arg for rule in STRICT_RULES for arg in ("--fail-on", rule)]
    assert cli_main(["check-data", clean, "--json", str(tmp_path / "clean.json"), *rules]) == 0
    out = capsys.readouterr().out
    assert "shortcuts:" in out and "warning at >= 0.7" in out and "no warnings" in out
    saved = json.loads((tmp_path / "clean.json").read_text())
    assert saved["summary"]["near-dup"] == 0 and saved["config"]["alphabet"] == "dna"

    frames = clean_splits()
    frames["dev"] = replace_rows(frames["dev"], [0, 1], frames["train"]["sequence"][:2].tolist())
    leaky = write_folder(frames, tmp_path / "leaky")
    assert cli_main(["check-data", leaky, *rules]) == 1
    assert "FAIL exact-dup = 0.01 > 0" in capsys.readouterr().out

    assert cli_main(["check-data", clean, "--fail-on", "gc>0.5"]) == 2
    assert "unknown check 'gc'" in capsys.readouterr().err
    assert cli_main(["check-data", str(tmp_path / "missing")]) == 2


def test_finetune_stores_the_checks_in_metrics(tiny_overrides, tmp_path):
    metrics = finetune_lora.main(tiny_overrides + ["train.epochs=1"])
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["data_checks"] == metrics["data_checks"]
    assert set(saved["data_checks"]["summary"]) >= {"near-dup", "shortcut-auroc", "label-conflict"}
    assert saved["data_checks"]["splits"]["train"]["rows"] == 192
    off = load_config(FinetuneConfig, None, tiny_overrides + ["data.check=false"])
    assert finetune_data_checks(off, tokenizer=None) is None


def test_max_train_rows_caps_train_only():
    from gr_ft.data import load_splits

    cfg = load_config(FinetuneConfig, None, ["data.synthetic_size=200", "data.max_train_rows=50"])
    splits = load_splits(cfg.data, "dna", seed=0)
    assert [len(splits[n].frame) for n in ("train", "dev", "test")] == [50, 50, 50]
    again = load_splits(cfg.data, "dna", seed=0)["train"].frame
    assert again["sequence"].tolist() == splits["train"].frame["sequence"].tolist()  # seeded sample
    with pytest.raises(ValueError, match="data.max_train_rows must be > 0"):
        load_config(FinetuneConfig, None, ["data.max_train_rows=0"])


def test_regression_labels_report_mean_and_skip_shortcuts():
    frames = clean_splits()
    rng = np.random.default_rng(4)
    for frame in frames.values():
        frame["label"] = [f"{v:.3f}" for v in rng.normal(2.0, 0.5, len(frame))]
    report = check_splits(frames, CheckConfig("dna"))
    assert report["problem_type"] == "regression"
    assert "skipped" in report["shortcuts"] and report["summary"]["shortcut-auroc"] is None
    assert report["splits"]["train"]["labels"]["mean"] == pytest.approx(2.0, abs=0.1)
