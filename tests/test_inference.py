"""The prediction engine (gr_ft/inference.py), the precision a run records, and evaluate == metrics.json."""

import json

import numpy as np
import peft
import pytest
import torch
from torch import nn

from gr_ft import inference, training
from gr_ft.cli import main as cli_main
from gr_ft.inference import (
    InferenceEngine,
    InferenceOptions,
    _Encoder,
    aggregate_windows,
    central_window,
    inference_precision,
    merge_adapter,
    window_starts,
)
from gr_ft.modeling import SequenceModel, build_backbone
from gr_ft.config import ModelConfig
from gr_ft.recipes import finetune_lora
from gr_ft.predictor import evaluate_run, load_run
from gr_ft.synthetic import write_task
from gr_ft.tokenization import SequenceTokenizer

RNG = np.random.default_rng(0)


def random_dna(length: int, alphabet: str = "ACGT") -> str:
    return "".join(RNG.choice(list(alphabet), size=length))


def tiny_model(tokenizer, problem_type="binary", num_labels=2, arch="bert") -> SequenceModel:
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, dropout=0.0)
    return SequenceModel(build_backbone(cfg, tokenizer), problem_type, num_labels, head_dropout=0.0).eval()


def direct_logits(model, tokenizer, sequence: str) -> torch.Tensor:
    """The model on one sequence tokenized by the Hugging Face tokenizer, no engine involved."""
    encoded = tokenizer.encode([sequence])
    with torch.no_grad():
        return model(input_ids=torch.tensor(encoded["input_ids"]),
                     attention_mask=torch.tensor(encoded["attention_mask"]))["logits"][0]


# ----------------------------------------------------------------------------- tokenization


@pytest.mark.parametrize("name", ["kmer3", "kmer6", "nucleotide", "protein"])
def test_numpy_token_ids_equal_the_tokenizer(name):
    tokenizer = SequenceTokenizer.from_pretrained(name)
    alphabet = "ACDEFGHIKLMNPQRSTVWYX" if name == "protein" else "ACGTN"
    sequences = [random_dna(int(n), alphabet) for n in RNG.integers(0, 90, size=40)] + ["acgtnacgt", "A", ""]
    encoder = _Encoder(tokenizer)
    bodies, _ = encoder.bodies(sequences, with_spans=False)
    assert encoder.fast is not None  # the numpy path was used and passed its own sample check
    reference = tokenizer.encode(sequences)["input_ids"]
    for body, ids in zip(bodies, reference):
        assert encoder.prefix + body.tolist() + encoder.suffix == ids


def test_numpy_spans_equal_the_tokenizer_spans():
    tokenizer = SequenceTokenizer.from_pretrained("kmer3")
    sequences = [random_dna(30), random_dna(7)]
    _, spans = _Encoder(tokenizer).bodies(sequences, with_spans=True)
    reference = tokenizer.encode(sequences)["token_spans"]
    assert spans == [row[1:-1] for row in reference]


# ----------------------------------------------------------------------------- windows


def test_window_starts_cover_every_token_and_end_at_the_end():
    for n in (1, 9, 10, 11, 57):
        starts = window_starts(n, 10, 5)
        covered = set().union(*(range(s, min(s + 10, n)) for s in starts))
        assert covered == set(range(n)) and starts[-1] + 10 >= n and starts[-1] == max(n - 10, 0)
    assert window_starts(25, 10, 5) == [0, 5, 10, 15]


def test_central_window_known_answer():
    # windows of 4 at 0, 2, 4 over 8 tokens: centres 1.5, 3.5, 5.5
    assert central_window(8, [0, 2, 4], 4).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]


def test_aggregation_of_probabilities_known_answer():
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.4, 0.6]]))
    assert aggregate_windows("binary", logits, "mean").softmax(-1).tolist() == pytest.approx([0.6, 0.4])
    assert aggregate_windows("binary", logits, "max").softmax(-1).tolist() == pytest.approx([0.4, 0.6])
    three = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    assert aggregate_windows("multiclass", three, "max").softmax(-1).tolist() == pytest.approx([0.5 / 1.6, 0.3 / 1.6,
                                                                                              0.8 / 1.6])
    values = torch.tensor([[1.0], [3.0]])
    assert aggregate_windows("regression", values, "mean").tolist() == [2.0]
    assert aggregate_windows("regression", values, "max").tolist() == [3.0]


