"""gr-ft motifs: TF-MoDISco on gr-ft interpret's attributions, TOMTOM against JASPAR; known answer on a planted motif.

The model is hand-built (tests/interpret_models.py): it scans for the CTCF motif that
``synthetic:tf_binding`` plants, so the motif it reads is known, and ``gr-ft motifs`` must recover
that motif and name JASPAR's CTCF matrix (MA0139) among its best matches. A slow test asks the same of
a model trained on the grammar (the kmer6 BERT of the planted-site test).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from interpret_models import motif_scanner_predictor

from gr_ft.cli import main as cli_main

needs_motif_extra = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("captum", "logomaker", "modiscolite", "memelite", "pyjaspar")),
    reason='modisco-lite/memelite/pyjaspar missing: pip install -e ".[test]"')
CTCF_JASPAR = "MA0139"  # JASPAR CORE CTCF (MA0139.1 in 2014-2022, MA0139.2 since 2024)
FAST_MOTIF_FLAGS = ["--window-bp", "15", "--flank-bp", "5", "--min-seqlets", "20", "--min-cluster-seqlets", "10",
                    "--leiden-runs", "5"]


def reverse_complement(sequence: str) -> str:
    return sequence[::-1].translate(str.maketrans("ACGT", "TGCA"))


def holds_planted_core(consensus: str) -> bool:
    """The planted CTCF core on either strand, somewhere in ``consensus``, its N positions free."""
    from gr_ft.synthetic import MOTIF_CONSENSUS

    core = MOTIF_CONSENSUS["CTCF"]
    return any(any(all(c in ("N", x) for c, x in zip(motif, consensus[s:s + len(motif)]))
                   for s in range(len(consensus) - len(motif) + 1)) for motif in (core, reverse_complement(core)))


def assert_planted_ctcf_named_by_jaspar(motif: dict) -> None:
    assert holds_planted_core(motif["consensus"]), motif["consensus"]
    assert motif["name"].startswith("pos_") and motif["seqlets"] >= 20
    # JASPAR CTCF among the 3 best of 1,019 matrices. Not significant after correction (measured p ~1e-3,
    # q ~0.3-0.5): the planted 14-bp core is a rough CTCF-like consensus (docs/interpret.md)
    ids = [m["matrix_id"].split(".")[0] for m in motif["matches"]]
    assert CTCF_JASPAR in ids, motif["matches"]
    assert all(0 < m["p_value"] <= m["q_value"] <= 1 for m in motif["matches"])


def interpret_planted(tmp_path, monkeypatch, n: int, length_bp: int = 60):
    """``gr-ft interpret --method ism`` of the CTCF scanner on ``n`` tf_binding sequences; returns the folder."""
    from gr_ft.synthetic import MOTIFS, make_task

    predictor = motif_scanner_predictor(MOTIFS["CTCF"], activation="softplus")
    monkeypatch.setattr("gr_ft.predictor.load_run", lambda *args, **kwargs: predictor)
    frame = make_task("tf_binding", n, seed=123, length_bp=length_bp)
    frame.to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "interp"
    assert cli_main(["interpret", "scanner", "--input", str(tmp_path / "in.csv"), "--method", "ism", "--out", str(out),
                     "--max-plots", "0", "--batch-size", "512"]) == 0
    return out


@needs_motif_extra
@pytest.mark.slow  # ~20 s on an idle core, 40-100 s on a shared one: kept out of the fast suite
def test_motifs_recovers_the_planted_ctcf_motif_and_names_jaspar_ctcf(tmp_path, monkeypatch, capsys):
    folder = interpret_planted(tmp_path, monkeypatch, 240)
    assert cli_main(["motifs", str(folder)] + FAST_MOTIF_FLAGS) == 0
    printed = capsys.readouterr().out
    summary = json.loads((folder / "motifs" / "motifs.json").read_text())
    assert summary["method"] == "ism" and summary["sequences"] == 240
    top = max(summary["motifs"], key=lambda m: m["seqlets"])
    print(printed, top["consensus"], top["matches"])
    assert_planted_ctcf_named_by_jaspar(top)
    # report: a logo per motif, the table of classes
    report = (folder / "motifs" / "report.md").read_text()
    assert f"logos/{top['name']}.png" in report and "Motif x class" in report and "MA0139" in report
    assert (folder / "motifs" / "logos" / f"{top['name']}.png").read_bytes()[:4] == b"\x89PNG"
    # every sequence is explained for class 1 (the binary default): one class, holding all the motif's seqlets
    rows = [r for r in summary["class_table"] if r["motif"] == top["name"]]
    assert sum(r["seqlets"] for r in rows) == top["seqlets"]


@needs_motif_extra
@pytest.mark.slow  # training ~2-3 min, ISM of 800 x 101 bp ~2-6 min, modisco + TOMTOM ~2-5 min (docs/interpret.md)
def test_motifs_of_a_trained_kmer_model_recover_the_planted_ctcf_motif(planted_run, tmp_path):
    """The known answer of the test above, but from a model that learned the grammar: the kmer6 BERT of the
    planted-site test (tests/interpret_models.py), ISM of 800 sequences of 101 bp, modisco-lite's defaults."""
    from gr_ft.synthetic import make_task

    run, metrics, _ = planted_run("kmer6")
    make_task("tf_binding", 800, seed=123).to_csv(tmp_path / "in.csv", index=False)  # seeds training never uses
    folder = tmp_path / "interp"
    assert cli_main(["interpret", str(run), "--input", str(tmp_path / "in.csv"), "--method", "ism", "--out",
                     str(folder), "--max-plots", "0", "--batch-size", "512"]) == 0
    assert cli_main(["motifs", str(folder)]) == 0
    summary = json.loads((folder / "motifs" / "motifs.json").read_text())
    top = max(summary["motifs"], key=lambda m: m["seqlets"])
    print(f"test AUROC {metrics['test']['auroc']:.3f}; motifs", [(m["consensus"], m["seqlets"], m["matches"])
                                                                 for m in summary["motifs"]])
    assert_planted_ctcf_named_by_jaspar(top)


