"""gr_ft.interpret: known-answer ISM and attributions, token-to-base projection, fast ISM == naive ISM, CLI.

The known-answer model is built by hand: a nucleotide (or k-mer) embedding that one-hot encodes each
base, mean pooling, and a linear head, so the output is a fixed linear function of base counts and
every ISM effect and attribution has a closed form.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from interpret_models import PLANTED_RUNS, PLANTED_TF, OneHotBackbone, make_predictor, motif_scanner_predictor

from gr_ft.adapters import apply_adapter
from gr_ft.cli import main as cli_main
from gr_ft.config import LoraConfig, ModelConfig
from gr_ft.interpret import (
    attention_maps,
    Target,
    attribute,
    embedding_layer,
    ism,
    naive_ism,
    project_attention,
    project_tokens,
    projection_matrix,
    token_windows,
)
from gr_ft.modeling import SequenceModel, build_backbone
from gr_ft.recipes import finetune_lora
from gr_ft.predictor import Predictor, load_run
from gr_ft.tokenization import SequenceTokenizer

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, dropout=0.0)
WEIGHTS = torch.tensor([1.0, -2.0, 3.0, 0.5])  # head weight of A, C, G, T
BIAS = 0.25
RNG = np.random.default_rng(0)
# per tokenizer and method, with headroom under the measured values (docs/interpret.md). Training rounds differently
# on different CPUs; kmer6 ISM held >= 0.93 on three runs, its gradient methods moved (saliency 0.846-0.920).
# BPE (0.80-0.81 ISM) and the tiny HyenaDNA on nucleotides (ISM 0.876, IG 0.823, one run) do not reach 0.9.
# ig_shuffle: integrated gradients from 10 dinucleotide shuffles of each sequence, 20 steps (session 11: kmer6 0.901
# against 0.909 from [PAD]; nucleotide 0.915 against 0.833)
PLANTED_MIN_AUROC = {"kmer6": {"ism": 0.9, "ig": 0.85, "ixg": 0.85, "saliency": 0.8, "ig_shuffle": 0.85},
                     "bpe": {"ism": 0.75, "ig": 0.72, "ixg": 0.7, "saliency": 0.7, "ig_shuffle": 0.7},
                     # nucleotide (24,000 rows x 4 epochs): ISM 0.973, IG 0.833, IxG 0.693, saliency 0.835 (session
                     # 10); with 12,000 rows IG was 0.823 here and 0.725 on CI's CPU (the training's float rounding)
                     "nucleotide": {"ism": 0.9, "ig": 0.65, "ixg": 0.6, "saliency": 0.6, "ig_shuffle": 0.85}}
PLANTED_MIN_TASK_AUROC = {"kmer6": 0.9, "bpe": 0.84, "nucleotide": 0.9}
needs_extra = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("captum", "logomaker")),
    reason='captum/logomaker missing: pip install -e ".[test,interpret]"')


def random_dna(length: int, rng=RNG) -> str:
    return "".join(rng.choice(list("ACGT"), size=length))


@pytest.fixture(scope="module")
def tokenizers():
    return {name: SequenceTokenizer.from_pretrained(name) for name in ("kmer3", "kmer6", "nucleotide", "bpe", "protein")}


def random_model(tokenizer, problem_type="binary", num_labels=2, arch="bert", seed=0) -> SequenceModel:
    torch.manual_seed(seed)
    backbone = build_backbone(ModelConfig(arch=arch, **TINY), tokenizer)
    return SequenceModel(backbone, problem_type, num_labels, head_dropout=0.0)


def counting_predictor(tokenizers) -> Predictor:
    """Regression output = (w . base counts) / (L + 2) + b: mean pooling over L bases plus [CLS] and [SEP]."""
    tokenizer = tokenizers["nucleotide"]
    model = SequenceModel(OneHotBackbone(tokenizer), "regression", 1, pooling="mean", head_dropout=0.0)
    with torch.no_grad():
        model.task_head[1].weight.copy_(WEIGHTS[None])
        model.task_head[1].bias.fill_(BIAS)
    return make_predictor(model, tokenizer, "regression", 1)


# ---------------------------------------------------------------- projection


@pytest.mark.parametrize("name", ["kmer3", "kmer6", "bpe", "nucleotide", "protein"])
def test_projection_conserves_the_total_over_non_special_tokens(name, tokenizers):
    tokenizer = tokenizers[name]
    rng = np.random.default_rng(1)
    letters = "ACDEFGHIKLMNPQRSTVWY" if name == "protein" else "ACGT"
    sequences = ["".join(rng.choice(list(letters), size=n)) for n in (7, 40, 123)]
    encoded = tokenizer.encode(sequences)
    for sequence, spans in zip(sequences, encoded["token_spans"]):
        windows = token_windows(spans, tokenizer, len(sequence))
        values = rng.normal(size=len(spans))
        bases = project_tokens(values, windows, len(sequence))
        special = np.array([w is None for w in windows])
        assert bases.shape == (len(sequence),)
        assert bases.sum() == pytest.approx(values[~special].sum(), abs=1e-9)
        assert special.sum() == 2  # only [CLS]/[SEP] (<cls>/<eos>) cover no base
        covered = np.zeros(len(sequence), dtype=int)
        for window in filter(None, windows):
            covered[window[0] : window[1]] += 1
        assert (covered >= 1).all()  # every base is covered by some token
        attention = rng.random((2, len(spans), len(spans)))
        projected = project_attention(attention, windows, len(sequence))
        assert projected.shape == (2, len(sequence), len(sequence))
        np.testing.assert_allclose(projected.sum((1, 2)), attention[:, ~special][:, :, ~special].sum((1, 2)))


def test_kmer_tokens_spread_over_their_full_window(tokenizers):
    # kmer3 of ACGTA: ACG CGT GTA, reported at their centre bases 1, 2, 3, covering [0,3) [1,4) [2,5)
    spans = tokenizers["kmer3"].encode(["ACGTA"])["token_spans"][0]
    assert spans == [None, (1, 2), (2, 3), (3, 4), None]
    windows = token_windows(spans, tokenizers["kmer3"], 5)
    assert windows == [None, (0, 3), (1, 4), (2, 5), None]
    np.testing.assert_allclose(project_tokens(np.array([9.0, 3.0, 6.0, 3.0, 9.0]), windows, 5), [1, 3, 4, 3, 1])
    # kmer6: centre index 2 of each 6-mer; the first token covers bases 0..5
    windows6 = token_windows(tokenizers["kmer6"].encode(["ACGTACGT"])["token_spans"][0], tokenizers["kmer6"], 8)
    assert windows6 == [None, (0, 6), (1, 7), (2, 8), None]
    # BPE: a token covers its piece; the value is split evenly over it
    assert projection_matrix([(0, 4)], 4).tolist() == [[0.25, 0.25, 0.25, 0.25]]


def test_projection_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="3 tokens but 2 token windows"):
        project_tokens(np.zeros(3), [None, (0, 1)], 1)


# ---------------------------------------------------------------- ISM


def test_ism_known_answer_on_a_linear_base_count_model(tokenizers):
    predictor = counting_predictor(tokenizers)
    sequences = ["ACGTTGCA", "GGGAC"]
    result = ism(predictor, sequences, deletions=True)
    assert result.effects.shape == (2, 8, 5, 1) and result.letters == "ACGT-"
    for row, sequence in enumerate(sequences):
        length, total = len(sequence), float(sum(WEIGHTS["ACGT".index(b)] for b in sequence))
        assert result.reference[row, 0] == pytest.approx(total / (length + 2) + BIAS, abs=1e-6)
        expected = np.full((8, 5), np.nan)
        for p, base in enumerate(sequence):
            w_ref = float(WEIGHTS["ACGT".index(base)])
            expected[p, :4] = (WEIGHTS.numpy() - w_ref) / (length + 2)
            expected[p, 4] = (total - w_ref) / (length + 1) - total / (length + 2)  # one token fewer
        np.testing.assert_allclose(result.effects[row, :, :, 0], expected, atol=1e-6)
        reference_letters = ["ACGT".index(b) for b in sequence]
        assert (result.selected()[row, np.arange(length), reference_letters] == 0).all()


CASES = [  # tokenizer, sequence lengths, max_length, crop, deletions
    ("kmer3", (30, 45), 64, "start", True),
    ("kmer6", (25, 40), 64, "start", False),
    ("kmer6", (90,), 40, "center", False),  # longer than the window: cropped, outside bases score 0
    ("nucleotide", (20, 33), 64, "end", True),
    ("nucleotide", (80,), 50, "end", False),
    ("bpe", (30, 60), 64, "start", True),
]


@pytest.mark.parametrize("name,lengths,max_length,crop,deletions", CASES)
def test_fast_ism_equals_the_naive_per_mutant_loop(name, lengths, max_length, crop, deletions, tokenizers):
    tokenizer = tokenizers[name]
    predictor = make_predictor(random_model(tokenizer), tokenizer, max_length=max_length, crop=crop)
    rng = np.random.default_rng(len(lengths) + max_length)
    sequences = [random_dna(n, rng) for n in lengths]
    fast = ism(predictor, sequences, Target(output="prob"), deletions=deletions, batch_size=37)
    slow = naive_ism(predictor, sequences, Target(output="prob"), deletions=deletions)
    assert fast.effects.shape == slow.effects.shape
    np.testing.assert_allclose(fast.effects, slow.effects, atol=2e-6, equal_nan=True)
    np.testing.assert_allclose(fast.reference, slow.reference, atol=2e-6)
    assert np.nanmax(np.abs(fast.effects)) > 1e-4  # the random model does respond to mutations
    assert fast.forward_passes <= slow.forward_passes
    if len(sequences[0]) > max_length:  # bases outside the cropped window cannot change the output
        seen = np.nanmax(np.abs(fast.effects[0]), axis=(1, 2)) > 0
        assert 0 < seen.sum() < len(sequences[0])


def test_protein_ism_uses_twenty_amino_acids(tokenizers):
    tokenizer = tokenizers["protein"]
    predictor = make_predictor(random_model(tokenizer, "multiclass", 3, arch="esm"), tokenizer, "multiclass", 3)
    sequences = ["MKVLAAGRTS", "MSTNPKPQRKTKRNTNRRPQDVKFPGG"]
    fast = ism(predictor, sequences, Target(output="logit"))
    slow = naive_ism(predictor, sequences, Target(output="logit"))
    assert fast.effects.shape == (2, 27, 20, 3) and fast.letters == "ACDEFGHIKLMNPQRSTVWY"
    np.testing.assert_allclose(fast.effects, slow.effects, atol=2e-6, equal_nan=True)
    np.testing.assert_array_equal(fast.class_indices, fast.reference.argmax(-1))  # default: predicted class


def test_ism_with_merged_lora_equals_the_unmerged_adapter(tokenizers):
    tokenizer = tokenizers["kmer3"]
    model = apply_adapter(random_model(tokenizer), LoraConfig(r=4, dropout=0.0))
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA B starts at zero; make the adapter change the output
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    predictor = make_predictor(model, tokenizer)
    sequences = [random_dna(35)]
    merged = ism(predictor, sequences, merge_adapter=True)
    unmerged = ism(predictor, sequences, merge_adapter=False)
    plain = ism(make_predictor(random_model(tokenizer), tokenizer), sequences)
    np.testing.assert_allclose(merged.effects, unmerged.effects, atol=2e-5)
    assert np.abs(merged.effects - plain.effects).max() > 1e-3  # the adapter mattered
    assert hasattr(predictor.model, "merge_and_unload")  # the caller's model keeps its adapter


def test_ism_of_one_position_of_a_per_position_model(tokenizers):
    tokenizer = tokenizers["kmer3"]
    predictor = make_predictor(random_model(tokenizer, "token_classification", 3), tokenizer,
                               "token_classification", 3)
    sequence = random_dna(30)
    fast = ism(predictor, [sequence], Target(output="prob", class_index=2, position=12))
    slow = naive_ism(predictor, [sequence], Target(output="prob", class_index=2, position=12))
    np.testing.assert_allclose(fast.effects, slow.effects, atol=2e-6)
    # the probabilities at one token sum to 1, so the class effects of each mutant sum to 0
    np.testing.assert_allclose(fast.effects.sum(-1), 0, atol=1e-6)
    # a kmer3 token sees 3 bases, but attention lets every base reach position 12
    assert (np.abs(fast.selected()[0]).max(-1) > 0).sum() > 3
    with pytest.raises(ValueError, match="--position"):
        ism(predictor, [sequence], Target())
    with pytest.raises(ValueError, match="outside the bases"):
        ism(predictor, [sequence], Target(position=29))  # the last base has no kmer3 centred on it


def test_bad_targets_say_which_flag_to_change(tokenizers):
    predictor = counting_predictor(tokenizers)
    with pytest.raises(ValueError, match="--output logit"):
        ism(predictor, ["ACGT"], Target(output="prob"))
    with pytest.raises(ValueError, match="out of range.*--target"):
        ism(predictor, ["ACGT"], Target(class_index=3))
    with pytest.raises(ValueError, match="--output"):
        Target(output="odds")


# ---------------------------------------------------------------- attributions


@needs_extra
@pytest.mark.parametrize("method", ["ig", "ixg", "saliency"])
def test_attributions_known_answer_on_a_linear_base_count_model(method, tokenizers):
    predictor = counting_predictor(tokenizers)
    sequence = "ACGTTGCAAG"
    result = attribute(predictor, [sequence], method=method)
    tokens = len(sequence) + 2
    per_base = WEIGHTS.numpy()[["ACGT".index(b) for b in sequence]] / tokens
    if method == "saliency":  # |gradient| summed over the 4 embedding units, the same for every token
        per_base = np.full(len(sequence), np.abs(WEIGHTS.numpy()).sum() / tokens)
    np.testing.assert_allclose(result.bases[0], per_base, atol=1e-6)
    assert result.tokens.shape == (1, tokens)
    assert result.token_starts[0].tolist() == [-1] + list(range(len(sequence))) + [-1]
    if method == "ig":  # linear model, zero baseline: completeness is exact
        np.testing.assert_allclose(result.convergence_delta, 0, atol=1e-6)


@needs_extra
def test_embedding_layer_is_found_through_peft_and_merging_keeps_attributions(tokenizers):
    tokenizer = tokenizers["kmer3"]
    model = apply_adapter(random_model(tokenizer), LoraConfig(r=4, dropout=0.0))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    assert embedding_layer(model) is model.get_base_model().backbone.get_input_embeddings()
    predictor = make_predictor(model, tokenizer)
    sequences = [random_dna(30), random_dna(21)]
    merged = attribute(predictor, sequences, method="ixg", merge_adapter=True)
    unmerged = attribute(predictor, sequences, method="ixg", merge_adapter=False)
    np.testing.assert_allclose(merged.bases, unmerged.bases, atol=1e-5)
    with pytest.raises(ValueError, match="get_input_embeddings"):
        embedding_layer(nn.Linear(2, 2))


@needs_extra
@pytest.mark.parametrize("name", ["kmer3", "bpe", "nucleotide"])
def test_integrated_gradients_are_complete_and_project_to_every_base(name, tokenizers):
    tokenizer = tokenizers[name]
    predictor = make_predictor(random_model(tokenizer), tokenizer)
    sequences = [random_dna(40), random_dna(23)]
    result = attribute(predictor, sequences, method="ig", n_steps=64)
    change = np.nansum(result.tokens, axis=1) - result.convergence_delta  # output(input) - output(baseline)
    assert (np.abs(result.convergence_delta) <= 0.02 * np.abs(change) + 1e-4).all()
    for row, sequence in enumerate(sequences):
        real = result.token_starts[row] >= 0
        assert np.nansum(result.bases[row]) == pytest.approx(np.nansum(result.tokens[row][real]), abs=1e-9)
        assert np.isfinite(result.bases[row, : len(sequence)]).all() and np.isnan(result.bases[row, len(sequence):]).all()


@needs_extra
def test_shuffled_references_keep_composition_dinucleotides_and_ends():
    from collections import Counter

    from gr_ft.interpret.attribution import shuffled_references

    sequences = [random_dna(60), random_dna(41)]
    references = shuffled_references(sequences, 5, seed=3)
    assert references == shuffled_references(sequences, 5, seed=3)  # seeded
    assert references != shuffled_references(sequences, 5, seed=4)
    for sequence, refs in zip(sequences, references):
        assert len(refs) == 5 and len(set(refs)) > 1 and sequence not in refs
        pairs = Counter(sequence[i : i + 2] for i in range(len(sequence) - 1))
        for ref in refs:
            assert (ref[0], ref[-1]) == (sequence[0], sequence[-1])
            assert Counter(ref[i : i + 2] for i in range(len(ref) - 1)) == pairs
    with pytest.raises(ValueError, match="sequence 1 .*pad baseline"):
        shuffled_references(["ACGT"], 2)


@needs_extra
def test_integrated_gradients_from_shuffled_references_known_answer(tokenizers):
    """Linear base-count model: IG from reference r is exactly (w[x_i] - w[r_i]) / (L + 2) per base, averaged over r."""
    from gr_ft.interpret.attribution import shuffled_references

    predictor = counting_predictor(tokenizers)
    sequences = [random_dna(30), random_dna(25)]
    result = attribute(predictor, sequences, method="ig", baseline="shuffle", references=4, seed=7)
    weights = WEIGHTS.numpy()
    for row, (sequence, refs) in enumerate(zip(sequences, shuffled_references(sequences, 4, seed=7))):
        expected = np.mean([[weights["ACGT".index(a)] - weights["ACGT".index(b)] for a, b in zip(sequence, ref)]
                            for ref in refs], axis=0) / (len(sequence) + 2)
        np.testing.assert_allclose(result.bases[row, : len(sequence)], expected, atol=1e-6)
        assert abs(np.nansum(result.bases[row])) < 1e-6  # same composition: output(x) = output(reference)
    np.testing.assert_allclose(result.convergence_delta, 0, atol=1e-6)
    with pytest.raises(ValueError, match="baseline"):
        attribute(predictor, sequences, method="ig", baseline="zeros")


@needs_extra
@pytest.mark.parametrize("name", ["kmer3", "bpe"])
def test_integrated_gradients_from_shuffled_references_are_complete(name, tokenizers):
    tokenizer = tokenizers[name]
    predictor = make_predictor(random_model(tokenizer), tokenizer)
    sequences = [random_dna(40), random_dna(23)]
    result = attribute(predictor, sequences, method="ig", n_steps=64, baseline="shuffle", references=3)
    change = np.nansum(result.tokens, axis=1) - result.convergence_delta  # output(input) - mean output(references)
    assert (np.abs(result.convergence_delta) <= 0.02 * np.abs(change) + 1e-4).all()
    pad = attribute(predictor, sequences, method="ig", n_steps=64)
    assert np.abs(result.bases - pad.bases)[~np.isnan(pad.bases)].max() > 1e-4  # another baseline, other values


@needs_extra
def test_cli_integrated_gradients_from_shuffled_references(tiny_run, tmp_path, capsys):
    sequences = [random_dna(50), random_dna(37)]
    fasta = write_fasta(tmp_path / "in.fa", sequences)
    out = tmp_path / "out"
    assert cli_main(["interpret", str(tiny_run), "--input", str(fasta), "--method", "ig", "--ig-baseline", "shuffle",
                     "--references", "2", "--steps", "8", "--seed", "5", "--max-plots", "0", "--out", str(out)]) == 0
    expected = attribute(load_run(tiny_run), sequences, method="ig", baseline="shuffle", references=2, n_steps=8, seed=5)
    np.testing.assert_allclose(np.load(out / "ig.npz")["bases"], expected.bases, atol=1e-6)
    assert cli_main(["interpret", str(tiny_run), "--input", str(fasta), "--method", "ig", "--references", "0",
                     "--out", str(tmp_path / "bad")]) == 2
    assert "--references must be >= 1" in capsys.readouterr().err


@needs_extra
def test_shuffled_references_are_refused_for_protein_models(tokenizers):
    tokenizer = tokenizers["protein"]
    predictor = make_predictor(random_model(tokenizer, arch="esm"), tokenizer)
    with pytest.raises(ValueError, match="DNA model.*pad"):
        attribute(predictor, ["MKTAYIAKQRQISFVKSHFSRQ"], method="ig", baseline="shuffle")


# ---------------------------------------------------------------- attention


def test_attention_maps_are_read_eagerly_and_projected_to_bases(tokenizers):
    tokenizer = tokenizers["nucleotide"]
    model = random_model(tokenizer)
    predictor = make_predictor(model, tokenizer)
    sequences = [random_dna(20), random_dna(13)]
    result = attention_maps(predictor, sequences, average_heads=False)
    assert result.maps.shape == (2, 2, 2, 20, 20) and result.layers == [0, 1]
    assert model.backbone.config._attn_implementation == "sdpa"  # switched back after the call
    ids = torch.tensor([tokenizer.encode(sequences[:1])["input_ids"][0]])
    model.backbone.set_attn_implementation("eager")
    with torch.no_grad():
        direct = model.backbone(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True).attentions
    model.backbone.set_attn_implementation("sdpa")
    # one token per base: the base map is the token map without [CLS]/[SEP] rows and columns
    np.testing.assert_allclose(result.maps[0, 1, 1], direct[1][0, 1, 1:-1, 1:-1].numpy(), atol=1e-6)
    assert np.isnan(result.maps[1, :, :, 13:]).all() and np.isfinite(result.maps[1, :, :, :13, :13]).all()
    np.testing.assert_allclose(result.received[0], result.maps[0].sum(-2), atol=1e-5)
    averaged = attention_maps(predictor, sequences, layers=[-1])
    assert averaged.maps.shape == (2, 1, 1, 20, 20) and averaged.layers == [1]
    np.testing.assert_allclose(averaged.maps[:, 0, 0], result.maps[:, 1].mean(1), atol=1e-6)
    with pytest.raises(ValueError, match="layers \\[5\\] do not exist.*--layers"):
        attention_maps(predictor, sequences, layers=[5])


def test_kmer_attention_keeps_the_non_special_total(tokenizers):
    tokenizer = tokenizers["kmer6"]
    predictor = make_predictor(random_model(tokenizer), tokenizer)
    sequence = random_dna(30)
    result = attention_maps(predictor, [sequence], average_heads=False)
    tokens = len(sequence) - 6 + 1
    # every real query row of the token map sums to 1 over keys; the share paid to [CLS]/[SEP] is dropped
    total = result.maps[0].sum((-1, -2))
    assert ((total > 0.3 * tokens) & (total <= tokens + 1e-4)).all()


# ---------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real run folder (kmer3, LoRA, 1 epoch on synthetic promoters), trained in a few seconds."""
    out = tmp_path_factory.mktemp("interpret") / "run"
    finetune_lora.main([f"output_dir={out}", "data.synthetic_size=96", "data.max_length=64", "model.hidden_size=32",
                        "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64",
                        "model.tokenizer=kmer3", "train.epochs=1", "train.precision=fp32"])
    return out