def test_one_window_equals_the_unwindowed_output_and_long_sequences_average_windows():
    tokenizer = SequenceTokenizer.from_pretrained("kmer3")
    model = tiny_model(tokenizer)
    engine = InferenceEngine(model, tokenizer, "binary", max_length=22, options=InferenceOptions(window_stride=5))
    assert engine.window == 20
    exact = random_dna(22)  # 20 k-mers: exactly one window
    long = random_dna(51)   # 49 k-mers: windows at 0, 5, ..., 25, 29
    out = engine.run([long, exact])
    assert out.windows == [len(window_starts(49, 20, 5)), 1]
    torch.testing.assert_close(out.logits[1], direct_logits(model, tokenizer, exact), atol=1e-5, rtol=0)
    window_probs = torch.stack([direct_logits(model, tokenizer, long[s : s + 22]).softmax(-1)
                                for s in window_starts(49, 20, 5)])
    torch.testing.assert_close(out.logits[0].softmax(-1), window_probs.mean(0), atol=1e-5, rtol=0)


class WindowPositionModel(nn.Module):
    """Per-token logits (position in the window, input id): shows which window a stitched token came from."""

    def forward(self, input_ids, attention_mask):
        positions = torch.arange(input_ids.shape[1]).expand_as(input_ids).float()
        return {"logits": torch.stack([positions, input_ids.float()], dim=-1)}

    def parameters(self, recurse=True):
        yield torch.zeros(1)


def test_per_position_stitching_takes_the_most_central_window():
    tokenizer = SequenceTokenizer.from_pretrained("nucleotide")
    sequence = random_dna(37)
    engine = InferenceEngine(WindowPositionModel(), tokenizer, "token_classification", max_length=12,
                             options=InferenceOptions(window_stride=4, merge_adapter=False))
    out = engine.run([sequence])
    starts = window_starts(37, 10, 4)
    assert out.windows == [len(starts)]
    logits = out.logits[0]
    assert logits.shape == (37, 2)
    chosen_start = torch.arange(37) + 1 - logits[:, 0].long()  # position in window = token - start + 1 ([CLS])
    expected = torch.tensor([starts[w] for w in central_window(37, starts, 10)])
    assert torch.equal(chosen_start, expected)
    assert logits[:, 1].long().tolist() == tokenizer.encode([sequence])["input_ids"][0][1:-1]
    assert out.spans[0] == [(i, i + 1) for i in range(37)]


def test_outputs_come_back_in_input_order_whatever_the_batching():
    tokenizer = SequenceTokenizer.from_pretrained("kmer3")
    model = tiny_model(tokenizer, "multiclass", 3)
    sequences = [random_dna(int(n)) for n in RNG.integers(5, 60, size=23)]
    out = InferenceEngine(model, tokenizer, "multiclass", 64, InferenceOptions(batch_size=4)).run(sequences)
    expected = torch.stack([direct_logits(model, tokenizer, s) for s in sequences])
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=0)


def test_token_budget_splits_long_batches_and_changes_no_output():
    tokenizer = SequenceTokenizer.from_pretrained("kmer3")
    model = tiny_model(tokenizer)
    sequences = [random_dna(int(n)) for n in RNG.integers(5, 60, size=20)]
    plain = InferenceEngine(model, tokenizer, "binary", 64, InferenceOptions(batch_size=8))
    capped = InferenceEngine(model, tokenizer, "binary", 64, InferenceOptions(batch_size=8, max_batch_tokens=120))
    items, _, _ = capped._windowed_items(sequences)
    batches = capped._batches(items)
    assert all(len(b) * max(len(items[i].ids) for i in b) <= 120 or len(b) == 1 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(len(items))) and len(batches) > len(plain._batches(items))
    torch.testing.assert_close(capped.run(sequences).logits, plain.run(sequences).logits, atol=1e-5, rtol=0)


def test_merged_adapter_agrees_with_the_unmerged_model_and_leaves_it_alone():
    tokenizer = SequenceTokenizer.from_pretrained("kmer3")
    model = peft.get_peft_model(tiny_model(tokenizer), peft.LoraConfig(
        r=4, target_modules=["query", "key", "value", "dense"], modules_to_save=["task_head"],
        init_lora_weights=False))  # random B: the adapter changes the outputs
    model.eval()
    sequences = [random_dna(int(n)) for n in RNG.integers(10, 60, size=12)]
    unmerged = InferenceEngine(model, tokenizer, "binary", 64, InferenceOptions(merge_adapter=False)).run(sequences)
    merged_engine = InferenceEngine(model, tokenizer, "binary", 64, InferenceOptions())
    assert not isinstance(merged_engine.model, peft.PeftModel)
    assert isinstance(model, peft.PeftModel) and any("lora_A" in n for n, _ in model.named_parameters())
    merged = merged_engine.run(sequences)
    torch.testing.assert_close(merged.logits, unmerged.logits, atol=1e-5, rtol=1e-5)
    base = model.get_base_model()
    with model.disable_adapter():
        plain = torch.stack([direct_logits(base, tokenizer, s) for s in sequences])
    assert (plain - unmerged.logits).abs().max() > 1e-3  # the comparison above compares something
    assert merge_adapter(base) is base  # a model without adapter is returned as is


