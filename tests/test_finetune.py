"""The fine-tuning recipe end to end on tiny models: files written, reload, resume, bad input, CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gr_ft.cli import main as cli_main
from gr_ft.recipes import finetune_lora
from gr_ft.predictor import load_run

REPO = Path(__file__).resolve().parent.parent


def run_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_recipe_writes_a_run_folder_that_reloads(tiny_overrides, tmp_path):
    metrics = finetune_lora.main(tiny_overrides)
    out = tmp_path / "run"
    assert {"metrics.json", "config.yaml", "label_map.json", "base_model.json", "tokenizer", "adapter",
            "backbone"} <= run_files(out)
    assert "checkpoints" not in run_files(out) and ".staging" not in run_files(out)
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"]["mcc"] == pytest.approx(metrics["test"]["mcc"])
    assert {"accuracy", "f1", "mcc", "auroc", "auprc"} <= set(saved["test"])
    assert len(saved["history"]) == 2 and saved["best_epoch"] in (1, 2)

    predictor = load_run(out)
    sequences = ["ACGT" * 12, "TATAAAAGGCGC" * 4]
    first = predictor.predict(sequences)
    assert list(first.columns) == ["prediction", "prob_0", "prob_1"]
    again = load_run(out).predict(sequences)
    assert (first[["prob_0", "prob_1"]] - again[["prob_0", "prob_1"]]).abs().max().max() <= 1e-6


def test_training_progress_in_a_redirected_log_is_a_few_lines_not_one_per_step(tiny_overrides, monkeypatch):
    import io

    log = io.StringIO()  # not a terminal, like `gr-ft finetune ... 2> train.log`
    monkeypatch.setattr(sys, "stderr", log)
    finetune_lora.main(tiny_overrides + ["train.log_every_steps=1"])  # a loss postfix after every step
    lines = [line for line in log.getvalue().replace("\r", "\n").splitlines() if line.startswith("epoch ")]
    assert lines and len(lines) <= 2 * 3, lines  # opening and closing state per epoch (2 epochs, 5 steps each)


def test_existing_run_is_never_overwritten_silently(tiny_overrides, tmp_path):
    finetune_lora.main(tiny_overrides + ["train.epochs=1"])
    before = (tmp_path / "run" / "metrics.json").read_text()
    with pytest.raises(ValueError, match="already holds a finished run"):
        finetune_lora.main(tiny_overrides + ["train.epochs=1"])
    assert (tmp_path / "run" / "metrics.json").read_text() == before
    finetune_lora.main(tiny_overrides + ["train.epochs=1", "overwrite=true", "train.seed=3"])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["seed"] == 3


def test_interrupted_run_resumes_to_the_same_result(tiny_overrides, tmp_path, monkeypatch):
    reference = finetune_lora.main(tiny_overrides + [f"output_dir={tmp_path / 'ref'}", "train.epochs=3"])

    real_save = finetune_lora.save_checkpoint
    calls = {"n": 0}

    def crash_after_second_checkpoint(*args, **kwargs):
        real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(finetune_lora, "save_checkpoint", crash_after_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        finetune_lora.main(tiny_overrides + ["train.epochs=3"])
    assert (tmp_path / "run" / "checkpoints" / "last").is_dir()
    assert not (tmp_path / "run" / "metrics.json").exists()
    monkeypatch.setattr(finetune_lora, "save_checkpoint", real_save)
    resumed = finetune_lora.main(tiny_overrides + ["train.epochs=3"])
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    for key in ("mcc", "auroc", "loss"):
        assert resumed["test"][key] == pytest.approx(reference["test"][key], abs=1e-5), key


@pytest.mark.parametrize("override,message", [
    ("data.path=/no/such/file.csv", "does not exist"),
    ("model.name_or_path=/no/such/model", "does not exist"),
    ("model.name_or_path=nobody/no-such-model-gr-ft", "offline|could not load"),
    ("train.lr=-1", "train.lr must be > 0"),
    ("train.bogus=1", "unknown config key"),
])
def test_bad_input_fails_before_writing(tiny_overrides, tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        finetune_lora.main(tiny_overrides + [override])
    assert not (tmp_path / "run").exists()


def test_bad_records_name_file_and_line(tiny_overrides, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good = "\n".join(f"{'ACGT' * 5},{i % 2}" for i in range(20))
    (data / "train.csv").write_text(f"sequence,label\n{good}\n")
    (data / "dev.csv").write_text(f"sequence,label\n{good}\nACGTZ,1\n")
    (data / "test.csv").write_text(f"sequence,label\n{good}\nACGTA,7\n")
    base = tiny_overrides + [f"data.path={data}"]
    with pytest.raises(ValueError, match=r"dev.csv:22: invalid dna character\(s\) \['Z'\]"):
        finetune_lora.main(base)
    (data / "dev.csv").write_text(f"sequence,label\n{good}\n")
    with pytest.raises(ValueError, match=r"test.csv:22: unknown label '7'"):
        finetune_lora.main(base)
    assert not (tmp_path / "run").exists()


def test_cli_exit_codes_and_help(tiny_overrides, tmp_path, capsys):
    assert cli_main(["finetune"] + tiny_overrides + ["data.path=/nope.csv"]) == 2
    assert "error: data.path" in capsys.readouterr().err
    assert cli_main(["frobnicate"]) == 2
    for command in ("finetune", "pretrain", "evaluate", "predict", "tokenizer", "synthetic", "push", "merge"):
        with pytest.raises(SystemExit) as exit_info:
            cli_main([command, "--help"])
        assert exit_info.value.code == 0
        assert "examples:" in capsys.readouterr().out, command


def test_cli_evaluate_and_predict(tiny_overrides, tmp_path, capsys):
    assert cli_main(["finetune"] + tiny_overrides + ["train.epochs=1"]) == 0
    data = tmp_path / "synth"
    assert cli_main(["synthetic", "promoter", str(data), "--n-train", "40", "--n-dev", "20", "--n-test", "30"]) == 0
    capsys.readouterr()
    assert cli_main(["evaluate", str(tmp_path / "run"), "--data", str(data), "--output", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n"] == 30 and -1 <= metrics["mcc"] <= 1
    (tmp_path / "in.fa").write_text(">s1\n" + "ACGT" * 20 + "\n>s2\n" + "GGCA" * 20 + "\n")
    assert cli_main(["predict", str(tmp_path / "run"), "--input", str(tmp_path / "in.fa"),
                     "--output", str(tmp_path / "pred.csv")]) == 0
    lines = (tmp_path / "pred.csv").read_text().splitlines()
    assert lines[0] == "id,prediction,prob_0,prob_1" and lines[1].startswith("s1,") and len(lines) == 3
    (tmp_path / "bad.csv").write_text("sequence,label\nACGT,1\nACGT,unknown\n")
    assert cli_main(["evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "bad.csv")]) == 2
    assert "bad.csv:3: unknown label 'unknown'" in capsys.readouterr().err


@pytest.mark.parametrize("task,extra,metric", [
    ("splice", ["model.tokenizer=kmer3", "data.max_length=128"], "mcc"),            # 3 named classes
    ("splice_positions", ["model.tokenizer=nucleotide", "data.max_length=128", "data.crop=center"], "mcc"),
    ("ptm", ["model.tokenizer=protein", "model.arch=esm", "train.class_weighting=balanced"], "auprc"),
    ("localization", ["model.tokenizer=protein", "model.arch=esm", "data.crop=ends"], "mcc"),
])
def test_recipe_runs_every_problem_shape(tiny_overrides, tmp_path, task, extra, metric):
    metrics = finetune_lora.main(tiny_overrides + [f"data.path=synthetic:{task}", "train.epochs=1"] + extra)
    assert metric in metrics["test"] and metrics["test"]["n"] > 0
    predictor = load_run(tmp_path / "run")
    sequence = "ACGT" * 40 if "protein" not in " ".join(extra) else "MKKLLPTAAAGLLLLAAQPAMA" * 5
    prediction = predictor.predict([sequence])["prediction"][0]
    if task == "splice_positions":
        assert len(prediction) == len(sequence) and set(prediction) <= {"0", "1", "2"}
    else:
        assert prediction in predictor.spec.names


def test_regression_and_multilabel_files(tiny_overrides, tmp_path):
    rng = __import__("random").Random(0)
    rows_reg, rows_multi = [], []
    for _ in range(120):
        seq = "".join(rng.choice("ACGT") for _ in range(40))
        rows_reg.append(f"{seq},{seq.count('G') / 40 + rng.random() * 0.01:.4f}")
        labels = [name for name, motif in (("gata", "GAT"), ("cc", "CC")) if motif in seq]
        rows_multi.append(f"{seq},{';'.join(labels) or 'cc'}")
    (tmp_path / "reg.csv").write_text("sequence,label\n" + "\n".join(rows_reg) + "\n")
    (tmp_path / "multi.csv").write_text("sequence,label\n" + "\n".join(rows_multi) + "\n")
    reg = finetune_lora.main(tiny_overrides + [f"data.path={tmp_path / 'reg.csv'}", "train.epochs=1"])
    assert {"pearson", "spearman", "mse"} <= set(reg["test"])
    multi = finetune_lora.main(tiny_overrides + [f"data.path={tmp_path / 'multi.csv'}", "train.epochs=1",
                                                 f"output_dir={tmp_path / 'multi'}"])
    assert {"macro_f1", "micro_f1"} <= set(multi["test"])
    assert json.loads((tmp_path / "multi" / "label_map.json").read_text())["problem_type"] == "multilabel"


def test_full_finetuning_and_ia3_save_and_reload(tiny_overrides, tmp_path):
    finetune_lora.main(tiny_overrides + ["adapter.method=full", "train.epochs=1"])
    assert (tmp_path / "run" / "model.safetensors").exists() and not (tmp_path / "run" / "adapter").exists()
    assert load_run(tmp_path / "run").predict(["ACGT" * 10])["prediction"][0] in ("0", "1")
    finetune_lora.main(tiny_overrides + ["adapter.method=ia3", "train.epochs=1", f"output_dir={tmp_path / 'ia3'}"])
    assert (tmp_path / "ia3" / "adapter" / "adapter_model.safetensors").exists()


def test_per_position_labels_of_wrong_length_are_rejected(tiny_overrides, tmp_path):
    data = tmp_path / "pos.csv"
    data.write_text("sequence,label\n" + "\n".join(["ACGTACGT,00100200"] * 30 + ["ACGTACGT,0010020"]) + "\n")
    with pytest.raises(ValueError, match=r"pos.csv:32: per-position label has length 7"):
        finetune_lora.main(tiny_overrides + [f"data.path={data}", "data.problem_type=token_classification",
                                             "model.tokenizer=nucleotide", "data.dev_fraction=0.2"])
    assert not (tmp_path / "run").exists()


def test_max_steps_overrides_epochs(tiny_overrides, tmp_path):
    # 192 rows / batch 32 = 6 steps per epoch: 12 steps is two epochs although train.epochs=1
    metrics = finetune_lora.main(tiny_overrides + ["train.epochs=1", "train.max_steps=12"])
    assert [row["epoch"] for row in metrics["history"]] == [1, 2]


def test_random_windows_change_per_epoch_and_repeat_per_seed(tmp_path):
    import pandas as pd

    from gr_ft.data import LabeledSplit, make_dataloader, random_window_split
    from gr_ft.labels import infer_label_spec
    from gr_ft.tokenization import SequenceTokenizer

    tokenizer = SequenceTokenizer.from_pretrained("nucleotide")
    import random

    rng = random.Random(0)
    first = "".join(rng.choice("ACGT") for _ in range(200))  # aperiodic: windows tell offsets apart
    rows = pd.DataFrame({"sequence": [first, "TTGCA" * 40], "label": ["0" * 100 + "1" * 100, "0" * 200],
                         "_line": [2, 3]})
    spec = infer_label_spec(rows["label"], "token_classification", rows["sequence"].tolist())
    split = LabeledSplit(rows, "windows.csv")
    train = random_window_split(split, tokenizer, spec, max_length=34, seed=7)  # 32 bases + [CLS] [SEP]
    windows = []
    for epoch in range(3):
        train.set_epoch(epoch)
        windows.append(train[0]["input_ids"])
    assert len(windows[0]) == 34 and len({tuple(w) for w in windows}) > 1
    again = random_window_split(split, tokenizer, spec, max_length=34, seed=7)
    again.set_epoch(2)
    assert again[0]["input_ids"] == windows[2]
    # labels follow the window: the ids of "1" positions are the window's tail of the first row
    loader = make_dataloader(train, tokenizer, batch_size=2, shuffle=True, seed=7)
    loader.sampler.set_epoch(5)
    assert train.epoch == 5
    item = train[0]
    assert len(item["labels"]) == len(item["input_ids"]) and item["labels"][0] == -100


def test_finetune_with_random_windows(tiny_overrides, tmp_path):
    metrics = finetune_lora.main(tiny_overrides + ["data.crop=random", "data.max_length=40", "train.epochs=1"])
    assert "mcc" in metrics["test"]
