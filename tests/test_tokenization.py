"""Tokenizers: known-answer ids, shipped folders, kind inference, token spans and label alignment."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import random
from pathlib import Path

import pytest
import tokenizers as hf_tokenizers_lib
from transformers import AutoTokenizer
from transformers.models.esm.tokenization_esm import EsmTokenizer

from gr_ft import tokenization
from gr_ft.tokenization import (
    BUILTIN_TOKENIZERS,
    DNA_SPECIAL_TOKENS,
    ESM_ALPHABET,
    SHIPPED_TOKENIZERS_DIR,
    SequenceTokenizer,
    build_kmer_tokenizer,
    build_protein_tokenizer,
    infer_tokenizer_kind,
    kmerize,
    train_bpe_from_files,
    train_bpe_tokenizer,
)

REPO = Path(__file__).resolve().parent.parent


def kmer_id(kmer: str) -> int:
    """DNABERT layout: 5 specials, then k-mers in A,T,C,G product order (base-4 number, A=0 T=1 C=2 G=3)."""
    return 5 + sum("ATCG".index(base) * 4 ** (len(kmer) - 1 - i) for i, base in enumerate(kmer))


def random_dna(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(length))


@pytest.fixture(scope="module")
def toy_bpe():
    """A BPE trained in memory on random DNA plus a frequent repeat record, TATAAAAG."""
    rng = random.Random(0)
    corpus = [random_dna(rng, 60) for _ in range(200)] + ["TATAAAAG"] * 200
    return train_bpe_tokenizer(corpus, vocab_size=120)


def write_dnabert_folder(folder: Path, k: int) -> Path:
    """A folder shaped like a DNABERT checkpoint's tokenizer, with a shuffled k-mer order (any order must work)."""
    kmers = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
    random.Random(k).shuffle(kmers)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(DNA_SPECIAL_TOKENS + kmers) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "max_len": 512}))
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return folder


def esm_python_tokenizer(tmp_path: Path, tokens: list[str]) -> EsmTokenizer:
    """ESM's own tokenizer class (a Python tokenizer without offsets), as real ESM-2/NT checkpoints load."""
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(tokens) + "\n")
    return EsmTokenizer(str(vocab_file))


# ----------------------------------------------------------------------------- the folder itself
def test_tokenizers_folder_does_not_shadow_the_library():
    assert not (REPO / "tokenizers" / "__init__.py").exists()
    assert Path(hf_tokenizers_lib.__file__).parent != REPO / "tokenizers"
    assert hasattr(hf_tokenizers_lib, "Tokenizer")