def test_eager_attention_runs_short_bf16_batches_and_sdpa_is_restored(monkeypatch):
    tokenizer = SequenceTokenizer.from_pretrained("kmer3")
    model = tiny_model(tokenizer)
    assert model.backbone.config._attn_implementation == "sdpa"
    sequences = [random_dna(20), random_dna(40), random_dna(120)]  # 20 / 40 tokens with specials, then 120
    used = []
    forward = model.backbone.forward
    model.backbone.forward = lambda *a, **k: used.append(model.backbone.config._attn_implementation) or forward(*a, **k)
    options = InferenceOptions(precision="bf16", batch_size=1, eager_attention_max_tokens=40)
    out = InferenceEngine(model, tokenizer, "binary", 128, options, copy_model=False).run(sequences)
    assert used == ["eager", "eager", "sdpa"] and model.backbone.config._attn_implementation == "sdpa"
    reference = torch.stack([direct_logits(model, tokenizer, s) for s in sequences])  # fp32, SDPA
    assert (out.logits.softmax(-1) - reference.softmax(-1)).abs().max() < 2e-2  # bf16 rounding only
    used.clear()  # fp32: SDPA throughout (eager is no faster there)
    InferenceEngine(model, tokenizer, "binary", 128, InferenceOptions(batch_size=1), copy_model=False).run(sequences)
    assert used == ["sdpa"] * 3


@pytest.mark.parametrize("arch,vocabulary", [("bert", "kmer3"), ("esm", "protein")])
def test_eager_and_sdpa_attention_agree_in_fp32(arch, vocabulary):
    """The eager path computes the same function: switched by hand in fp32, outputs agree to 1e-5."""
    tokenizer = SequenceTokenizer.from_pretrained(vocabulary)
    model = tiny_model(tokenizer, arch=arch)
    assert inference._switchable_attention(model) is model.backbone
    alphabet = "ACDEFGHIKLMNPQRSTVWY" if vocabulary == "protein" else "ACGT"
    sequences = [random_dna(int(n), alphabet) for n in RNG.integers(10, 60, size=9)]  # padded batches: masks matter
    sdpa = InferenceEngine(model, tokenizer, "binary", 64, InferenceOptions(batch_size=4)).run(sequences)
    model.backbone.set_attn_implementation("eager")
    eager = InferenceEngine(model, tokenizer, "binary", 64, InferenceOptions(batch_size=4)).run(sequences)
    torch.testing.assert_close(eager.logits, sdpa.logits, atol=1e-5, rtol=1e-5)


def test_int8_quantization_is_opt_in_close_to_fp32_and_leaves_the_model_alone():
    tokenizer = SequenceTokenizer.from_pretrained("kmer3")
    model = tiny_model(tokenizer)
    sequences = [random_dna(int(n)) for n in RNG.integers(10, 60, size=16)]
    fp32 = InferenceEngine(model, tokenizer, "binary", 64, InferenceOptions()).run(sequences)
    engine = InferenceEngine(model, tokenizer, "binary", 64, InferenceOptions(quantize="int8"))
    int8 = engine.run(sequences)
    quantized = [m for m in engine.model.modules() if type(m).__name__ == "Linear" and "quantized" in type(m).__module__]
    assert quantized and engine.precision == "fp32"
    assert all(type(m) is nn.Linear for m in model.modules() if "Linear" in type(m).__name__)  # caller's model intact
    dprob = (int8.logits.softmax(-1) - fp32.logits.softmax(-1)).abs().max()
    assert 0 < dprob < 2e-2  # quantization changes the outputs, a little (docs/speed.md states the measured gap)
    with pytest.raises(ValueError, match="--quantize int8 keeps fp32"):
        InferenceOptions(quantize="int8", precision="bf16")
    with pytest.raises(ValueError, match="--quantize"):
        InferenceOptions(quantize="int4")


def test_default_token_cap_bounds_batches_of_long_windows():
    tokenizer = SequenceTokenizer.from_pretrained("nucleotide")
    engine = InferenceEngine(tiny_model(tokenizer), tokenizer, "binary", 1002, InferenceOptions())
    items, _, _ = engine._windowed_items([random_dna(1000)] * 10 + [random_dna(60)] * 100)
    batches = engine._batches(items)
    assert all(len(b) * max(len(items[i].ids) for i in b) <= inference.MAX_BATCH_TOKENS for b in batches)
    assert sorted(len(b) for b in batches) == [2, 4, 4, 36, 64]  # 1002-token windows 4 at a time; 62-token ones 64


