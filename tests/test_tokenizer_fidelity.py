"""Tokenizers agree with the published checkpoints: DNABERT's k-mer ids, each family's input format and
token spans, the [UNK] guard, vocabulary checks, and the Hub-shaped fixtures of tests/hub_fixtures.py."""

from __future__ import annotations

import importlib.util
import itertools
import random
from pathlib import Path

import pytest
import torch
import transformers
from transformers import AutoConfig, AutoTokenizer

from gr_ft.tokenization import (
    INPUT_FORMATS,
    SequenceTokenizer,
    build_caduceus_tokenizer,
    build_hyena_tokenizer,
    build_kmer_tokenizer,
    check_vocab_matches,
    chunk_kmers,
    load_checkpoint_vocab,
)
from hub_fixtures import FIXTURE_NAMES, SHARED_MODELS, make_fixture

DNA = "ACGTACGTNACGTACGTACGTTT"  # 23 bp: an N mid-sequence, leftovers at both N-separated pieces' ends
PROTEIN = "MKTAYIAKQRUZOB"


def shared_model(folder: str) -> Path:
    path = SHARED_MODELS / folder
    if not path.is_dir():
        pytest.skip(f"{path} is absent (../shared/models is provided beside the checkout in CI)")
    return path


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """Build each Hub-shaped fixture once for the module; skip those whose ../shared folder is absent."""
    root = tmp_path_factory.mktemp("hub")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            if name == "dnabert2":
                pytest.importorskip("einops", reason="DNABERT-2's remote code needs einops (pip install -e '.[test]')")
            try:
                built[name] = make_fixture(name, root / name)
            except FileNotFoundError as err:
                pytest.skip(str(err))
        return built[name]

    return get


def body(tok: SequenceTokenizer, enc: dict, row: int = 0) -> tuple[list[int], list[tuple[int, int]]]:
    """(ids, spans) of the non-special tokens of one encoded row."""
    pairs = [(i, s) for i, s in zip(enc["input_ids"][row], enc["token_spans"][row]) if s is not None]
    return [i for i, _ in pairs], [s for _, s in pairs]


def assert_spans_tile(spans: list[tuple[int, int]], length: int) -> None:
    """Spans cover 0..length exactly once, in order, with no gap or overlap."""
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


# ----------------------------------------------------------------------------- 1. DNABERT k-mer ids
def test_kmer6_ids_equal_dnabert6_vocab_line_numbers():
    vocab_txt = shared_model("DNA_bert_6") / "vocab.txt"
    lines = vocab_txt.read_text().splitlines()
    ours = SequenceTokenizer.from_pretrained("kmer6").hf.get_vocab()
    assert len(lines) == len(ours) == 4101
    assert {token: line for line, token in enumerate(lines)} == ours


def test_kmer3_to_5_known_ids_from_published_vocab():
    # line numbers (0-based) in jerryji1993/DNABERT@c9b6ccb8 src/transformers/dnabert-config/bert-config-k/vocab.txt
    published = {
        3: {"AAA": 5, "AAT": 6, "AAC": 7, "AAG": 8, "ATA": 9, "ACG": 16, "TTT": 26, "CGT": 50, "GTA": 57, "GGG": 68},
        4: {"AAAT": 6, "AATA": 9, "ATAA": 21, "TAAA": 69, "GGGG": 260},
        5: {"AAAAT": 6, "AATAA": 21, "ATAAA": 69, "TAAAA": 261, "GGGGG": 1028},
    }
    for k, ids in published.items():
        vocab = SequenceTokenizer.from_pretrained(f"kmer{k}").hf.get_vocab()
        assert {kmer: vocab[kmer] for kmer in ids} == ids, k
    assert SequenceTokenizer.from_pretrained("kmer3").encode(["ACGTA"])["input_ids"] == [[2, 16, 50, 57, 3]]


def test_shipped_kmer_folders_equal_the_builders():
    for k in range(3, 7):
        assert SequenceTokenizer.from_pretrained(f"kmer{k}").hf.get_vocab() == build_kmer_tokenizer(k).get_vocab()


# ----------------------------------------------------------------------------- vocabulary checks
def test_check_vocab_matches_accepts_dnabert6_and_names_differences(tmp_path):
    dnabert6 = load_checkpoint_vocab(shared_model("DNA_bert_6"))
    check_vocab_matches(SequenceTokenizer.from_pretrained("kmer6"), dnabert6, "zhihan1996/DNA_bert_6")
    acgt = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + ["".join(p) for p in itertools.product("ACGT", repeat=6)]
    (tmp_path / "vocab.txt").write_text("\n".join(acgt) + "\n")
    old_order = SequenceTokenizer.from_pretrained(tmp_path)  # the pre-fix built-in layout: same size, other ids
    with pytest.raises(ValueError) as err:
        check_vocab_matches(old_order, dnabert6, "zhihan1996/DNA_bert_6")
    message = str(err.value)
    assert "4095 of our 4101 token ids differ" in message
    assert "token 'AAAAAC': ours 6, checkpoint's 7" in message
    assert "leave model.tokenizer empty" in message