def write_fasta(path, sequences):
    path.write_text("".join(f">seq/{i} some description\n{s}\n" for i, s in enumerate(sequences)))
    return path


@needs_extra
def test_cli_writes_one_npz_per_method_and_pngs(tiny_run, tmp_path, capsys):
    sequences = [random_dna(50), random_dna(37), random_dna(44)]
    fasta = write_fasta(tmp_path / "in.fa", sequences)
    out = tmp_path / "out"
    code = cli_main(["interpret", str(tiny_run), "--input", str(fasta), "--method", "ism,ig", "--method", "attention",
                     "--out", str(out), "--output", "prob", "--max-plots", "2", "--deletions"])
    assert code == 0
    assert "ism: wrote" in capsys.readouterr().out
    ism_file = np.load(out / "ism.npz")  # loads without allow_pickle
    assert ism_file["ism"].shape == (3, 50, 5) and ism_file["ism_all_outputs"].shape == (3, 50, 5, 2)
    assert ism_file["ids"].tolist() == ["seq/0", "seq/1", "seq/2"] and ism_file["sequences"].tolist() == sequences
    assert "".join(ism_file["letters"]) == "ACGT-" and ism_file["target_class"].tolist() == [1, 1, 1]
    assert np.isnan(ism_file["ism"][1, 37:]).all() and np.isfinite(ism_file["ism"][1, :37]).all()
    predictor = load_run(tiny_run)
    again = ism(predictor, sequences[:1], Target(output="prob"), deletions=True)
    np.testing.assert_allclose(ism_file["ism_all_outputs"][0], again.effects[0], atol=1e-6)
    ig_file = np.load(out / "ig.npz")
    assert ig_file["bases"].shape == (3, 50) and ig_file["convergence_delta"].shape == (3,)
    assert np.load(out / "attention.npz")["maps"].shape == (3, 1, 1, 50, 50)
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == ["000_seq_0_attention.png", "000_seq_0_ig_logo.png", "000_seq_0_ism_logo.png",
                     "000_seq_0_ism_map.png", "001_seq_1_attention.png", "001_seq_1_ig_logo.png",
                     "001_seq_1_ism_logo.png", "001_seq_1_ism_map.png"]
    assert all((out / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
    assert not [p for p in out.rglob(".*")]  # no temporary files left behind


@needs_extra
def test_cli_reads_standard_input(tiny_run, tmp_path, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("ACGTACGTACGTAAAC\n\nTTTTGGGGCCCCAAAAT\n"))
    out = tmp_path / "out"
    assert cli_main(["interpret", str(tiny_run), "--input", "-", "--method", "saliency", "--out", str(out),
                     "--max-plots", "0"]) == 0
    saliency = np.load(out / "saliency.npz")
    assert saliency["ids"].tolist() == ["0", "1"] and (saliency["bases"][0, :16] >= 0).all()
    assert not (out / "plots").exists()


@needs_extra
def test_cli_reads_bed_regions_from_a_genome(tiny_run, tmp_path):
    genome = tmp_path / "genome.fa"
    chrom = random_dna(300)
    genome.write_text(">chrT test contig\n" + "\n".join(chrom[i:i + 60] for i in range(0, 300, 60)) + "\n")
    bed = tmp_path / "regions.bed"
    bed.write_text("track name=test\nchrT\t10\t50\tpeak_a\nchrT\t200\t248\n")
    out = tmp_path / "out"
    assert cli_main(["interpret", str(tiny_run), "--input", str(bed), "--genome", str(genome), "--method", "ism",
                     "--out", str(out), "--max-plots", "0"]) == 0
    ism_file = np.load(out / "ism.npz")
    assert ism_file["ids"].tolist() == ["peak_a", "chrT:201-248"]  # name column, else 1-based region
    assert ism_file["sequences"].tolist() == [chrom[10:50], chrom[200:248]]
    bed.write_text("chrT\t250\t400\n")  # runs off the 300 bp contig
    assert cli_main(["interpret", str(tiny_run), "--input", str(bed), "--genome", str(genome), "--method", "ism",
                     "--out", str(tmp_path / "off")]) == 2
    assert not (tmp_path / "off").exists()


@pytest.mark.parametrize("extra,message", [
    (["--method", "shap"], "--method shap: choose from ism, ig, ixg, saliency, attention"),
    (["--method", "ism", "--target", "enhancer"], "--target 'enhancer' is neither a class name nor an index"),
    (["--method", "ism", "--position", "3"], "--position applies to per-position"),
    (["--method", "ig", "--steps", "0"], "--steps must be >= 1"),
    (["--method", "attention", "--layers", "4"], "fix --layers"),
])
def test_cli_bad_input_exits_2_with_a_message(extra, message, tiny_run, tmp_path, capsys):
    fasta = write_fasta(tmp_path / "in.fa", [random_dna(20)])
    assert cli_main(["interpret", str(tiny_run), "--input", str(fasta), "--out", str(tmp_path / "o")] + extra) == 2
    assert message in capsys.readouterr().err


def test_cli_bad_sequence_names_the_file_and_line(tiny_run, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("ACGT\nACGU\n")
    assert cli_main(["interpret", str(tiny_run), "--input", str(bad), "--method", "ism", "--out", str(tmp_path)]) == 2
    assert f"{bad}:2: invalid dna character(s) ['U']" in capsys.readouterr().err


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        cli_main(["interpret", "--help"])
    assert "gr-ft interpret runs/demo --input candidates.fa --method ism" in capsys.readouterr().out


# ---------------------------------------------------------------- planted grammar (slow)

def planted_site(sequence: str, pwm: np.ndarray) -> tuple[int, int, bool]:
    """(start, end, forward strand?) of the best match of ``pwm``: synthetic.py plants sites without recording them."""
    index = np.array(["ACGT".index(b) for b in sequence])
    width, log_pwm = len(pwm), np.log(pwm)
    strands = (log_pwm, log_pwm[::-1, ::-1])  # forward, reverse complement (ACGT reversed = its complement)
    scores = np.array([[m[np.arange(width), index[s : s + width]].sum() for m in strands]
                       for s in range(len(sequence) - width + 1)])
    start, strand = np.unravel_index(np.argmax(scores), scores.shape)
    return int(start), int(start) + width, strand == 0


def site_labels(sequence: str) -> np.ndarray:
    """Per base: 1 inside the planted site, 0 background, NaN at the site's N (any-base) positions.

    A consensus N carries no information (CTCF is CCGCGNGGNGGCAG), so no model can care about it;
    those bases are left out of the AUROC rather than counted as site or background.
    """
    from gr_ft.synthetic import MOTIF_CONSENSUS, MOTIFS

    start, end, forward = planted_site(sequence, MOTIFS[PLANTED_TF])
    consensus = MOTIF_CONSENSUS[PLANTED_TF] if forward else MOTIF_CONSENSUS[PLANTED_TF][::-1]
    labels = np.zeros(len(sequence))
    labels[start:end] = [np.nan if c == "N" else 1.0 for c in consensus]
    return labels


def site_aurocs(predictor, sequences: list[str]) -> dict[str, float]:
    """AUROC of per-base |ISM| / |attribution| for 'inside the planted site' over all bases of the positives."""
    from sklearn.metrics import roc_auc_score

    labels = np.stack([site_labels(s) for s in sequences]).ravel()
    scores = {"ism": np.abs(ism(predictor, sequences).selected()).mean(-1)}
    for method in ("ig", "ixg", "saliency"):
        scores[method] = np.abs(attribute(predictor, sequences, method=method).bases)
    shuffled = attribute(predictor, sequences, method="ig", baseline="shuffle", references=10, n_steps=20)
    scores["ig_shuffle"] = np.abs(shuffled.bases)
    keep = ~np.isnan(labels)
    return {name: round(float(roc_auc_score(labels[keep], value.ravel()[keep])), 3) for name, value in scores.items()}


def test_planted_site_finder_finds_the_planted_ctcf_site():
    from gr_ft.synthetic import MOTIFS, sample_site

    rng = np.random.default_rng(3)
    for start in (0, 17, 80):
        site = sample_site(MOTIFS[PLANTED_TF], rng)
        sequence = random_dna(start, rng) + site + random_dna(101 - start - len(site), rng)
        assert planted_site(sequence, MOTIFS[PLANTED_TF])[:2] == (start, start + len(site))
    assert np.isnan(site_labels("A" * 10 + "CCGCGAGGTGGCAG" + "T" * 10)[[15, 18]]).all()


@needs_extra
def test_nucleotide_ism_and_attributions_peak_at_sites_a_motif_model_reads(tokenizers):
    from gr_ft.synthetic import MOTIFS, make_task

    predictor = motif_scanner_predictor(MOTIFS[PLANTED_TF])
    frame = make_task("tf_binding", 40, seed=123)
    positives = frame[frame.label == 1].sequence.tolist()
    aurocs = site_aurocs(predictor, positives)
    assert min(aurocs.values()) >= 0.9, aurocs


@needs_extra
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PLANTED_RUNS))
def test_ism_and_attributions_peak_at_planted_sites(name, planted_run):
    from gr_ft.synthetic import make_task

    _, metrics, predictor = planted_run(name)
    frame = make_task("tf_binding", 160, seed=123)  # seeds the training splits never use
    positives = frame[frame.label == 1].sequence.tolist()
    aurocs = site_aurocs(predictor, positives)
    print(f"{name}: test AUROC {metrics['test']['auroc']:.3f}; planted-site AUROC per method {aurocs}")
    assert metrics["test"]["auroc"] >= PLANTED_MIN_TASK_AUROC[name], metrics["test"]
    below = {m: a for m, a in aurocs.items() if a < PLANTED_MIN_AUROC[name][m]}
    assert not below, f"below {PLANTED_MIN_AUROC[name]}: {aurocs}"


# ---------------------------------------------------------------- gr-ft embed


def test_embed_writes_parquet_matching_the_model_and_a_pca_plot(tiny_run, tmp_path, capsys):
    import pandas as pd

    sequences = [random_dna(40), random_dna(52), random_dna(33), random_dna(47)]
    table = tmp_path / "in.csv"
    pd.DataFrame({"id": ["a", "b", "c", "d"], "sequence": sequences, "label": [0, 1, 0, 1]}).to_csv(table, index=False)
    out, pca = tmp_path / "emb.parquet", tmp_path / "pca.png"
    assert cli_main(["embed", str(tiny_run), "--input", str(table), "--out", str(out), "--pca", str(pca)]) == 0
    frame = pd.read_parquet(out)
    assert frame["id"].tolist() == ["a", "b", "c", "d"] and frame["label"].tolist() == ["0", "1", "0", "1"]
    vectors = frame[[f"e{i}" for i in range(32)]].to_numpy()
    predictor = load_run(tiny_run)
    ids = torch.tensor([predictor.tokenizer.encode(sequences[:1])["input_ids"][0]])
    with torch.no_grad():
        expected = predictor.model.embed(ids, torch.ones_like(ids))[0].numpy()  # last layer, mean pooling
    np.testing.assert_allclose(vectors[0], expected, atol=1e-5)
    assert pca.read_bytes()[:4] == b"\x89PNG"
    assert cli_main(["embed", str(tiny_run), "--input", str(table), "--out", str(out), "--layer", "7"]) == 2
    assert "--layer 7 does not exist" in capsys.readouterr().err
