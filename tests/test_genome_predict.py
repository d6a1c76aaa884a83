"""gr-ft predict --genome: window coordinates, scores equal to the normal prediction path, bedGraph tiling,
windows longer than the model, N windows, BED input, and clear errors for regions off the contig."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from genome_fixtures import ECOLI_CONTIG, ecoli_bases, write_fasta
from test_interpret import make_predictor, random_model, tiny_run  # noqa: F401 (tiny_run is a fixture)

from gr_ft.cli import main as cli_main
from gr_ft.inference import window_starts
from gr_ft.genome import Interval, open_genome, parse_region, read_bed
from gr_ft.tokenization import SequenceTokenizer
from gr_ft.tracks import TilePlan, bed_windows, count_tiles, predict_genome, tiled_windows
from gr_ft.utils import cache_dir

pytest.importorskip("pyfaidx", reason='pyfaidx missing: pip install -e ".[test]"')

SLICE_BP = 4000


@pytest.fixture(autouse=True)
def no_progress_bars(monkeypatch):  # the cache lives in tmp_path already (conftest)
    monkeypatch.setenv("GRFT_PROGRESS", "0")


@pytest.fixture(scope="module")
def bases() -> str:
    return ecoli_bases(SLICE_BP)


@pytest.fixture
def genome(tmp_path, bases):
    return open_genome(write_fasta(tmp_path / "slice.fa", {ECOLI_CONTIG: bases}))


@pytest.fixture(scope="module")
def predictor():
    tokenizer = SequenceTokenizer.from_pretrained("nucleotide")
    return make_predictor(random_model(tokenizer, seed=3), tokenizer, max_length=66)  # 64 bases per model window


def read_rows(path):
    return [line.split("\t") for line in path.read_text().splitlines() if not line.startswith(("#", "track"))]


def test_window_i_starts_at_start_plus_i_stride_and_scores_equal_the_normal_path(predictor, genome, bases, tmp_path):
    region = parse_region(f"{ECOLI_CONTIG}:101-1,100", genome)  # 1-based inclusive -> [100, 1100)
    assert (region.start, region.end) == (100, 1100)
    plan = TilePlan(window_bp=60, stride_bp=45)
    out = tmp_path / "scores.bed"
    summary = predict_genome(predictor, tiled_windows(genome, [region], plan, batch_windows=7), out,
                             tiled_stride=plan.stride_bp, progress=False)
    rows = read_rows(out)
    expected_starts = [100 + i * 45 for i in range((1000 - 60) // 45 + 1)]
    assert len(rows) == summary.windows == count_tiles(region, plan) == len(expected_starts)
    assert [(r[0], int(r[1]), int(r[2])) for r in rows] == [(ECOLI_CONTIG, s, s + 60) for s in expected_starts]
    assert int(rows[-1][2]) <= 1100 < int(rows[-1][2]) + 45  # no window past the region; the tail is shorter
    assert out.read_text().splitlines()[0] == "#chrom\tstart\tend\tname\tprob_0\tprob_1"
    direct = predictor.predict([bases[s : s + 60] for s in expected_starts])  # slicing the string, not pyfaidx
    np.testing.assert_allclose(np.array([[float(r[4]), float(r[5])] for r in rows]),
                               direct[["prob_0", "prob_1"]].to_numpy(), atol=1e-5)
    assert np.ptp(direct["prob_1"]) > 1e-4  # the windows do get different scores


def test_windows_longer_than_the_model_use_the_sliding_window_rule(predictor, genome, bases, tmp_path):
    plan = TilePlan(window_bp=150)  # 150 bases > the model's 64: read in sliding windows and aggregated
    out = tmp_path / "long.bed"
    predict_genome(predictor, tiled_windows(genome, [Interval(ECOLI_CONTIG, 0, 600)], plan), out,
                   tiled_stride=150, progress=False)
    rows = read_rows(out)
    assert [int(r[1]) for r in rows] == [0, 150, 300, 450]
    direct = predictor.predict([bases[s : s + 150] for s in (0, 150, 300, 450)])
    assert predictor.engine.run([bases[:150]]).windows == [len(window_starts(150, 64, 32))]  # 4 model windows
    np.testing.assert_allclose([float(r[5]) for r in rows], direct["prob_1"], atol=1e-5)


def test_bedgraph_writes_one_non_overlapping_track_per_class(predictor, genome, tmp_path):
    plan = TilePlan(window_bp=64, stride_bp=16)
    out = tmp_path / "tracks.bedgraph"
    summary = predict_genome(predictor, tiled_windows(genome, [Interval(ECOLI_CONTIG, 0, 400)], plan), out,
                             fmt="bedgraph", tiled_stride=16, progress=False)
    assert [p.name for p in summary.files] == ["tracks.prob_0.bedgraph", "tracks.prob_1.bedgraph"]
    rows = read_rows(summary.files[1])
    assert summary.files[1].read_text().startswith('track type=bedGraph name="prob_1"')
    starts, ends = [int(r[1]) for r in rows], [int(r[2]) for r in rows]
    assert starts[0] == (64 - 16) // 2 and all(e - s == 16 for s, e in zip(starts, ends))
    assert all(a == b for a, b in zip(ends, starts[1:]))  # central stride bins tile without overlap
    zero, one = np.array([float(r[3]) for r in read_rows(summary.files[0])]), np.array([float(r[3]) for r in rows])
    np.testing.assert_allclose(zero + one, 1.0, atol=1e-5)


def test_windows_with_n_are_skipped_and_counted(predictor, tmp_path, bases):
    genome = open_genome(write_fasta(tmp_path / "n.fa", {"c": bases[:100] + "N" + bases[101:400]}))
    out = tmp_path / "n.bed"
    summary = predict_genome(predictor, tiled_windows(genome, [Interval("c", 0, 400)], TilePlan(50)), out,
                             tiled_stride=50, progress=False)
    assert summary.skipped_n == 1 and summary.windows == 7
    assert 100 not in [int(r[1]) for r in read_rows(out)]


def test_gzip_genome_is_decompressed_once_into_the_cache(tmp_path, bases):
    gz = tmp_path / "slice.fa.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write(f">{ECOLI_CONTIG}\n" + "".join(bases[i : i + 70] + "\n" for i in range(0, len(bases), 70)))
    genome = open_genome(gz)
    assert genome.fetch(ECOLI_CONTIG, 1000, 1050) == bases[1000:1050]
    cached = list((cache_dir() / "genomes").glob("*slice.fa"))  # the test's own cache (conftest)
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    open_genome(gz)
    assert cached[0].stat().st_mtime_ns == mtime  # reused, not written again


# ---------------------------------------------------------------- command line


def test_cli_bed_input_keeps_names_and_matches_gr_ft_predict(tiny_run, tmp_path, bases):
    from gr_ft.predictor import load_run

    fasta = write_fasta(tmp_path / "g.fa", {ECOLI_CONTIG: bases})
    bed = tmp_path / "peaks.bed"
    bed.write_text(f"track name=peaks\n{ECOLI_CONTIG}\t10\t70\tpeak_a\n{ECOLI_CONTIG}\t500\t700\tpeak_b\n")
    out = tmp_path / "peaks.scored.bed"
    assert cli_main(["predict", str(tiny_run), "--genome", str(fasta), "--bed", str(bed), "--output", str(out)]) == 0
    rows = read_rows(out)
    assert [(r[1], r[2], r[3]) for r in rows] == [("10", "70", "peak_a"), ("500", "700", "peak_b")]
    direct = load_run(tiny_run).predict([bases[10:70], bases[500:700]])
    np.testing.assert_allclose([float(r[5]) for r in rows], direct["prob_1"], atol=1e-5)


def test_cli_tiles_regions_into_bedgraph(tiny_run, tmp_path, bases, capsys):
    fasta = write_fasta(tmp_path / "g.fa", {ECOLI_CONTIG: bases})
    out = tmp_path / "t.bedgraph"
    assert cli_main(["predict", str(tiny_run), "--genome", str(fasta), "--window", "64", "--stride", "32",
                     "--regions", f"{ECOLI_CONTIG}:1-320,{ECOLI_CONTIG}:1,001-1,320", "--output", str(out)]) == 0
    rows = read_rows(tmp_path / "t.prob_1.bedgraph")
    assert [int(r[1]) for r in rows] == [16 + 32 * i for i in range(9)] + [1016 + 32 * i for i in range(9)]
    assert "wrote 18 windows" in capsys.readouterr().out


@pytest.mark.parametrize("extra,message", [
    (["--window", "64", "--regions", f"{ECOLI_CONTIG}:3001-9000"], f"--regions {ECOLI_CONTIG}:3001-9000: interval"),
    (["--window", "64", "--regions", "chrZ:1-100"], "contig 'chrZ' is not in the genome"),
    (["--window", "64", "--regions", "chr1:100"], "write chr:start-end"),
    (["--bed", "BED", "--window", "64"], "either --bed FILE"),
    (["--window", "0"], "--window must be >= 1"),
])
def test_cli_bad_regions_exit_2_with_a_clear_message(extra, message, tiny_run, tmp_path, bases, capsys):
    fasta = write_fasta(tmp_path / "g.fa", {ECOLI_CONTIG: bases[:5000]})
    extra = [str(tmp_path / "x.bed") if e == "BED" else e for e in extra]
    assert cli_main(["predict", str(tiny_run), "--genome", str(fasta), "--output", str(tmp_path / "o.bed")]
                    + extra) == 2
    err = capsys.readouterr().err
    assert message in err and len([line for line in err.splitlines() if line.startswith("gr-ft: error:")]) == 1
    assert "Loading weights" not in err  # refused before the model loads
    if "3001-9000" in message:
        assert f"runs off contig {ECOLI_CONTIG}, which has 4,000 bp" in err
    assert not (tmp_path / "o.bed").exists()


def test_bed_line_off_the_contig_names_the_file_and_line(genome, tmp_path):
    bed = tmp_path / "bad.bed"
    bed.write_text(f"{ECOLI_CONTIG}\t0\t100\n{ECOLI_CONTIG}\t3990\t4100\n")
    with pytest.raises(ValueError, match=f"{bed}:2: interval .* runs off contig"):
        list(bed_windows(genome, read_bed(bed, genome)))


def test_sequence_input_still_works_and_genome_flags_need_genome(tiny_run, tmp_path, capsys):
    seqs = tmp_path / "s.txt"
    seqs.write_text("ACGTACGTACGTTTGA\nGGGGCCCCAAAATTTT\n")
    assert cli_main(["predict", str(tiny_run), "--input", str(seqs), "--output", str(tmp_path / "p.csv")]) == 0
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "id,prediction,prob_0,prob_1"
    assert cli_main(["predict", str(tiny_run), "--input", str(seqs), "--window", "10", "--output", "-"]) == 2
    assert "--window apply to genome-wide prediction; add --genome" in capsys.readouterr().err
    assert cli_main(["predict", str(tiny_run), "--output", "-"]) == 2


def test_atomic_writer_leaves_no_file_when_writing_fails(tmp_path):
    from gr_ft.utils import atomic_writer

    target = tmp_path / "scores.bed"
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as handle:
            handle.write("chr1\t0\t10\t0.5\n")
            raise RuntimeError("model crashed half way")
    assert not target.exists() and not list(tmp_path.iterdir())
    with atomic_writer(target) as handle:
        handle.write("done\n")
    assert target.read_text() == "done\n" and [p.name for p in tmp_path.iterdir()] == ["scores.bed"]