def test_check_vocab_matches_catches_missing_tokens():
    nucleotide = SequenceTokenizer.from_pretrained("nucleotide")
    vocab = dict(nucleotide.hf.get_vocab(), EXTRA=10)
    with pytest.raises(ValueError, match="1 checkpoint tokens are missing"):
        check_vocab_matches(nucleotide, vocab, "toy")


def test_load_checkpoint_vocab_reads_each_file_kind(fixtures):
    assert load_checkpoint_vocab(shared_model("DNA_bert_6"))["AAAAAT"] == 6  # vocab.txt
    dnabert2 = load_checkpoint_vocab(shared_model("DNABERT-2-117M"))  # tokenizer.json (BPE)
    assert len(dnabert2) == 4096 and dnabert2["[CLS]"] == 1
    prott5 = load_checkpoint_vocab(fixtures("prott5"))  # tokenizer.json (Unigram list)
    assert prott5["\u2581M"] == 19 and prott5["<extra_id_0>"] == 127 and len(prott5) == 128
    assert load_checkpoint_vocab(shared_model("hyenadna-small-32k-seqlen-hf")) is None


# ----------------------------------------------------------------------------- 2. input formats
def test_chunk_kmers_known_answer():
    pieces = [DNA[s:e] for s, e in chunk_kmers(DNA, 6)]
    assert pieces == ["ACGTAC", "G", "T", "N", "ACGTAC", "GTACGT", "T", "T"]
    seq = "NNACGTACGT"
    assert [seq[s:e] for s, e in chunk_kmers(seq, 6)] == ["N", "N", "ACGTAC", "G", "T"]


@pytest.mark.parametrize("name", ["ntv1", "ntv2"])
def test_nucleotide_transformer_is_chunked_with_spans_of_covered_bases(fixtures, name):
    folder = fixtures(name)
    tok = SequenceTokenizer.from_pretrained(folder)
    assert tok.input_format == "chunked_kmer"
    vocab = tok.hf.get_vocab()
    enc = tok.encode([DNA])
    ids, spans = body(tok, enc)
    assert ids == [vocab[t] for t in ["ACGTAC", "G", "T", "N", "ACGTAC", "GTACGT", "T", "T"]]
    assert enc["input_ids"][0][0] == vocab["<cls>"] and len(enc["input_ids"][0]) == 9  # <cls>, no <eos>
    assert_spans_tile(spans, len(DNA))
    assert [e - s for s, e in spans] == [6, 1, 1, 1, 6, 6, 1, 1]


@pytest.mark.parametrize("name", ["ntv1", "ntv2"])
def test_raw_dna_through_esm_tokenizer_is_not_one_token_or_unk(fixtures, name):
    """transformers' EsmTokenizer on raw DNA: if it ever stops longest-matching the vocabulary, raw input
    turns into [UNK] or one token, and gr-ft's chunked input must be the only path."""
    tok = SequenceTokenizer.from_pretrained(fixtures(name))
    esm = AutoTokenizer.from_pretrained(fixtures(name))
    raw_ids = esm(DNA)["input_ids"]
    assert tok.hf.unk_token_id not in raw_ids and len(raw_ids) > 2
    assert raw_ids == tok.encode([DNA])["input_ids"][0]
    rng = random.Random(0)
    seqs = ["".join(rng.choice("ACGTACGTACGTN") for _ in range(rng.randint(1, 40))) for _ in range(30)]
    assert esm(seqs)["input_ids"] == tok.encode(seqs)["input_ids"]