# ----------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("k", [3, 4, 5, 6])
def test_kmer_vocabulary_layout_matches_dnabert(k):
    tok = build_kmer_tokenizer(k)
    vocab = tok.get_vocab()
    assert len(tok) == 4**k + 5
    assert [vocab[t] for t in DNA_SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert vocab["A" * k] == 5 and vocab["A" * (k - 1) + "T"] == 6 and vocab["G" * k] == 4**k + 4
    seq = "ACGTACGTTG"[: k + 2]
    kmers = kmerize(seq, k).split()
    assert tok(kmerize(seq, k))["input_ids"] == [2] + [kmer_id(m) for m in kmers] + [3]


def test_kmer3_known_answer_and_unknown_kmers():
    tok = SequenceTokenizer.from_pretrained("kmer3")
    assert kmer_id("ACG") == 5 + 0 * 16 + 2 * 4 + 3 == 16  # line 17 of DNABERT-3's vocab.txt
    assert tok.encode(["ACGTA"])["input_ids"] == [[2, 16, 50, 57, 3]]
    assert tok.encode(["acgta"])["input_ids"] == tok.encode(["ACGTA"])["input_ids"]  # case normalised
    assert tok.encode(["ACNTA"])["input_ids"] == [[2, 1, 1, 1, 3]]  # every k-mer with N is [UNK]


def test_nucleotide_and_protein_known_answers():
    nucleotide = SequenceTokenizer.from_pretrained("nucleotide")
    assert nucleotide.encode(["ACGTN"])["input_ids"] == [[2, 5, 6, 7, 8, 9, 3]]
    protein = SequenceTokenizer.from_pretrained("protein")
    assert protein.encode(["MKV"])["input_ids"] == [[0, 20, 15, 7, 2]]
    assert protein.vocab_size == 33 and protein.mask_token_id == 32 and protein.pad_token_id == 1
    assert protein.cls_token_id == 0 and protein.special_token_ids == [0, 1, 2, 3, 32]
    assert build_protein_tokenizer().convert_ids_to_tokens(list(range(33))) == ESM_ALPHABET


@pytest.mark.parametrize("name", ["kmer3", "kmer6", "nucleotide", "protein", "bpe"])
def test_decode_round_trips(name):
    tok = SequenceTokenizer.from_pretrained(name)
    seq = "MKVLAGHWCY" if name == "protein" else "ACGTTGCAAGGCTTAACG"
    assert tok.decode(tok.encode([seq])["input_ids"][0]) == seq


def test_max_length_counts_specials_and_truncates_right():
    tok = SequenceTokenizer.from_pretrained("kmer3")
    enc = tok.encode(["ACGTACGT"], max_length=4)
    assert enc["input_ids"] == [[2, kmer_id("ACG"), kmer_id("CGT"), 3]]
    assert enc["attention_mask"] == [[1, 1, 1, 1]] and enc["token_spans"] == [[None, (1, 2), (2, 3), None]]


# ----------------------------------------------------------------------------- shipped folders
@pytest.mark.parametrize("name", sorted(BUILTIN_TOKENIZERS))
def test_shipped_folder_loads_with_plain_autotokenizer(name):
    folder = SHIPPED_TOKENIZERS_DIR / name
    shipped = AutoTokenizer.from_pretrained(folder)
    text = {"protein": "MKVLAGHWCYX", "nucleotide": "ACGTNACGT"}.get(name, "ACGTTGCANNGGCTTAACG")
    if name.startswith("kmer"):
        text = kmerize(text, int(name[4:]))
    if name == "bpe":
        assert len(shipped) == 4096
        assert shipped.convert_ids_to_tokens([0, 1, 2, 3, 4]) == DNA_SPECIAL_TOKENS
        reference = SequenceTokenizer.from_pretrained("bpe").hf
    else:
        reference = BUILTIN_TOKENIZERS[name]()
        assert shipped.get_vocab() == reference.get_vocab()
    assert shipped(text)["input_ids"] == reference(text)["input_ids"]


def test_missing_shipped_folder_builds_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(tokenization, "SHIPPED_TOKENIZERS_DIR", tmp_path)
    assert SequenceTokenizer.from_pretrained("kmer3").encode(["ACGTA"])["input_ids"][0][1] == kmer_id("ACG")
    with pytest.raises(ValueError, match="bpe"):
        SequenceTokenizer.from_pretrained("bpe")


def test_unknown_name_lists_choices(tmp_path):
    with pytest.raises(ValueError, match=r"kmer3.*path does not exist"):
        SequenceTokenizer.from_pretrained(str(tmp_path / "no_such_tokenizer"))


def test_save_pretrained_round_trips(tmp_path):
    tok = SequenceTokenizer.from_pretrained("kmer4")
    folder = tok.save_pretrained(tmp_path / "kmer4")
    again = SequenceTokenizer.from_pretrained(folder)
    assert (again.kind, again.k) == ("kmer", 4)
    assert again.encode(["ACGTTG"]) == tok.encode(["ACGTTG"])


# ----------------------------------------------------------------------------- kind inference
@pytest.mark.parametrize(
    "name, kind, k",
    [
        ("kmer3", "kmer", 3),
        ("kmer6", "kmer", 6),
        ("nucleotide", "nucleotide", 1),
        ("protein", "protein", 1),
        ("bpe", "bpe", None),
    ],
)
def test_kind_of_builtins(name, kind, k):
    tok = SequenceTokenizer.from_pretrained(name)
    assert (tok.kind, tok.k) == (kind, k)


@pytest.mark.parametrize(
    "name, input_format",
    [("kmer3", "kmer"), ("kmer6", "kmer"), ("nucleotide", "char"), ("protein", "char"), ("bpe", "raw"),
     ("hyena", "char"), ("caduceus", "char")],
)
def test_input_format_of_builtins(name, input_format):
    assert SequenceTokenizer.from_pretrained(name).input_format == input_format


def test_kind_of_real_checkpoint_layouts(tmp_path):
    dnabert = SequenceTokenizer.from_pretrained(write_dnabert_folder(tmp_path / "dnabert5", 5))
    assert (dnabert.kind, dnabert.k) == ("kmer", 5)
    esm = esm_python_tokenizer(tmp_path, ESM_ALPHABET)
    assert infer_tokenizer_kind(esm) == ("protein", 1)
    nt_tokens = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
    nt_tokens += ["".join(p) for p in itertools.product("ATCG", repeat=6)] + list("ATCGN")
    nt = SequenceTokenizer(esm_python_tokenizer(tmp_path, nt_tokens))
    assert (nt.kind, nt.k, nt.input_format) == ("other", None, "chunked_kmer")


# ----------------------------------------------------------------------------- spans and labels
def test_kmer_spans_are_kmer_centres():
    enc = SequenceTokenizer.from_pretrained("kmer3").encode(["ACGTA"])
    assert enc["token_spans"] == [[None, (1, 2), (2, 3), (3, 4), None]]
    spans6 = SequenceTokenizer.from_pretrained("kmer6").encode(["ACGTACGT"])["token_spans"][0]
    assert spans6 == [None, (2, 3), (3, 4), (4, 5), None]  # k-mer j covers j..j+5, centre j+2


def test_real_dnabert_layout_gives_same_spans_and_labels(tmp_path):
    dnabert = SequenceTokenizer.from_pretrained(write_dnabert_folder(tmp_path / "dnabert3", 3))
    ours = SequenceTokenizer.from_pretrained("kmer3")
    seq = "ACGTNACG"
    assert dnabert.encode([seq])["token_spans"] == ours.encode([seq])["token_spans"]
    assert dnabert.decode(dnabert.encode(["ACGTTA"])["input_ids"][0]) == "ACGTTA"


def test_nucleotide_and_python_tokenizer_spans(tmp_path):
    assert SequenceTokenizer.from_pretrained("nucleotide").encode(["ACG"])["token_spans"] == [
        [None, (0, 1), (1, 2), (2, 3), None]
    ]
    esm = SequenceTokenizer(esm_python_tokenizer(tmp_path, ESM_ALPHABET))  # no offsets: spans by position
    assert esm.encode(["MK*V"])["token_spans"] == [[None, (0, 1), (1, 2), (2, 3), (3, 4), None]]


def test_bpe_spans_cover_multi_base_tokens(toy_bpe):
    tok = SequenceTokenizer(toy_bpe)
    seq = "GGTATAAAAGCC"
    enc = tok.encode([seq])
    tokens = toy_bpe.convert_ids_to_tokens(enc["input_ids"][0])
    spans = enc["token_spans"][0]
    assert spans[0] is None and spans[-1] is None
    assert [seq[s:e] for s, e in spans[1:-1]] == tokens[1:-1]  # each span is exactly its token's bases
    assert max(e - s for s, e in spans[1:-1]) > 1


def test_align_position_labels_kmer_and_nucleotide():
    align = SequenceTokenizer.align_position_labels
    kmer_spans = SequenceTokenizer.from_pretrained("kmer3").encode(["ACGTA"])["token_spans"][0]
    assert align([0, 0, 1, 0, 0], kmer_spans) == [-100, 0, 1, 0, -100]
    assert align([3, 0, 0, 0, 2], kmer_spans) == [-100, 0, 0, 0, -100]  # edge bases have no centre k-mer
    nuc_spans = SequenceTokenizer.from_pretrained("nucleotide").encode(["ACG"])["token_spans"][0]
    assert align([0, 2, 1], nuc_spans) == [-100, 0, 2, 1, -100]


def test_align_position_labels_multi_base_spans():
    spans = [None, (0, 2), (2, 8), (8, 10), None]
    # span (2, 8) holds labels 1 at position 2 and 2 at position 5; centre 4.5 -> position 5 wins
    labels = [0, 0, 1, 0, 0, 2, 0, 0, 0, 0]
    assert SequenceTokenizer.align_position_labels(labels, spans) == [-100, 0, 2, 0, -100]


# ----------------------------------------------------------------------------- BPE training
def test_bpe_learns_frequent_repeat(toy_bpe):
    vocab = toy_bpe.get_vocab()
    assert [vocab[t] for t in DNA_SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert toy_bpe.convert_ids_to_tokens(toy_bpe("TATAAAAG")["input_ids"]) == ["[CLS]", "TATAAAAG", "[SEP]"]
    assert not any(" " in t for t in vocab)


def test_train_bpe_from_files_reads_fasta_csv_and_lines(tmp_path):
    rng = random.Random(1)
    seqs = [random_dna(rng, 20) + "GATTACA" * 3 for _ in range(60)]
    with gzip.open(tmp_path / "a.fasta.gz", "wt") as handle:
        handle.writelines(f">r{i}\n{s[:15]}\n{s[15:].lower()}\n" for i, s in enumerate(seqs[:20]))
    with open(tmp_path / "b.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["id", "sequence"]] + [[i, s] for i, s in enumerate(seqs[20:40])])
    (tmp_path / "c.txt").write_text("\n".join(seqs[40:]) + "\n")
    paths = [str(tmp_path / name) for name in ("a.fasta.gz", "b.csv", "c.txt")]
    out = train_bpe_from_files(paths, vocab_size=60, out_dir=tmp_path / "bpe")
    loaded = SequenceTokenizer.from_pretrained(out)
    assert loaded.kind == "bpe" and loaded.vocab_size == 60
    assert loaded.decode(loaded.encode([seqs[0]])["input_ids"][0]) == seqs[0]
    train_bpe_from_files(paths, vocab_size=40, out_dir=out, max_records=10)  # replaces the folder
    assert AutoTokenizer.from_pretrained(out).vocab_size == 40


def test_bad_record_names_file_record_and_character(tmp_path):
    fasta = tmp_path / "bad.fasta"
    fasta.write_text(">ok\nACGT\n>ok2\nGGCC\n>bad\nACGXT\n")
    with pytest.raises(ValueError, match=r"bad\.fasta, record 3: invalid character 'X' at position 4"):
        train_bpe_from_files([str(fasta)], vocab_size=30, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_encode_rejects_single_string():
    with pytest.raises(TypeError, match="list of sequences"):
        SequenceTokenizer.from_pretrained("nucleotide").encode("ACGT")


def test_unreachable_hub_id_raises_value_error():
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        pytest.skip("needs HF_HUB_OFFLINE=1 (set by conftest), else the Hub retries take ~45 s")
    with pytest.raises(ValueError, match=r"'nobody/no-such-tokenizer'.*choose one of"):
        SequenceTokenizer.from_pretrained("nobody/no-such-tokenizer")
