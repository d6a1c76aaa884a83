"""The on-disk cache of encoded splits (data.cache): hits skip the tokenizer, any change of input misses, a
damaged entry is rebuilt, and cached results equal fresh ones."""

from __future__ import annotations

import pandas as pd
import pytest

from gr_ft.config import DataConfig
from gr_ft.data import LabeledSplit, encode_split, load_splits
from gr_ft.encoded_cache import encoded_cache_dir, load_or_encode
from gr_ft.labels import infer_label_spec
from gr_ft.tokenization import SequenceTokenizer


def _task(task: str, tokenizer_name: str):
    split = load_splits(DataConfig(path=f"synthetic:{task}", synthetic_size=48), "dna", seed=0)["train"]
    spec = infer_label_spec(split.frame["label"], "auto", split.frame["sequence"].tolist())
    return split, spec, SequenceTokenizer.from_pretrained(tokenizer_name)


@pytest.fixture
def promoter():
    return _task("promoter", "kmer3")


class CountingEncode:
    """Wraps gr_ft.data.encode_split as the cache module sees it, counting the real encodings."""

    def __init__(self, monkeypatch):
        import gr_ft.encoded_cache as cache

        self.calls, original = 0, cache.encode_split

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(cache, "encode_split", counted)


def _same(a, b) -> None:
    assert a.input_ids == b.input_ids and a.labels == b.labels and a.lengths == b.lengths
    assert [type(x) for x in a.labels] == [type(x) for x in b.labels]
    assert a.crop_report == b.crop_report


def test_second_run_reads_the_cache_without_calling_the_tokenizer(promoter, monkeypatch, tmp_path):
    split, spec, tokenizer = promoter
    first = load_or_encode(split, tokenizer, spec, max_length=40)
    assert list(encoded_cache_dir().glob("*.npz")) and encoded_cache_dir() == tmp_path / "gr_ft_cache" / "encoded"

    def no_tokenizer(*args, **kwargs):
        raise AssertionError("the tokenizer was called on a cache hit")

    monkeypatch.setattr(SequenceTokenizer, "encode", no_tokenizer)
    monkeypatch.setattr(type(tokenizer.hf), "__call__", no_tokenizer)
    _same(load_or_encode(split, tokenizer, spec, max_length=40), first)


@pytest.mark.parametrize("task,tokenizer_name", [("promoter", "kmer3"), ("splice", "kmer3"),
                                                 ("splice_positions", "nucleotide")])
def test_cached_split_equals_a_fresh_encoding(task, tokenizer_name):
    split, spec, tokenizer = _task(task, tokenizer_name)
    fresh = encode_split(split, tokenizer, spec, 64, crop="center")
    load_or_encode(split, tokenizer, spec, 64, crop="center")  # writes
    _same(load_or_encode(split, tokenizer, spec, 64, crop="center"), fresh)  # reads


def test_labels_of_every_kind_survive_the_round_trip(promoter):
    split, _, tokenizer = promoter
    rows = split.frame.head(6).copy()
    for values, problem_type in ([0.5, -1.25, 3.0, 0.0, 2.5, 1e-3], "regression"), (["a;b", "b", "", "a", "a;b", "b"], "multilabel"):
        frame = rows.assign(label=[str(v) for v in values])
        spec = infer_label_spec(frame["label"], problem_type, frame["sequence"].tolist())
        labelled = LabeledSplit(frame, "labels.csv")
        fresh = encode_split(labelled, tokenizer, spec, 40)
        load_or_encode(labelled, tokenizer, spec, 40)
        _same(load_or_encode(labelled, tokenizer, spec, 40), fresh)


def test_changed_max_length_tokenizer_or_rows_miss(promoter, monkeypatch):
    split, spec, tokenizer = promoter
    counter = CountingEncode(monkeypatch)
    load_or_encode(split, tokenizer, spec, 40)
    load_or_encode(split, tokenizer, spec, 40)
    assert counter.calls == 1
    load_or_encode(split, tokenizer, spec, 32)
    load_or_encode(split, SequenceTokenizer.from_pretrained("kmer4"), spec, 40)
    edited = split.frame.copy()
    edited.loc[0, "sequence"] = "A" + edited.loc[0, "sequence"][1:] if edited.loc[0, "sequence"][0] != "A" else \
        "C" + edited.loc[0, "sequence"][1:]
    load_or_encode(LabeledSplit(edited, split.source), tokenizer, spec, 40)
    load_or_encode(split, tokenizer, spec, 40, crop="end")
    assert counter.calls == 5


def test_changed_file_misses_through_the_recipe_data_path(tmp_path, monkeypatch):
    from recipes.finetune_lora import prepare_data
    from gr_ft.config import FinetuneConfig, load_config

    folder = tmp_path / "data"
    folder.mkdir()
    rows = pd.DataFrame({"sequence": ["ACGTACGTAC", "TTGACCATGA", "GGGCCCAAAT", "ATATATCGCG"], "label": [0, 1, 0, 1]})
    for shift, name in enumerate(("train", "dev", "test")):  # different rows per split (equal rows share an entry)
        rows.assign(sequence=rows["sequence"].str[shift:]).to_csv(folder / f"{name}.csv", index=False)
    cfg = load_config(FinetuneConfig, None, [f"data.path={folder}", "model.tokenizer=kmer3", "data.max_length=16"])
    counter = CountingEncode(monkeypatch)
    prepare_data(cfg)
    assert counter.calls == 3
    prepare_data(cfg)
    assert counter.calls == 3  # every split from the cache
    rows.assign(label=[1, 1, 0, 1]).to_csv(folder / "train.csv", index=False)  # same size, new bytes
    _, _, encoded = prepare_data(cfg)
    assert counter.calls == 4 and encoded["train"].labels == [1, 1, 0, 1]  # only the changed file re-encoded
    cache_off = load_config(FinetuneConfig, None, [f"data.path={folder}", "model.tokenizer=kmer3",
                                                   "data.max_length=16", "data.cache=false"])
    prepare_data(cache_off)
    assert counter.calls == 4  # data.cache=false bypasses the cache module altogether


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_entry_is_ignored_and_rebuilt(promoter, monkeypatch, damage, caplog):
    split, spec, tokenizer = promoter
    first = load_or_encode(split, tokenizer, spec, 40)
    (entry,) = encoded_cache_dir().glob("*.npz")
    data = entry.read_bytes()
    entry.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not an npz" * 10, "empty": b""}[damage])
    counter = CountingEncode(monkeypatch)
    _same(load_or_encode(split, tokenizer, spec, 40), first)
    assert counter.calls == 1 and (damage == "empty" or "ignoring unreadable" in caplog.text)
    assert entry.read_bytes() == data  # rebuilt in place, byte for byte
    load_or_encode(split, tokenizer, spec, 40)
    assert counter.calls == 1
