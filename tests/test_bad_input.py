"""Bad input and faults: every case is one row of CASES, run through ``gr-ft`` (or a recipe's ``__main__``).

Each row says: the command, the files to create first, the exit code, a phrase the message must
contain, and the paths that must NOT exist afterwards. Every case also checks that no traceback is
printed (user errors are one ``gr-ft: error: ...`` line, docs/reliability.md section 5) and that no
half-written file (``*.tmp``) is left anywhere under the test folder.

Commands run in-process (``gr_ft.cli.main``; recipes through ``runpy`` as their ``__main__``); the SIGINT
case gets a real signal from a watcher thread. Placeholders: ``{tmp}`` the case's folder, ``{run}`` a tiny finished
fine-tuning run shared by the module.

    python -m pytest -q tests/test_bad_input.py
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import runpy
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import pytest

from conftest import REPO
from gr_ft.cli import main as cli_main

# ----------------------------------------------------------------------------- file contents

_RNG = np.random.default_rng(0)
DNA = ["".join(_RNG.choice(list("ACGT"), size=24)) for _ in range(40)]
PROTEIN = ["".join(_RNG.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=24)) for _ in range(40)]


def table(rows: list[tuple[str, str]], sep: str = ",", header: str = "sequence,label") -> str:
    return header.replace(",", sep) + "\n" + "".join(f"{s}{sep}{lab}\n" for s, lab in rows)


GOOD_ROWS = [(s, i % 2) for i, s in enumerate(DNA)]
GOOD = table(GOOD_ROWS)
FASTA = "".join(f">r{i} label={i % 2}\n{s}\n" for i, s in enumerate(DNA))


def gz(text: str) -> bytes:
    return gzip.compress(text.encode(), mtime=0)


def truncated_gz(text: str) -> bytes:
    data = gz(text * 20)
    return data[: len(data) // 2]


def dataset(train: str = GOOD, dev: str = GOOD, test: str = GOOD, suffix: str = "csv") -> dict:
    return {f"d/train.{suffix}": train, f"d/dev.{suffix}": dev, f"d/test.{suffix}": test}


TINY = ["data.max_length=40", "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
        "model.intermediate_size=64", "model.tokenizer=kmer3", "train.epochs=1", "train.batch_size=16",
        "train.precision=fp32"]


def ft(*extra: str, data: str = "d") -> list[str]:
    """``gr-ft finetune`` of the tiny model on {tmp}/<data>, into {tmp}/run."""
    return ["finetune", f"data.path={{tmp}}/{data}", "output_dir={tmp}/run", *TINY, *extra]


CORPUS = "".join(f">c{i}\n{s * 10}\n" for i, s in enumerate(DNA))
PRETRAIN = ["corpus.window_bp=60", "corpus.validation_fraction=0.2", "corpus.validation_windows=4",
            "corpus.shuffle_buffer=16", "corpus.bucket_batches=2", "model.tokenizer=kmer3", "model.hidden_size=32",
            "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64",
            "model.max_position_embeddings=70", "train.max_steps=2", "train.batch_size=4", "train.precision=fp32"]


def pt(*extra: str, corpus: str = "{tmp}/corpus.fa") -> list[str]:
    return ["pretrain", f"corpus.train_files={corpus}", "output_dir={tmp}/pre", *PRETRAIN, *extra]


META = ["meta.synthetic_size=160", "meta.synthetic_length_bp=60", "max_length=64", "model.tokenizer=kmer3",
        "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64",
        "train.precision=fp32", "meta.meta_steps=1", "meta.val_episodes=1", "meta.test_episodes=1",
        "meta.k_shot=2", "meta.query_per_class=2", "meta.inner_steps=1", "output_dir={tmp}/meta"]


def reptile(*extra: str) -> list[str]:
    return ["recipes/meta_reptile.py", *META, *extra]


def protonet(*extra: str) -> list[str]:
    return ["recipes/meta_protonet.py", *META, *extra]


def remote_code_model(folder: Path) -> None:
    """A local model folder whose config asks for its own code (DNABERT-2 style auto_map)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "bert", "architectures": ["BertForMaskedLM"], "hidden_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 16,
        "auto_map": {"AutoConfig": "configuration_bert.BertConfig", "AutoModel": "bert_layers.BertModel",
                     "AutoModelForMaskedLM": "bert_layers.BertForMaskedLM"},
    }))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "auto_map": {"AutoTokenizer": [None, "tok.MyTokenizer"]}}))
    (folder / "bert_layers.py").write_text("raise SystemExit('remote code ran')\n")


def interrupted_run(folder: Path) -> None:
    (folder / "checkpoints" / "last").mkdir(parents=True)


# ----------------------------------------------------------------------------- faults (in-process)


