"""benchmarks/backbone_step_time.py: inputs, step timing, the side-by-side table and its markdown block."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_benchmark

REPO = Path(__file__).resolve().parent.parent
SHARED_MODELS = REPO.parent / "shared" / "models"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("backbone_step_time")


def test_random_inputs_have_the_stated_length_alphabet_and_balanced_labels(bench):
    dna, labels = bench.random_inputs(bench.FAMILIES["ntv2"], 6, seed=0)
    assert [len(s) for s in dna] == [1000] * 6 and set("".join(dna)) == set("ACGT")
    assert labels == ["0", "1", "0", "1", "0", "1"]
    proteins, _ = bench.random_inputs(bench.FAMILIES["esm2"], 2, seed=0)
    assert [len(s) for s in proteins] == [512, 512] and set("".join(proteins)) <= set(bench.PROTEIN_RESIDUES)
    assert bench.random_inputs(bench.FAMILIES["ntv2"], 6, seed=0)[0] == dna
    assert bench.random_inputs(bench.FAMILIES["ntv2"], 6, seed=1)[0] != dna


def test_step_timer_reports_the_median_of_the_steps_after_warmup(bench):
    timer = bench.StepTimer()
    timer.seconds = [50.0, 9.0, 3.0, 1.0, 2.0, 100.0, 4.0]
    timer.cpu_seconds = [5.0, 5.0, 1.0, 1.0, 1.0, 2.0, 1.0]
    summary = timer.summary(warmup=2)
    assert summary["s_per_step"] == 3.0 and summary["cpu_s_per_step"] == 1.0 and summary["timed_steps"] == 5


def _result(family, path, s=None, cpu=None, **extra):
    out = {"family": family, "path": path, "precision": "fp32", **extra}
    if s is not None:
        out.update(s_per_step=s, cpu_s_per_step=cpu, peak_gb=1.5, params=8e6, tokens_per_seq=514)
    return out


def test_table_puts_gr_ft_next_to_plain_with_ratios_and_footnotes_errors(bench):
    results = [
        _result("esm2", "grft", 6.0, 2.0), _result("esm2", "plain", 3.0, 4.0),
        _result("ntv2", "grft", 1.0, 1.0), _result("ntv2", "plain", error="from_pretrained: size mismatch"),
        _result("hyena", "grft", 2.0, 1.0),
        _result("hyena", "plain", 4.0, 2.0, error="first training step: TypeError: attention_mask"),
    ]
    rows, notes = bench.table_rows(results)
    esm, ntv2, hyena = rows
    assert (esm["grft_s"], esm["plain_s"], esm["ratio"], esm["cpu_ratio"]) == ("6.00", "3.00", "2.00", "0.50")
    assert esm["params_m"] == "8.0" and esm["tokens"] == "514" and esm["plain_gb"] == "1.50"
    assert ntv2["plain_s"] == "fails [1]" and ntv2["ratio"] == "-" and ntv2["plain_gb"] == "-"
    assert hyena["plain_s"] == "4.00 (workaround [2])" and hyena["ratio"] == "0.50"
    assert notes == ["ntv2 plain: from_pretrained: size mismatch",
                     "hyena plain: first training step: TypeError: attention_mask"]


def test_markdown_block_is_replaced_between_its_markers_and_prose_is_kept(bench, tmp_path):
    report = {"command": "python benchmarks/backbone_step_time.py", "threads": 1, "steps": 5, "warmup": 2,
              "slow_steps": 3, "torch": "t", "transformers": "tf", "peft": "p",
              "cpu": {"model": "CPU X", "logical_cpus": 2, "amx_bf16": False, "avx512_bf16": True},
              "machine_start": {"loadavg": (1.0, 2.0, 3.0), "time_utc": "t0"},
              "machine_end": {"loadavg": (4.0, 5.0, 6.0), "time_utc": "t1"}}
    rows, notes = bench.table_rows([_result("esm2", "grft", 6.0, 2.0), _result("esm2", "plain", 3.0, 4.0)])
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Title\n\nintro\n\n{bench.TABLE_START}\nold numbers\n{bench.TABLE_END}\n\n## Reading it\nprose\n")
    bench.write_markdown(doc, report, rows, notes)
    text = doc.read_text()
    assert text.startswith("# Title\n\nintro\n\n") and text.endswith("## Reading it\nprose\n")
    assert "old numbers" not in text and "| esm2 (fp32) | 8.0 | 514 | 6.00 | 3.00 | 2.00 |" in text
    assert "CPU X" in text and "1.00/2.00/3.00" in text and "(3 for DNABERT-2)" in text
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_whole_run_on_shrunk_hyena_times_both_paths(bench, tmp_path):
    """End to end on the shrunk HyenaDNA fixture (about 1-2 min on 2 shared cores)."""
    source = SHARED_MODELS / "hyenadna-small-32k-seqlen-hf"
    if not source.is_dir():
        pytest.skip(f"{source} is absent (../shared/models is provided beside the checkout in CI)")
    models = tmp_path / "models"
    subprocess.run([sys.executable, str(source / "make_weights.py"), str(models / source.name)], check=True,
                   capture_output=True, env={**os.environ, "PUBLISHED_SIZE": "0"})
    out = tmp_path / "steps.json"
    bench.main(["--families", "hyena", "--steps", "1", "--warmup", "1", "--models-dir", str(models),
                "--output", str(out), "--trust-remote-code"])
    results = {r["path"]: r for r in json.loads(out.read_text())["results"]}
    assert results["grft"]["s_per_step"] > 0 and results["grft"]["peak_gb"] > 0.1
    assert results["grft"]["tokens_per_seq"] == 1001
    # peft's SEQ_CLS wrapper passes attention_mask, which HyenaDNA's forward does not take: recorded, then worked around
    assert "attention_mask" in results["plain"]["error"] and results["plain"]["s_per_step"] > 0
    shutil.rmtree(models)
