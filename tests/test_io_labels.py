import gzip

import pandas as pd
import pytest

from gr_ft.config import DataConfig
from gr_ft.data import crop_sequences, load_splits
from gr_ft.io import find_split_files, read_sequences, read_table, validate_sequences
from gr_ft.labels import infer_label_spec, load_label_spec


def write_csv_gz(path, rows, header="sequence,label"):
    with gzip.open(path, "wt") as handle:
        handle.write(header + "\n" + "\n".join(rows) + "\n")


def test_csv_gz_tsv_fasta_jsonl_parquet_read_alike(tmp_path):
    write_csv_gz(tmp_path / "a.csv.gz", ["ACGT,1", "GGCC,0"], header="sequence,label")
    (tmp_path / "b.tsv").write_text("sequence\tlabel\tcell_type\nACGT\t1\tHepG2\nGGCC\t0\tK562\n")
    (tmp_path / "c.fa").write_text(">r1 label=1 cell_type=HepG2\nAC\nGT\n>r2 label=0\nGGCC\n")
    pd.DataFrame({"sequence": ["ACGT", "GGCC"], "label": ["1", "0"]}).to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    pd.DataFrame({"sequence": ["ACGT", "GGCC"], "label": ["1", "0"]}).to_parquet(tmp_path / "e.parquet")
    for name in ("a.csv.gz", "b.tsv", "c.fa", "d.jsonl", "e.parquet"):
        frame = read_table(tmp_path / name)
        assert frame["sequence"].tolist() == ["ACGT", "GGCC"], name
        assert [str(v) for v in frame["label"]] == ["1", "0"], name
    assert read_table(tmp_path / "b.tsv")["cell_type"].tolist() == ["HepG2", "K562"]
    assert read_table(tmp_path / "c.fa")["_line"].tolist() == [1, 4]


def test_fasta_labels_from_a_separate_file(tmp_path):
    (tmp_path / "x.fa").write_text(">r1\nACGT\n>r2\nGGCC\n")
    (tmp_path / "labels.csv").write_text("id,label\nr1,pos\nr2,neg\n")
    frame = read_table(tmp_path / "x.fa", labels_file=str(tmp_path / "labels.csv"))
    assert frame["label"].tolist() == ["pos", "neg"]
    (tmp_path / "short.csv").write_text("id,label\nr1,pos\n")
    with pytest.raises(ValueError, match="no label in .*short.csv.*'r2'"):
        read_table(tmp_path / "x.fa", labels_file=str(tmp_path / "short.csv"))


def test_bad_sequences_report_file_and_line(tmp_path):
    frame = pd.DataFrame({"sequence": ["acgt", "ACXT"], "_line": [2, 3]})
    with pytest.raises(ValueError, match=r"f\.csv:3: invalid dna character\(s\) \['X'\]"):
        validate_sequences(frame, "dna", "f.csv")
    frame = pd.DataFrame({"sequence": ["ACGT", " "], "_line": [2, 3]})
    with pytest.raises(ValueError, match=r"f\.csv:3: empty sequence"):
        validate_sequences(frame, "dna", "f.csv")
    protein = validate_sequences(pd.DataFrame({"sequence": ["mkvU"], "_line": [2]}), "protein", "p.csv")
    assert protein["sequence"][0] == "MKVU"


def test_dataset_folder_is_one_argument(tmp_path):
    for split in ("train", "dev", "test"):
        write_csv_gz(tmp_path / f"{split}.csv.gz", ["ACGTACGT,1", "GGCCGGCC,0"])
    assert set(find_split_files(tmp_path)) == {"train", "dev", "test"}
    splits = load_splits(DataConfig(path=str(tmp_path)), "dna")
    assert set(splits) == {"train", "dev", "test"} and len(splits["dev"].frame) == 2


def test_single_file_is_split_and_missing_column_is_named(tmp_path):
    write_csv_gz(tmp_path / "all.csv.gz", [f"{'ACGT' * 3},{i % 2}" for i in range(200)])
    splits = load_splits(DataConfig(path=str(tmp_path / "all.csv.gz")), "dna", seed=0)
    sizes = {k: len(v.frame) for k, v in splits.items()}
    assert sum(sizes.values()) == 200 and 5 < sizes["dev"] < 40 and 5 < sizes["test"] < 40
    with pytest.raises(ValueError, match="no 'target' column; found .*sequence.*Set data.label_column"):
        load_splits(DataConfig(path=str(tmp_path / "all.csv.gz"), label_column="target"), "dna")
    with pytest.raises(ValueError, match="does not exist"):
        load_splits(DataConfig(path=str(tmp_path / "nope.csv")), "dna")


def test_hub_dataset_id_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ValueError, match="Hugging Face Hub dataset failed.*offline"):
        load_splits(DataConfig(path="nobody/no-such-dataset-gr-ft"), "dna")


def test_label_schemes_are_inferred():
    assert infer_label_spec(["0", "1", "1"]).problem_type == "binary"
    spec = infer_label_spec(["donor", "none", "acceptor"])
    assert (spec.problem_type, spec.names) == ("multiclass", ["acceptor", "donor", "none"])
    assert infer_label_spec(["0.5", "1.25"]).problem_type == "regression"
    multi = infer_label_spec(["Nucleus;Cytoplasm", "Nucleus"])
    assert multi.problem_type == "multilabel" and multi.encode("Cytoplasm", "x") == [1.0, 0.0]
    pos = infer_label_spec(["0012", "0000"], sequences=["ACGT", "GGCC"])
    assert pos.problem_type == "token_classification" and pos.encode("0120", "x", 4) == [0, 1, 2, 0]
    assert infer_label_spec(["10", "2", "1"]).names == ["1", "2", "10"]


def test_label_errors_say_where(tmp_path):
    spec = infer_label_spec(["a", "b"])
    with pytest.raises(ValueError, match=r"dev.csv:7: unknown label 'c'; this model knows \['a', 'b'\]"):
        spec.encode("c", "dev.csv:7")
    pos = infer_label_spec(["0012"], problem_type="token_classification")
    with pytest.raises(ValueError, match="dev.csv:3: per-position label has length 3 but the sequence has length 4"):
        pos.encode("001", "dev.csv:3", sequence_length=4)
    spec.save(tmp_path / "label_map.json")
    assert load_label_spec(tmp_path / "label_map.json") == spec


def test_crop_keeps_start_end_or_center():
    assert crop_sequences(["AACCGGTT"], 4, "start") == (["AACC"], [0])
    assert crop_sequences(["AACCGGTT"], 4, "end") == (["GGTT"], [4])
    assert crop_sequences(["AACCGGTT", "AC"], 4, "center") == (["CCGG", "AC"], [2, 0])


def test_read_sequences_for_prediction(tmp_path):
    (tmp_path / "x.fa").write_text(">a\nACGT\n>b\nGG\n")
    assert read_sequences(tmp_path / "x.fa", "dna") == (["a", "b"], ["ACGT", "GG"])
    (tmp_path / "y.txt").write_text("acgt\n\nttt\n")
    assert read_sequences(tmp_path / "y.txt", "dna") == (["0", "1"], ["ACGT", "TTT"])


def test_crop_ends_keeps_both_termini():
    assert crop_sequences(["MAAAAAAAAK", "MK"], 4, "ends") == (["MAAK", "MK"], [0, 0])
    with pytest.raises(ValueError, match="data.crop=ends"):
        DataConfig(crop="ends", problem_type="token_classification")
