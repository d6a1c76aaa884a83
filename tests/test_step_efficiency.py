"""benchmarks/step_efficiency.py: the FLOP count of a LoRA step (known answer) and the paired per-round summary."""

from pathlib import Path

import pytest

from conftest import load_benchmark

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("step_efficiency")


def test_step_flops_of_a_lora_bert_match_the_stated_formula(bench):
    from gr_ft.adapters import apply_adapter
    from gr_ft.config import AdapterConfig, ModelConfig
    from gr_ft.modeling import SequenceModel, build_backbone
    from gr_ft.tokenization import SequenceTokenizer

    d, ff, layers, r, rows, length = 32, 64, 2, 4, 3, 10
    backbone = build_backbone(ModelConfig(hidden_size=d, num_layers=layers, num_heads=2, intermediate_size=ff),
                              SequenceTokenizer.from_pretrained("kmer3"))
    model = apply_adapter(SequenceModel(backbone, "binary", 2), AdapterConfig(r=r))
    frozen = layers * (4 * d * d + 2 * d * ff)  # q, k, v, attention output; intermediate and output dense
    lora = layers * r * (4 * (d + d) + 2 * (d + ff))  # A (r x in) + B (out x r) on each of the six
    head = d * 2
    tokens = rows * length
    expected = 4 * frozen * tokens + 6 * lora * tokens + 6 * head * rows + 12 * layers * rows * length ** 2 * d
    assert bench.step_flops(model, layers, d, rows, length) == expected


def test_paired_summary_compares_paths_within_a_round(bench):
    result = {"variants": {"grft": "", "plain": ""}, "rounds": 2, "timed_steps_per_round": 2,
              "grft": {"step_s": [1.0, 1.0, 4.0, 4.0], "useful_flops_per_step": 100.0},
              "plain": {"step_s": [2.0, 2.0, 4.0, 4.0], "useful_flops_per_step": 100.0},
              "ceiling_raw": {"bf16": [200.0, 400.0, 50.0, 50.0], "fp32": [100.0, 100.0, 25.0, 25.0]}}
    paired = bench.paired_summary(result)
    assert paired["grft"]["x_plain"] == pytest.approx(1.5)  # median of 2.0 (quiet round) and 1.0 (busy round)
    assert paired["grft"]["pct_bf16_ceiling"] == pytest.approx((50 + 50) / 2)  # 100/1/200, 100/4/50
    assert paired["plain"]["pct_fp32_ceiling"] == pytest.approx((50 + 100) / 2)