@pytest.mark.slow
def test_compiled_engine_agrees_with_eager_in_fp32():
    tokenizer = SequenceTokenizer.from_pretrained("kmer3")
    model = tiny_model(tokenizer)
    sequences = [random_dna(int(n)) for n in RNG.integers(10, 60, size=12)]
    eager = InferenceEngine(model, tokenizer, "binary", 64, InferenceOptions(batch_size=4)).run(sequences)
    compiled = InferenceEngine(model, tokenizer, "binary", 64, InferenceOptions(batch_size=4, compile=True))
    torch.testing.assert_close(compiled.run(sequences).logits, eager.logits, atol=1e-4, rtol=1e-4)


def test_options_are_validated_with_the_flag_name():
    with pytest.raises(ValueError, match="--window-stride"):
        InferenceOptions(window_stride=0)
    with pytest.raises(ValueError, match="--aggregate"):
        InferenceOptions(aggregation="median")


# ----------------------------------------------------------------------------- precision


@pytest.fixture
def probe_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GR_FT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "bf16_probe.json"


@pytest.mark.parametrize("flags,speedup,expected", [
    ({"avx512f", "amx_bf16", "avx512_bf16"}, 0.5, "bf16"),   # AMX: bf16 without probing
    ({"avx512f", "avx512_bf16"}, 0.55, "fp32"),              # the Xeon of the issue: flag, but slow bf16
    ({"avx512f", "avx512_bf16"}, 4.7, "bf16"),               # a CPU whose bf16 matmul is faster
    ({"avx2"}, 9.0, "fp32"),                                  # no native bf16: never probed
])
def test_auto_precision_follows_amx_or_the_probe(monkeypatch, probe_cache, flags, speedup, expected):
    monkeypatch.setattr(training.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(training, "cpu_flags", lambda: flags)
    calls = []
    monkeypatch.setattr(training, "_time_matmuls", lambda size, reps: calls.append(size) or (speedup, 1.0))
    assert training.resolve_precision("auto") == expected
    assert training.resolve_precision("fp32") == "fp32"
    if "amx_bf16" in flags or "avx512_bf16" not in flags:
        assert not calls


@pytest.mark.parametrize("requested,recorded,fast,expected", [
    (None, "bf16", True, "bf16"),     # the run's bf16, on a machine where bf16 is faster
    (None, "bf16", False, "fp32"),    # the run's bf16 on a CPU where it is slower (the Xeon of the issue): fp32
    (None, "fp32", True, "fp32"),     # the run's fp32 stays fp32 by default (evaluate reproduces metrics.json)
    ("auto", "fp32", True, "bf16"),   # auto: bf16 wherever it is faster here
    ("auto", "bf16", False, "fp32"),
    ("bf16", "fp32", False, "bf16"),  # asked for explicitly: honoured
    ("fp16", "fp32", True, "fp32"),   # fp16 needs a GPU
])
def test_inference_precision_is_decided_per_machine(monkeypatch, requested, recorded, fast, expected):
    probed = []
    monkeypatch.setattr(inference, "bf16_is_faster", lambda device: probed.append(device) or fast)
    assert inference_precision(requested, recorded, torch.device("cpu")) == expected
    assert bool(probed) == (requested == "auto" or (requested is None and recorded == "bf16"))


def test_probe_is_measured_once_and_cached_atomically(monkeypatch, probe_cache):
    calls = []
    monkeypatch.setattr(training, "_time_matmuls", lambda size, reps: calls.append(size) or (2.0, 1.0))
    assert training.bf16_matmul_speedup() == 2.0 and training.bf16_matmul_speedup() == 2.0
    assert calls == [training.BF16_SCREEN_SIZE, training.BF16_PROBE_SIZE]  # the small screen, then the full probe
    cached = json.loads(probe_cache.read_text())
    (key,) = cached
    assert torch.__version__ in key and training.cpu_model() in key and cached[key]["speedup"] == 2.0
    assert [p.name for p in probe_cache.parent.iterdir()] == ["bf16_probe.json"]  # no temp file left


def test_probe_stops_at_the_screen_where_bf16_is_emulated(monkeypatch, probe_cache):
    calls = []
    monkeypatch.setattr(training, "_time_matmuls", lambda size, reps: calls.append(size) or (1.0, 100.0))
    assert training.bf16_matmul_speedup() == 0.01 and calls == [training.BF16_SCREEN_SIZE]


def test_real_probe_is_positive_and_cached(probe_cache):
    speedup = training.bf16_matmul_speedup(refresh=True)
    assert speedup > 0 and json.loads(probe_cache.read_text()).popitem()[1]["speedup"] == speedup


# ----------------------------------------------------------------------------- run folder


def tiny_run(tmp_path, precision: str):
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # a process-wide singleton: other tests may have set another precision
    data = write_task("promoter", tmp_path / "synth", 160, 48, 64, seed=0)
    out = tmp_path / f"run_{precision}"
    finetune_lora.main([
        f"output_dir={out}", f"data.path={data}", "data.max_length=128", "model.hidden_size=32",
        "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64", "model.tokenizer=kmer3",
        "train.epochs=1", "train.batch_size=32", f"train.precision={precision}",
    ])
    AcceleratorState._reset_state(True)
    return out, data


def test_evaluate_reproduces_metrics_json_exactly_in_fp32(tmp_path, capsys):
    out, data = tiny_run(tmp_path, "fp32")
    recorded = json.loads((out / "metrics.json").read_text())
    assert recorded["precision"] == "fp32" and "precision: fp32" in (out / "config.yaml").read_text()
    again = evaluate_run(out, str(data))
    for key, value in recorded["test"].items():
        if key == "loss":  # one mean over the split vs per-batch means: float32 summation order only
            assert again[key] == pytest.approx(value, abs=1e-6)
        else:
            assert again[key] == value, key


def test_bf16_run_records_bf16_and_evaluate_uses_it(tmp_path, monkeypatch):
    monkeypatch.setattr(inference, "bf16_is_faster", lambda device: True)  # as where bf16 is faster (machine-free)
    out, data = tiny_run(tmp_path, "bf16")
    recorded = json.loads((out / "metrics.json").read_text())
    assert recorded["precision"] == "bf16"
    predictor = load_run(out)
    assert predictor.options.precision == "bf16"
    # unmerged: the same computation as training's evaluation -> identical
    exact = evaluate_run(out, str(data), options=InferenceOptions(merge_adapter=False))
    merged = evaluate_run(out, str(data))  # default: adapter merged, then rounded to bf16 once
    as_fp32 = evaluate_run(out, str(data), options=InferenceOptions(precision="fp32"))
    for key in ("accuracy", "mcc", "auroc", "auprc"):
        assert exact[key] == recorded["test"][key], key
        assert merged[key] == pytest.approx(recorded["test"][key], abs=0.02), key  # stated bf16 tolerance
    # the same bf16 logits; per-batch loss means summed in another order (7e-6 apart on an AMX Xeon)
    assert exact["loss"] == pytest.approx(recorded["test"]["loss"], abs=1e-4)
    assert merged["loss"] == pytest.approx(recorded["test"]["loss"], abs=2e-3)
    assert as_fp32["loss"] != exact["loss"]  # the override really changes the precision


def test_cli_predict_keeps_input_columns_and_takes_engine_flags(tmp_path, capsys):
    out, data = tiny_run(tmp_path, "fp32")
    source = tmp_path / "in.csv"
    rows = [f"s{i},{random_dna(60 + 40 * i)},{i % 2},x{i}" for i in range(4)]  # 58..178 k-mers: some windowed
    source.write_text("id,sequence,label,note\n" + "\n".join(rows) + "\n")
    target = tmp_path / "pred.csv"
    assert cli_main(["predict", str(out), "--input", str(source), "--output", str(target), "--window-stride", "16",
                     "--aggregate", "max", "--batch-size", "3"]) == 0
    lines = target.read_text().splitlines()
    assert lines[0] == "id,label,note,prediction,prob_0,prob_1"
    assert [line.split(",")[:3] for line in lines[1:]] == [[f"s{i}", str(i % 2), f"x{i}"] for i in range(4)]
    assert cli_main(["predict", str(out), "--input", str(source), "--output", str(target),
                     "--window-stride", "0"]) == 2
    assert "--window-stride" in capsys.readouterr().err
    for flags in (["--quantize", "int8", "--max-batch-tokens", "0"], ["--precision", "auto",
                                                                       "--eager-attention-max-tokens", "0"]):
        assert cli_main(["predict", str(out), "--input", str(source), "--output", str(target), *flags]) == 0
        assert len(target.read_text().splitlines()) == 5
    assert cli_main(["predict", str(out), "--input", str(source), "--output", str(target),
                     "--eager-attention-max-tokens", "-1"]) == 2
    assert "--eager-attention-max-tokens" in capsys.readouterr().err