def test_protbert_needs_spaces_and_the_guard_catches_raw_input(fixtures):
    tok = SequenceTokenizer.from_pretrained(fixtures("protbert"))
    assert (tok.kind, tok.input_format) == ("protein", "spaced_uzob_to_x")
    raw = tok.hf("MKTAYIAKQR")["input_ids"]
    assert tok.hf.convert_ids_to_tokens(raw) == ["[CLS]", "[UNK]", "[SEP]"]  # the silent failure
    with pytest.raises(ValueError, match=r"protbert.*'\[UNK\]'.*input_format='spaced_uzob_to_x'"):
        SequenceTokenizer.from_pretrained(fixtures("protbert"), input_format="char").encode(["MKTAYIAKQR"])
    enc = tok.encode([PROTEIN])
    ids, spans = body(tok, enc)
    vocab = tok.hf.get_vocab()
    assert ids == [vocab[r] for r in "MKTAYIAKQRXXXX"]  # U Z O B -> X as the ProtTrans model cards do
    assert enc["input_ids"][0][0] == vocab["[CLS]"] and enc["input_ids"][0][-1] == vocab["[SEP]"]
    assert_spans_tile(spans, len(PROTEIN))
    plain = SequenceTokenizer.from_pretrained(fixtures("protbert"), input_format="spaced").encode([PROTEIN])
    assert body(tok, plain)[0][-4:] == [vocab[r] for r in "UZOB"]


def test_prott5_spaced_with_rare_residues_as_x(fixtures):
    tok = SequenceTokenizer.from_pretrained(fixtures("prott5"))
    assert (tok.kind, tok.input_format) == ("protein", "spaced_uzob_to_x")
    enc = tok.encode([PROTEIN])
    # published ids: M=19 K=14 T=11 A=3 Y=18 I=12 Q=16 R=8 X=23, </s>=1 appended, no prefix token
    assert enc["input_ids"] == [[19, 14, 11, 3, 18, 12, 3, 14, 16, 8, 23, 23, 23, 23, 1]]
    assert_spans_tile(body(tok, enc)[1], len(PROTEIN))
    assert tok.decode(enc["input_ids"][0]) == "MKTAYIAKQRXXXX"


@pytest.mark.parametrize("name", ["esm1b", "esm2"])
def test_esm_is_char_with_one_span_per_residue(fixtures, name):
    tok = SequenceTokenizer.from_pretrained(fixtures(name))
    assert tok.input_format == "char"
    enc = tok.encode(["MKTAYIAKQR"])
    assert enc["input_ids"] == [[0, 20, 15, 11, 5, 19, 12, 5, 15, 16, 10, 2]]
    assert_spans_tile(body(tok, enc)[1], 10)


def test_dnabert6_overlapping_kmers_report_centre_bases(fixtures):
    tok = SequenceTokenizer.from_pretrained(fixtures("dnabert6"))
    assert tok.input_format == "kmer"
    enc = tok.encode(["AAAAAATC"])
    assert enc["input_ids"] == [[2, 5, 6, 11, 3]]  # AAAAAA, AAAAAT, AAAATC in the published vocab.txt
    assert body(tok, enc)[1] == [(2, 3), (3, 4), (4, 5)]  # k-mer j covers j..j+5, centre j+2


def test_dnabert2_bpe_is_raw_with_spans_of_each_token(fixtures):
    tok = SequenceTokenizer.from_pretrained(fixtures("dnabert2"))
    assert tok.input_format == "raw"
    seq = "TATAAAAGGCCTTGACGTTAGCATCGATCGGCTA"
    enc = tok.encode([seq])
    assert enc["input_ids"][0] == tok.hf(seq)["input_ids"]
    ids, spans = body(tok, enc)
    assert_spans_tile(spans, len(seq))
    assert [seq[s:e] for s, e in spans] == tok.hf.convert_ids_to_tokens(ids)


@pytest.mark.parametrize("name", ["hyena", "caduceus"])
def test_hyena_and_caduceus_built_tokenizers_match_their_configs(fixtures, name):
    config = AutoConfig.from_pretrained(fixtures(name), trust_remote_code=True)
    tok = SequenceTokenizer.from_pretrained(name)
    assert (tok.kind, tok.input_format) == ("nucleotide", "char")
    enc = tok.encode(["ACGTNacgt"])
    assert enc["input_ids"] == [[7, 8, 9, 10, 11, 7, 8, 9, 10, 1]]  # no [CLS]; [SEP] last
    assert_spans_tile(body(tok, enc)[1], 9)
    assert tok.vocab_size == 12 and tok.pad_token_id == 4 and tok.hf.padding_side == "left"
    assert tok.vocab_size <= config.vocab_size  # 12 (hyena) / 16 (caduceus, padded to a multiple of 8)
    if name == "hyena":
        assert config.pad_token_id == tok.pad_token_id
    else:  # the config's reverse-complement map pairs A/T (7/10) and C/G (8/9) in our ids
        complement = {int(a): b for a, b in config.complement_map.items()}
        assert [complement[i] for i in [7, 8, 9, 10, 11]] == [10, 9, 8, 7, 11]