def _enospc(path="") -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def full_disk_on_second_csv(monkeypatch, tmp: Path) -> None:
    """The disk fills while the second split is being written (a few bytes of it reach the disk)."""
    import pandas as pd

    real, calls = pd.DataFrame.to_csv, []

    def to_csv(self, path_or_buf=None, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2 and hasattr(path_or_buf, "write"):
            path_or_buf.write(b"\x1f\x8b partial")
            raise _enospc()
        return real(self, path_or_buf, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)


def full_disk_on_write(monkeypatch, tmp: Path) -> None:
    """Every text write under {tmp} fails half-way with ENOSPC."""
    real = Path.write_text

    def write_text(self, data, *args, **kwargs):
        if str(self).startswith(str(tmp)):
            real(self, data[: len(data) // 2], *args, **kwargs)
            raise _enospc(self)
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


def read_only_parent(monkeypatch, tmp: Path) -> None:
    """{tmp}/ro is read-only (chmod 555, and, because root ignores modes, mkdir under it raises EACCES too)."""
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(str(ro) + os.sep):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)


FAULTS: dict[str, Callable] = {
    "full_disk_on_second_csv": full_disk_on_second_csv,
    "full_disk_on_write": full_disk_on_write,
    "read_only_parent": read_only_parent,
}
ENV_FAULTS = {"full_disk_publishing": {"GRFT_TEST_ENOSPC_AT": "publishing"},
              "full_disk_checkpoint": {"GRFT_TEST_ENOSPC_AT": "checkpoint_staged:1"}}

# ----------------------------------------------------------------------------- the table

FileSpec = Union[str, bytes, Callable[[Path], None]]


@dataclass
class Case:
    id: str
    argv: list[str]
    files: dict[str, FileSpec]
    code: int
    phrase: str
    absent: tuple[str, ...] = ()
    fault: Optional[str] = None


BAD_CSV_ROW = table(GOOD_ROWS + [("ACGTZACGT", 1)])
EMPTY_LABELS = table(GOOD_ROWS[:30] + [(s, "") for s in DNA[30:]])
REGRESSION_INF = table([(s, f"{i * 0.37:.2f}") for i, s in enumerate(DNA)] + [(DNA[0][::-1], "inf")])
POSITIONS = [(s, "".join(str(int(c in "GC")) for c in s)) for s in DNA]
POSITIONS_ONE_SHORT = table(POSITIONS[:-1] + [(POSITIONS[-1][0], POSITIONS[-1][1][:-3])])
DUP_FASTA = FASTA + f">r3 label=0\n{DNA[7]}\n"
UNLABELLED_FASTA = "".join(f">r{i}\n{s}\n" for i, s in enumerate(DNA))
LABELS_CONFLICT = table([(f"r{i}", i % 2) for i in range(40)] + [("r5", 0)], header="id,label")
SPACE = "train.lr:\n  type: float\n  low: 1.0e-4\n  high: 1.0e-2\n  log: true\n"

CASES: list[Case] = [
    # ------------------------------------------------------------------ finetune: data files
    Case("ft_duplicate_fasta_ids", ft(), dataset(DUP_FASTA, FASTA, FASTA, "fa"), 2, "duplicate FASTA id 'r3'",
         ("run",)),
    Case("ft_labels_file_conflicting_ids",
         ft("data.labels_file={tmp}/labels.csv"),
         {**dataset(UNLABELLED_FASTA, UNLABELLED_FASTA, UNLABELLED_FASTA, "fa"), "labels.csv": LABELS_CONFLICT},
         2, "conflicting labels for id 'r5'", ("run",)),
    Case("ft_labels_file_missing", ft("data.labels_file={tmp}/nope.csv"),
         dataset(UNLABELLED_FASTA, UNLABELLED_FASTA, UNLABELLED_FASTA, "fa"), 2, "nope.csv does not exist", ("run",)),
    Case("ft_fasta_record_without_label", ft("data.labels_file={tmp}/labels.csv"),
         {**dataset(UNLABELLED_FASTA + f">extra\n{DNA[0]}\n", UNLABELLED_FASTA, UNLABELLED_FASTA, "fa"),
          "labels.csv": table([(f"r{i}", i % 2) for i in range(40)], header="id,label")},
         2, "have no label", ("run",)),
    Case("ft_empty_label_cells", ft(), dataset(EMPTY_LABELS), 2, "empty label", ("run",)),
    Case("ft_regression_label_inf", ft("data.problem_type=regression"), dataset(REGRESSION_INF), 2,
         "not a finite number", ("run",)),
    Case("ft_regression_label_text", ft("data.problem_type=regression"),
         dataset(table([(s, "high" if i == 3 else i * 0.5) for i, s in enumerate(DNA)])), 2, "is not a number",
         ("run",)),
    Case("ft_positions_wrong_length", ft("data.max_length=64"), dataset(POSITIONS_ONE_SHORT, table(POSITIONS),
                                                                        table(POSITIONS)),
         2, "per-position label has length 21 but the sequence has length 24", ("run",)),
    Case("ft_max_length_too_short", ft("data.max_length=3"), dataset(), 2, "data.max_length=3", ("run",)),
    Case("ft_tab_separated_csv", ft(), dataset(table(GOOD_ROWS, sep="\t")), 2, "looks tab-separated", ("run",)),
    Case("ft_protein_for_dna_model", ft(), dataset(table([(p, i % 2) for i, p in enumerate(PROTEIN)])), 2,
         "looks like protein", ("run",)),
    Case("ft_truncated_gzip_csv", ft(), {"d/train.csv.gz": truncated_gz(GOOD), "d/dev.csv": GOOD, "d/test.csv": GOOD},
         2, "truncated", ("run",)),
    Case("ft_truncated_gzip_fasta", ft(), {"d/train.fa.gz": truncated_gz(FASTA), "d/dev.fa": FASTA,
                                           "d/test.fa": FASTA}, 2, "truncated", ("run",)),
    Case("ft_invalid_character", ft(), dataset(dev=BAD_CSV_ROW), 2, "dev.csv:42: invalid dna character", ("run",)),
    Case("ft_unknown_dev_label", ft(), dataset(test=table(GOOD_ROWS + [(DNA[0], 7)])), 2, "unknown label '7'",
         ("run",)),
    Case("ft_single_class", ft(), dataset(table([(s, 1) for s in DNA])), 2, "single label", ("run",)),
    Case("ft_no_label_column", ft(), dataset(table(GOOD_ROWS, header="sequence,y")), 2, "no 'label' column",
         ("run",)),
    Case("ft_empty_sequence", ft(), dataset(table(GOOD_ROWS + [("", 1)])), 2, "empty sequence", ("run",)),
    Case("ft_empty_file", ft(), dataset(train=""), 2, "empty", ("run",)),
    Case("ft_header_only", ft(), dataset(train="sequence,label\n"), 2, "split is empty", ("run",)),
    Case("ft_no_train_file", ft(), {"d/dev.csv": GOOD}, 2, "has no train file", ("run",)),
    Case("ft_fasta_without_header", ft(), dataset(train=DNA[0] + "\n" + FASTA, suffix="fa"), 2,
         "before the first '>' header", ("run",)),
    Case("ft_missing_data_path", ft(data="nope.csv"), {}, 2, "does not exist", ("run",)),
    Case("ft_unknown_file_type", ft(data="data.xlsx"), {"data.xlsx": GOOD}, 2, "unknown file type '.xlsx'", ("run",)),
    # ------------------------------------------------------------------ finetune: config
    Case("ft_lr_nan", ft("train.lr=.nan"), dataset(), 2, "train.lr must be a finite number", ("run",)),
    Case("ft_lr_inf", ft("train.lr=.inf"), dataset(), 2, "train.lr must be a finite number", ("run",)),
    Case("ft_weight_decay_nan", ft("train.weight_decay=.nan"), dataset(), 2, "train.weight_decay", ("run",)),
    Case("ft_epochs_nan", ft("train.epochs=.nan"), dataset(), 2, "train.epochs", ("run",)),
    Case("ft_negative_epochs", ft("train.epochs=-1"), dataset(), 2, "train.epochs must be > 0", ("run",)),
    Case("ft_fractional_epochs", ft("train.epochs=1.5"), dataset(), 2, "train.epochs must be a whole number", ("run",)),
    Case("ft_lr_zero", ft("train.lr=0"), dataset(), 2, "train.lr must be > 0", ("run",)),
    Case("ft_wrong_type_number", ft("train.batch_size=big"), dataset(), 2, "train.batch_size must be a number",
         ("run",)),
    Case("ft_wrong_type_bool", ft("overwrite=maybe"), dataset(), 2, "overwrite must be true or false", ("run",)),
    Case("ft_wrong_type_section", ft("train=5"), dataset(), 2, "config section 'train' must be a mapping", ("run",)),
    Case("ft_unknown_key", ft("train.learning_rate=1e-3"), dataset(), 2, "unknown config key(s) ['train.learning_rate']",
         ("run",)),
    Case("ft_unknown_key_in_yaml", ["finetune", "--config", "{tmp}/c.yaml", "output_dir={tmp}/run"],
         {"c.yaml": "trian:\n  lr: 1.0e-3\n"}, 2, "unknown config key(s) ['trian']", ("run",)),
    Case("ft_unknown_choice", ft("data.problem_type=ordinal"), dataset(), 2, "data.problem_type must be one of",
         ("run",)),
    Case("ft_dropout_one", ft("model.dropout=1"), dataset(), 2, "model.dropout must be in [0, 1)", ("run",)),
    Case("ft_heads_do_not_divide", ft("model.num_heads=3"), dataset(), 2, "must be divisible by model.num_heads",
         ("run",)),
    Case("ft_one_fold", ft("data.folds=1"), dataset(), 2, "data.folds must be 0", ("run",)),
    Case("ft_override_without_value", ft("train.lr"), dataset(), 2, "not of the form key=value", ("run",)),
    Case("ft_overrides_before_config", ["finetune", "train.epochs=-1", "--config", "{tmp}/c.yaml", "train.lr=1e-3"],
         {"c.yaml": "output_dir: {tmp}/run\n"}, 2, "train.epochs must be > 0", ("run",)),
    Case("ft_yaml_does_not_parse", ["finetune", "--config", "{tmp}/c.yaml"], {"c.yaml": "train:\n  lr: [1e-3\n"}, 2,
         "c.yaml does not parse as YAML (line", ("run",)),
    Case("ft_yaml_not_a_mapping", ["finetune", "--config", "{tmp}/c.yaml"], {"c.yaml": "- train\n- lr\n"}, 2,
         "must hold a mapping", ("run",)),
    Case("ft_config_missing", ["finetune", "--config", "{tmp}/nope.yaml"], {}, 2, "nope.yaml does not exist", ("run",)),
    Case("ft_bad_seeds", ft("--seeds", "0,one"), dataset(), 2, "comma-separated whole numbers", ("run",)),
    Case("ft_output_dir_is_a_file", ["finetune", "data.path={tmp}/d", "output_dir={tmp}/afile", *TINY],
         {**dataset(), "afile": "x"}, 2, "is a file", ()),
    Case("ft_output_dir_not_a_run", ft(), {**dataset(), "run/notes.txt": "mine"}, 2, "is not a gr-ft run",
         ("run/checkpoints", "run/metrics.json")),
    Case("ft_output_dir_interrupted_other_config", ft("train.lr=0.5"),
         {**dataset(), "run/checkpoints/last/run_config.json": json.dumps({"train.lr": 0.003})}, 2,
         "trained with another config", ("run/metrics.json",)),
    Case("ft_missing_local_model", ft("model.name_or_path={tmp}/models/nope", "model.tokenizer=null"), dataset(), 2,
         "models/nope' does not exist", ("run",)),
    Case("ft_offline_hub_model", ft("model.name_or_path=someone/dna-model-x", "model.tokenizer=null"), dataset(), 2,
         "offline", ("run",)),
    Case("ft_remote_code_without_opt_in", ft("model.name_or_path={tmp}/remote", "model.tokenizer=null"),
         {**dataset(), "remote": remote_code_model}, 2, "model.trust_remote_code=true", ("run",)),
    Case("ft_unknown_tokenizer", ft("model.tokenizer=kmer9"), dataset(), 2, "kmer9", ("run",)),
    # ------------------------------------------------------------------ finetune: faults
    Case("ft_read_only_output_parent", ["finetune", "data.path={tmp}/d", "output_dir={tmp}/ro/run", *TINY], dataset(),
         2, "permission denied", ("ro/run",), fault="read_only_parent"),
    Case("ft_full_disk_while_publishing", ft(), dataset(), 2, "no space left on device", ("run/metrics.json",),
         fault="full_disk_publishing"),
    Case("ft_full_disk_during_checkpoint", ft("train.checkpoint_every_steps=1"), dataset(), 2,
         "no space left on device", ("run/metrics.json", "run/checkpoints/last"), fault="full_disk_checkpoint"),
    Case("ft_sigint_during_training", ft("train.epochs=200", "train.checkpoint_every_steps=1"), dataset(), 130,
         "interrupted", ("run/metrics.json",), fault="sigint"),
    # ------------------------------------------------------------------ pretrain
    Case("pt_missing_corpus", pt(), {}, 2, "corpus.fa does not exist", ("pre",)),
    Case("pt_no_corpus", pt("corpus.train_files=[]", corpus="x"), {}, 2, "corpus.train_files is empty", ("pre",)),
    Case("pt_corpus_not_fasta", pt(corpus="{tmp}/corpus.csv"), {"corpus.csv": GOOD}, 2, "is this FASTA", ("pre",)),
    Case("pt_corpus_non_acgtn", pt(), {"corpus.fa": CORPUS + ">bad\nACGT-ACGT*ACGT12ACGT\n"}, 2,
         "corpus.fa:81: invalid dna character(s) ['*', '-', '1', '2']", ("pre",)),
    Case("pt_corpus_protein_for_dna", pt(), {"corpus.fa": "".join(f">p{i}\n{p * 5}\n" for i, p in enumerate(PROTEIN))},
         2, "looks like protein", ("pre",)),
    Case("pt_corpus_truncated_gzip", pt(corpus="{tmp}/corpus.fa.gz"), {"corpus.fa.gz": truncated_gz(CORPUS)}, 2,
         "truncated", ("pre",)),
    Case("pt_lr_nan", pt("train.lr=.nan"), {"corpus.fa": CORPUS}, 2, "train.lr must be a finite number", ("pre",)),
    Case("pt_negative_steps", pt("train.max_steps=-5"), {"corpus.fa": CORPUS}, 2, "train.max_steps", ("pre",)),
    Case("pt_unknown_key", pt("corpus.window=60"), {"corpus.fa": CORPUS}, 2, "corpus.window", ("pre",)),
    Case("pt_output_dir_is_a_file", pt(), {"corpus.fa": CORPUS, "pre": "x"}, 2, "is a file", ()),
    Case("pt_window_too_long", pt("corpus.window_bp=600"), {"corpus.fa": CORPUS}, 2, "corpus.window_bp", ("pre",)),
    # ------------------------------------------------------------------ meta-training
    Case("reptile_unknown_key", reptile("meta.kshot=3"), {}, 2, "meta.kshot", ("meta",)),
    Case("reptile_k_shot_zero", reptile("meta.k_shot=0"), {}, 2, "meta.k_shot must be >= 1", ("meta",)),
    Case("reptile_inner_lr_nan", reptile("meta.inner_lr=.nan"), {}, 2, "meta.inner_lr must be a finite number",
         ("meta",)),
    Case("reptile_missing_tasks", reptile("meta.tasks={tmp}/tasks.csv"), {}, 2, "tasks.csv does not exist", ("meta",)),
    Case("reptile_yaml_does_not_parse", ["recipes/meta_reptile.py", "--config", "{tmp}/m.yaml"],
         {"m.yaml": "meta: {k_shot: 3\n"}, 2, "does not parse as YAML", ("meta",)),
    Case("protonet_unknown_distance", protonet("meta.distance=manhattan"), {}, 2, "meta.distance", ("meta",)),
    Case("protonet_output_dir_is_a_file", protonet(), {"meta": "x"}, 2, "is a file", ()),
    # ------------------------------------------------------------------ adapt
    Case("adapt_missing_support", ["adapt", "{run}", "{tmp}/nope.csv", "{tmp}/out"], {}, 2, "nope.csv does not exist",
         ("out",)),
    Case("adapt_not_a_run", ["adapt", "{tmp}/empty", "{tmp}/s.csv", "{tmp}/out"], {"empty/x.txt": "", "s.csv": GOOD},
         2, "not a finished gr-ft", ("out",)),
    Case("adapt_support_protein", ["adapt", "{run}", "{tmp}/s.csv", "{tmp}/out"],
         {"s.csv": table([(p, i % 2) for i, p in enumerate(PROTEIN)])}, 2, "looks like protein", ("out",)),
    Case("adapt_support_empty_labels", ["adapt", "{run}", "{tmp}/s.csv", "{tmp}/out"], {"s.csv": EMPTY_LABELS}, 2,
         "empty label", ("out",)),
    # ------------------------------------------------------------------ predict
    Case("predict_missing_input", ["predict", "{run}", "--input", "{tmp}/nope.fa", "--output", "{tmp}/p.csv"], {}, 2,
         "nope.fa does not exist", ("p.csv",)),
    Case("predict_output_into_missing_folder",
         ["predict", "{run}", "--input", "{tmp}/in.fa", "--output", "{tmp}/nope/p.csv"], {"in.fa": FASTA}, 2,
         "folder {tmp}/nope does not exist", ("nope",)),
    Case("predict_protein_input", ["predict", "{run}", "--input", "{tmp}/in.txt", "--output", "{tmp}/p.csv"],
         {"in.txt": "\n".join(PROTEIN)}, 2, "looks like protein", ("p.csv",)),
    Case("predict_truncated_gzip", ["predict", "{run}", "--input", "{tmp}/in.fa.gz", "--output", "{tmp}/p.csv"],
         {"in.fa.gz": truncated_gz(FASTA)}, 2, "truncated", ("p.csv",)),
    Case("predict_not_a_run", ["predict", "{tmp}/empty", "--input", "{tmp}/in.fa", "--output", "{tmp}/p.csv"],
         {"empty/x.txt": "", "in.fa": FASTA}, 2, "not a finished gr-ft", ("p.csv",)),
    Case("predict_interrupted_run", ["predict", "{tmp}/half", "--input", "{tmp}/in.fa", "--output", "{tmp}/p.csv"],
         {"half": interrupted_run, "in.fa": FASTA}, 2, "interrupted gr-ft finetune run", ("p.csv",)),
    Case("predict_bad_precision", ["predict", "{run}", "--input", "{tmp}/in.fa", "--output", "{tmp}/p.csv",
                                   "--precision", "fp8"], {"in.fa": FASTA}, 2, "invalid choice: 'fp8'", ("p.csv",)),
    Case("predict_full_disk", ["predict", "{run}", "--input", "{tmp}/in.fa", "--output", "{tmp}/p.csv"],
         {"in.fa": FASTA}, 2, "no space left on device", ("p.csv",), fault="full_disk_on_write"),
    # ------------------------------------------------------------------ evaluate
    Case("evaluate_missing_data", ["evaluate", "{run}", "--data", "{tmp}/nope.csv"], {}, 2, "does not exist"),
    Case("evaluate_unknown_label", ["evaluate", "{run}", "--data", "{tmp}/e.csv"],
         {"e.csv": table(GOOD_ROWS + [(DNA[1], "maybe")])}, 2, "e.csv:42: unknown label 'maybe'"),
    Case("evaluate_tab_separated_csv", ["evaluate", "{run}", "--data", "{tmp}/e.csv"],
         {"e.csv": table(GOOD_ROWS, sep="\t")}, 2, "looks tab-separated"),
    Case("evaluate_output_into_missing_folder",
         ["evaluate", "{run}", "--data", "{tmp}/e.csv", "--output", "{tmp}/nope/m.json"], {"e.csv": GOOD}, 2,
         "folder {tmp}/nope does not exist", ("nope",)),
    Case("evaluate_missing_split", ["evaluate", "{run}", "--data", "{tmp}/d", "--split", "holdout"], dataset(), 2,
         "holdout"),
    # ------------------------------------------------------------------ push / merge
    Case("push_not_a_run", ["push", "{tmp}/empty", "me/x", "--local-dir", "{tmp}/pub"], {"empty/x.txt": ""}, 2,
         "not a finished gr-ft", ("pub",)),
    Case("push_bad_repo_id", ["push", "{run}", "not a repo", "--local-dir", "{tmp}/pub"], {}, 2, "not a repo",
         ("pub",)),
    Case("push_local_dir_not_empty", ["push", "{run}", "me/x", "--local-dir", "{tmp}/pub"], {"pub/mine.txt": "x"}, 2,
         "--overwrite", ("pub/README.md",)),
    Case("push_local_dir_is_a_file", ["push", "{run}", "me/x", "--local-dir", "{tmp}/pub"], {"pub": "x"}, 2,
         "is a file"),
    Case("push_interrupted_run", ["push", "{tmp}/half", "me/x", "--local-dir", "{tmp}/pub"], {"half": interrupted_run},
         2, "interrupted gr-ft finetune run", ("pub",)),
    Case("merge_not_a_run", ["merge", "{tmp}/empty", "{tmp}/merged"], {"empty/x.txt": ""}, 2, "not a finished gr-ft",
         ("merged",)),
    Case("merge_out_not_empty", ["merge", "{run}", "{tmp}/merged"], {"merged/mine.txt": "x"}, 2, "--overwrite",
         ("merged/metrics.json",)),
    Case("merge_out_is_a_file", ["merge", "{run}", "{tmp}/merged"], {"merged": "x"}, 2, "is a file"),
    # ------------------------------------------------------------------ tokenizer training
    Case("tokenizer_missing_file", ["tokenizer", "train", "{tmp}/nope.fa", "--out", "{tmp}/tok"], {}, 2,
         "nope.fa does not exist", ("tok",)),
    Case("tokenizer_vocab_too_small", ["tokenizer", "train", "{tmp}/c.fa", "--out", "{tmp}/tok", "--vocab-size", "3"],
         {"c.fa": CORPUS}, 2, "--vocab-size", ("tok",)),
    Case("tokenizer_truncated_gzip", ["tokenizer", "train", "{tmp}/c.fa.gz", "--out", "{tmp}/tok"],
         {"c.fa.gz": truncated_gz(CORPUS)}, 2, "truncated", ("tok",)),
    Case("tokenizer_protein_corpus", ["tokenizer", "train", "{tmp}/c.fa", "--out", "{tmp}/tok", "--vocab-size", "64"],
         {"c.fa": "".join(f">p{i}\n{p}\n" for i, p in enumerate(PROTEIN))}, 2, "looks like protein", ("tok",)),
    Case("tokenizer_out_is_a_file", ["tokenizer", "train", "{tmp}/c.fa", "--out", "{tmp}/tok", "--vocab-size", "64"],
         {"c.fa": CORPUS, "tok": "x"}, 2, "is a file"),
    # ------------------------------------------------------------------ synthetic data
    Case("synthetic_unknown_task", ["synthetic", "enhancer", "{tmp}/s"], {}, 2, "invalid choice: 'enhancer'", ("s",)),
    Case("synthetic_negative_size", ["synthetic", "promoter", "{tmp}/s", "--n-train", "-5"], {}, 2, "--n-train",
         ("s",)),
    Case("synthetic_out_is_a_file", ["synthetic", "promoter", "{tmp}/s", "--n-train", "20", "--n-dev", "8",
                                     "--n-test", "8"], {"s": "x"}, 2, "is a file"),
    Case("synthetic_full_disk", ["synthetic", "promoter", "{tmp}/s", "--n-train", "20", "--n-dev", "8", "--n-test", "8"],
         {}, 2, "no space left on device", ("s/train.csv.gz", "s/dev.csv.gz", "s/test.csv.gz"),
         fault="full_disk_on_second_csv"),
    # ------------------------------------------------------------------ check-data
    Case("check_data_missing_path", ["check-data", "{tmp}/nope"], {}, 2, "does not exist"),
    Case("check_data_bad_fail_on", ["check-data", "{tmp}/d", "--fail-on", "near-dup"], dataset(), 2, "--fail-on"),
    Case("check_data_tab_separated_csv", ["check-data", "{tmp}/d"], dataset(table(GOOD_ROWS, sep="\t")), 2,
         "looks tab-separated"),
    Case("check_data_truncated_gzip", ["check-data", "{tmp}/t.csv.gz"], {"t.csv.gz": truncated_gz(GOOD)}, 2,
         "truncated"),
    Case("check_data_duplicate_fasta_ids", ["check-data", "{tmp}/d"], dataset(DUP_FASTA, FASTA, FASTA, "fa"), 2,
         "duplicate FASTA id 'r3'"),
    Case("check_data_json_into_missing_folder", ["check-data", "{tmp}/d", "--json", "{tmp}/nope/r.json"], dataset(), 2,
         "folder {tmp}/nope does not exist", ("nope",)),
    # ------------------------------------------------------------------ sweep
    Case("sweep_missing_space", ["sweep", "--space", "{tmp}/nope.yaml", "--out", "{tmp}/sw"], {}, 2,
         "nope.yaml does not exist", ("sw",)),
    Case("sweep_space_does_not_parse", ["sweep", "--space", "{tmp}/space.yaml", "--out", "{tmp}/sw"],
         {"space.yaml": "train.lr: {type: float\n"}, 2, "does not parse as YAML", ("sw",)),
    Case("sweep_space_unknown_key", ["sweep", "--space", "{tmp}/space.yaml", "--out", "{tmp}/sw"],
         {"space.yaml": SPACE.replace("train.lr", "train.lrr")}, 2, "train.lrr", ("sw",)),
    Case("sweep_zero_trials", ["sweep", "--space", "{tmp}/space.yaml", "--out", "{tmp}/sw", "--trials", "0"],
         {"space.yaml": SPACE}, 2, "trials", ("sw",)),
    # ------------------------------------------------------------------ embed
    Case("embed_not_parquet", ["embed", "{run}", "--input", "{tmp}/in.fa", "--out", "{tmp}/e.csv"], {"in.fa": FASTA},
         2, "give a .parquet file name", ("e.csv",)),
    Case("embed_missing_input", ["embed", "{run}", "--input", "{tmp}/nope.fa", "--out", "{tmp}/e.parquet"], {}, 2,
         "nope.fa does not exist", ("e.parquet",)),
    Case("embed_protein_input", ["embed", "{run}", "--input", "{tmp}/in.txt", "--out", "{tmp}/e.parquet"],
         {"in.txt": "\n".join(PROTEIN)}, 2, "looks like protein", ("e.parquet",)),
    # ------------------------------------------------------------------ interpret
    Case("interpret_unknown_method", ["interpret", "{run}", "--input", "{tmp}/in.fa", "--method", "shap", "--out",
                                      "{tmp}/x"], {"in.fa": FASTA}, 2, "shap", ("x",)),
    Case("interpret_missing_input", ["interpret", "{run}", "--input", "{tmp}/nope.fa", "--method", "ism", "--out",
                                     "{tmp}/x"], {}, 2, "nope.fa does not exist", ("x",)),
    Case("interpret_not_a_run", ["interpret", "{tmp}/empty", "--input", "{tmp}/in.fa", "--method", "ism", "--out",
                                 "{tmp}/x"], {"empty/x.txt": "", "in.fa": FASTA}, 2, "not a finished gr-ft", ("x",)),
    Case("interpret_protein_input", ["interpret", "{run}", "--input", "{tmp}/in.txt", "--method", "ism", "--out",
                                     "{tmp}/x"], {"in.txt": "\n".join(PROTEIN)}, 2, "looks like protein", ("x",)),
    Case("interpret_out_is_a_file", ["interpret", "{run}", "--input", "{tmp}/in.fa", "--method", "ism", "--out",
                                     "{tmp}/x"], {"in.fa": FASTA, "x": "x"}, 2, "is a file"),
]

# ----------------------------------------------------------------------------- running a case


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny finished fine-tuning run on the good data set."""
    root = tmp_path_factory.mktemp("finished")
    write_files(root, dataset())
    argv = [a.replace("{tmp}", str(root)) for a in ft()]
    assert cli_main(argv) == 0
    return root / "run"


def write_files(root: Path, files: dict[str, FileSpec]) -> None:
    for name, content in files.items():
        path = root / name.replace("{tmp}", str(root))
        if callable(content):
            content(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{tmp}", str(root)))


def run_in_process(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``gr-ft ARGV`` (or ``python recipes/X.py ARGV``), as a shell would see them."""
    try:
        if argv[0].startswith("recipes/"):
            old = sys.argv
            sys.argv = [str(REPO / argv[0]), *argv[1:]]
            try:
                runpy.run_path(str(REPO / argv[0]), run_name="__main__")
                code = 0
            finally:
                sys.argv = old
        else:
            code = cli_main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
    except Exception:  # what the interpreter would do with an uncaught exception
        traceback.print_exc()
        code = 1
    return code, capsys.readouterr().err


def run_with_sigint(argv: list[str], capsys) -> tuple[int, str]:
    """``gr-ft ARGV`` in this process, sent a real SIGINT (as Ctrl-C sends) once its first checkpoint is in place."""
    out = Path(next(a.split("=", 1)[1] for a in argv if a.startswith("output_dir=")))
    finished = threading.Event()

    def interrupt_after_the_first_checkpoint() -> None:
        deadline = time.time() + 300
        while not (out / "checkpoints" / "last" / "trainer_state.json").exists():
            if finished.is_set() or time.time() > deadline:
                return  # the case then fails on its exit code
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    # a shell's background job (CI started with `&`) inherits SIGINT ignored: restore Python's Ctrl-C handler
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=interrupt_after_the_first_checkpoint, daemon=True)
    watcher.start()
    try:
        return run_in_process(argv, capsys)
    finally:
        finished.set()
        watcher.join()
        signal.signal(signal.SIGINT, previous)


def half_written(root: Path) -> list[str]:
    """Temporary files or folders left behind (``.staging`` is not one: a resumable folder may keep it)."""
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, request, capsys, monkeypatch):
    tmp = tmp_path
    subs = {"{tmp}": str(tmp)}
    if any("{run}" in a for a in case.argv):
        subs["{run}"] = str(request.getfixturevalue("finished_run"))
    argv = [_substitute(a, subs) for a in case.argv]
    write_files(tmp, case.files)
    monkeypatch.delenv("GRFT_DEBUG", raising=False)
    capsys.readouterr()
    if case.fault == "sigint":
        code, err = run_with_sigint(argv, capsys)
    else:
        if case.fault in FAULTS:
            FAULTS[case.fault](monkeypatch, tmp)
        for key, value in ENV_FAULTS.get(case.fault, {}).items():
            monkeypatch.setenv(key, value)
        code, err = run_in_process(argv, capsys)
    phrase = _substitute(case.phrase, subs)
    assert code == case.code, f"exit {code}, expected {case.code}; stderr:\n{err[-3000:]}"
    assert phrase.lower() in err.lower(), f"{phrase!r} not in stderr:\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    present = [p for p in case.absent if (tmp / p).exists()]
    assert not present, f"should not exist afterwards: {present}"
    assert not half_written(tmp), half_written(tmp)
    if case.fault in ("sigint", "full_disk_publishing", "full_disk_checkpoint"):
        from gr_ft.run_state import folder_status, resumable_checkpoint

        assert folder_status(tmp / "run") == "interrupted"
        if case.fault != "full_disk_checkpoint":
            assert resumable_checkpoint(tmp / "run") is not None