def test_motifs_refuses_a_folder_without_attributions(tmp_path, capsys):
    (tmp_path / "attention.npz").write_bytes(b"")
    assert cli_main(["motifs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no attributions (ism.npz, ig.npz, ixg.npz, saliency.npz)" in err and err.count("\n") == 1
    assert cli_main(["motifs", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "ig.npz").write_bytes(b"not a zip")
    assert cli_main(["motifs", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err


@needs_motif_extra
def test_motifs_refuses_too_few_sequences_and_protein(tmp_path, monkeypatch, capsys):
    folder = interpret_planted(tmp_path, monkeypatch, 6)
    assert cli_main(["motifs", str(folder)]) == 2
    assert "needs at least 10 sequences, got 6" in capsys.readouterr().err
    with np.load(folder / "ism.npz") as arrays:
        data = dict(arrays)
    data["sequences"] = np.array(["MKV" * 20] * 6)
    np.savez(folder / "ism.npz", **data)
    assert cli_main(["motifs", str(folder)]) == 2
    assert "motifs need DNA attributions" in capsys.readouterr().err


def test_hypothetical_scores_from_ism_are_mean_centred():
    from gr_ft.interpret.motifs import hypothetical_from_ism, one_hot_dna

    effects = np.array([[[0.0, -1.0, -1.0, -2.0], [0.5, 0.0, np.nan, 0.5]]])  # 1 sequence, 2 bases (A, C)
    hypothetical = hypothetical_from_ism(effects)
    np.testing.assert_allclose(hypothetical.sum(-1), 0, atol=1e-12)
    np.testing.assert_allclose(hypothetical[0, 0], [1.0, 0.0, 0.0, -1.0])
    contribution = (one_hot_dna(["AC"], 2) * hypothetical).sum(-1)
    np.testing.assert_allclose(contribution, [[1.0, -0.25]])  # minus the mean substitution effect


@needs_motif_extra
def test_jaspar_read_from_pyjaspars_sqlite_equals_its_fetch_motifs():
    from pyjaspar import jaspardb

    from gr_ft.interpret.motifs import load_jaspar

    jaspar = load_jaspar("JASPAR2024")
    expected = {m.matrix_id: (m.name, np.array([m.counts[b] for b in "ACGT"]))
                for m in jaspardb(release="JASPAR2024").fetch_motifs(collection="CORE", tax_group=["vertebrates"])}
    assert sorted(jaspar.ids) == sorted(expected) and len(jaspar.ids) == 879
    for matrix_id, name, ppm in zip(jaspar.ids, jaspar.names, jaspar.ppms):
        counts = expected[matrix_id][1] + 0.2  # the default pseudocount, 0.8 over 4 letters
        assert name == expected[matrix_id][0]
        np.testing.assert_allclose(ppm, counts / counts.sum(0))
    assert "MA0139.2" in jaspar.ids and jaspar.names[jaspar.ids.index("MA0139.2")] == "CTCF"
    with pytest.raises(ValueError, match="--jaspar-release 'JASPAR1999'"):
        load_jaspar("JASPAR1999")