def test_caduceus_fast_tokenizer_equals_published_code():
    source = shared_model("caduceus-ph_seqlen-131k_d_model-256_n_layer-16") / "tokenization_caduceus.py"
    spec = importlib.util.spec_from_file_location("published_tokenization_caduceus", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    published = module.CaduceusTokenizer(model_max_length=131_072)
    ours = build_caduceus_tokenizer()
    assert ours.get_vocab() == published.get_vocab()
    for seq in ["ACGTN", "acgtnNNA", "ACGTXRYA", "GATTACA" * 7]:
        assert ours(seq.upper())["input_ids"] == published(seq)["input_ids"], seq
    assert build_hyena_tokenizer().get_vocab() == published.get_vocab()  # adapted from HyenaDNA's


# ----------------------------------------------------------------------------- guard and forced formats
def test_guard_spares_legitimate_unknowns_and_short_sequences():
    kmer3 = SequenceTokenizer.from_pretrained("kmer3")
    kmer3.encode(["NNNNNNNNNNNNACGT"])  # k-mers with N are [UNK] by design
    protein = SequenceTokenizer.from_pretrained("protein")
    protein.encode(["MK"])  # too short to judge


def test_guard_catches_dna_through_a_protein_word_tokenizer(fixtures):
    protbert = SequenceTokenizer.from_pretrained(fixtures("protbert"), input_format="char")
    with pytest.raises(ValueError, match="sequence 2"):
        protbert.encode(["M", "ACGTACGTACGT"])


def test_forced_format_must_fit_the_vocabulary():
    with pytest.raises(ValueError, match="chunked_kmer"):
        SequenceTokenizer.from_pretrained("kmer6", input_format="chunked_kmer")
    with pytest.raises(ValueError, match="choose one of"):
        SequenceTokenizer.from_pretrained("kmer6", input_format="words")
    assert SequenceTokenizer.from_pretrained("protein", input_format="raw").input_format in INPUT_FORMATS


def test_forced_format_survives_save_and_load(tmp_path, fixtures):
    tok = SequenceTokenizer.from_pretrained(fixtures("protbert"), input_format="spaced")
    again = SequenceTokenizer.from_pretrained(tok.save_pretrained(tmp_path / "tok"))
    assert again.input_format == "spaced" and again.encode([PROTEIN]) == tok.encode([PROTEIN])
    assert AutoTokenizer.from_pretrained(tmp_path / "tok").get_vocab() == tok.hf.get_vocab()
    inferred = SequenceTokenizer.from_pretrained(fixtures("protbert")).save_pretrained(tmp_path / "inferred")
    assert not (inferred / "gr_ft_input_format.json").exists()  # only forced formats leave a file


def test_piece_count_mismatch_raises(fixtures):
    """A format whose pieces do not each become one token is refused instead of misaligning spans."""
    tok = SequenceTokenizer.from_pretrained(fixtures("ntv2"), input_format="char")  # longest-match 6-mers
    with pytest.raises(ValueError, match="turned 12 'char' pieces into 2 tokens"):
        tok.encode(["ACGTACGTACGT"])


# ----------------------------------------------------------------------------- 4. fixtures load
MODEL_CLASSES = {
    "protbert": "BertForMaskedLM",
    "prott5": "T5EncoderModel",
    "ntv1": "EsmForMaskedLM",
    "esm1b": "EsmForMaskedLM",
    "esm2": "EsmForMaskedLM",
    "dnabert6": "BertForMaskedLM",
}


REMOTE_CODE = {"dnabert2", "hyena", "caduceus"}  # DNA_bert_6's auto_map files are not reproduced: no remote code


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture_loads_with_plain_transformers(fixtures, name):
    folder = fixtures(name)
    if name == "protbert":  # the published config has no model_type: AutoConfig cannot place it
        assert "model_type" not in (folder / "config.json").read_text()
        config = transformers.BertConfig.from_pretrained(folder)
    else:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=name in REMOTE_CODE)
    if name == "caduceus":
        assert not (folder / "model.safetensors").exists()  # needs mamba-ssm: files only
        return
    assert (folder / "model.safetensors").is_file()
    if name in MODEL_CLASSES:
        model = getattr(transformers, MODEL_CLASSES[name]).from_pretrained(folder).eval()
        tok = SequenceTokenizer.from_pretrained(folder)
        seq = PROTEIN if tok.kind == "protein" else DNA
        with torch.no_grad():
            out = model(input_ids=torch.tensor(tok.encode([seq])["input_ids"]))
        assert out[0].shape[1] == len(tok.encode([seq])["input_ids"][0])
    assert config.vocab_size >= {"hyena": 12, "caduceus": 12}.get(name, 1)