def _substitute(text: str, subs: dict[str, str]) -> str:
    for key, value in subs.items():
        text = text.replace(key, value)
    return text


def test_the_table_is_large_and_its_ids_unique():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


# ----------------------------------------------------------------------------- how a failure is printed


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("gr-ft: error:")]


def test_user_error_is_one_line_without_traceback(capsys, monkeypatch):
    monkeypatch.delenv("GRFT_DEBUG", raising=False)
    assert cli_main(["finetune", "train.lr=.nan"]) == 2
    err = capsys.readouterr().err
    assert error_lines(err) == ["gr-ft: error: train.lr must be a finite number, got nan"], err
    assert "Traceback" not in err


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_adds_the_traceback_and_keeps_the_exit_code(how, capsys, monkeypatch):
    monkeypatch.delenv("GRFT_DEBUG", raising=False)
    argv = ["finetune", "train.epochs=-1"]
    if how == "flag":
        argv = ["--debug", *argv]
    else:
        monkeypatch.setenv("GRFT_DEBUG", "1")
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "__post_init__" in err
    assert error_lines(err) == ["gr-ft: error: train.epochs must be > 0, got -1"]


def test_a_bug_exits_1_with_a_short_message_and_the_debug_hint(capsys, monkeypatch):
    monkeypatch.delenv("GRFT_DEBUG", raising=False)

    def broken(argv):
        raise KeyError("no such column in an internal table")

    monkeypatch.setitem(sys.modules["gr_ft.cli"].COMMANDS, "check-data", (broken, "broken for the test"))
    assert cli_main(["check-data", "x"]) == 1
    err = capsys.readouterr().err
    assert "gr-ft: internal error: KeyError" in err and "--debug" in err and "GRFT_DEBUG=1" in err
    assert "Traceback" not in err and not error_lines(err)


def test_recipe_scripts_print_the_same_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GRFT_DEBUG", raising=False)
    code, err = run_in_process(["recipes/pretrain_mlm.py", "train.lr=.inf", f"output_dir={tmp_path / 'pre'}"], capsys)
    assert code == 2, err[-2000:]
    assert err.strip().splitlines()[-1] == "pretrain_mlm.py: error: train.lr must be a finite number, got inf"
    assert "Traceback" not in err and not (tmp_path / "pre").exists()
