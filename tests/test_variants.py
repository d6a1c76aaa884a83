"""gr-ft variants: every stated rule on a VCF written over a real E. coli slice, a known-answer sign on a
hand-weighted motif model, zero-shot masked-marginal scores, and one-line errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genome_fixtures import ECOLI_CONTIG, ecoli_bases, write_fasta
from interpret_models import MotifScannerBackbone, make_predictor
from test_interpret import tiny_run  # noqa: F401 (a fixture)

from gr_ft.cli import main as cli_main
from gr_ft.genome import open_genome, reverse_complement
from gr_ft.interpret.variants import (SKIP_REASONS, VariantConfig, VariantRecord, read_vcf, score_variants, supervised_scorer,
                                      variant_windows)
from gr_ft.modeling import SequenceModel
from gr_ft.tokenization import SequenceTokenizer

pytest.importorskip("cyvcf2", reason='cyvcf2 missing: pip install -e ".[test]"')
pytest.importorskip("pyfaidx", reason='pyfaidx missing: pip install -e ".[test]"')

SLICE_BP = 3000
N_START, N_END = 2000, 2010  # a stretch of N planted in the slice (the real genome has none)
HEADER = "##fileformat=VCFv4.2\n##contig=<ID={contig}>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


@pytest.fixture(autouse=True)
def no_progress_bars(monkeypatch):  # the cache lives in tmp_path already (conftest)
    monkeypatch.setenv("GRFT_PROGRESS", "0")


@pytest.fixture(scope="module")
def slice_bases() -> str:
    bases = ecoli_bases(SLICE_BP)
    return bases[:N_START] + "N" * (N_END - N_START) + bases[N_END:]


@pytest.fixture
def genome_file(tmp_path, slice_bases):
    return write_fasta(tmp_path / "ecoli_slice.fa", {ECOLI_CONTIG: slice_bases})


def write_vcf(path, rows, contig=ECOLI_CONTIG):
    path.write_text(HEADER.format(contig=contig) + "".join("\t".join(map(str, r)) + "\t.\t.\t.\n" for r in rows))
    return path


def other_base(base: str) -> str:
    return "ACGT"["ACGT".index(base) - 1]


def rule_rows(bases: str) -> list[tuple]:
    """One VCF record per rule; POS is 1-based, so bases[pos - 1] is the REF base."""
    snv, multi, deletion, insertion = 500, 800, 1200, 1500
    wrong = other_base(bases[999])
    return [
        (ECOLI_CONTIG, snv, "snv", bases[snv - 1], other_base(bases[snv - 1])),
        (ECOLI_CONTIG, 1000, "wrong_ref", wrong, other_base(wrong)),
        (ECOLI_CONTIG, multi, "multi", bases[multi - 1], ",".join(b for b in "ACG" if b != bases[multi - 1])[:3]),
        (ECOLI_CONTIG, deletion, "del", bases[deletion - 1 : deletion + 2], bases[deletion - 1]),
        (ECOLI_CONTIG, insertion, "ins", bases[insertion - 1], bases[insertion - 1] + "TTA"),
        (ECOLI_CONTIG, N_START - 5, "near_n", bases[N_START - 6], other_base(bases[N_START - 6])),
        (ECOLI_CONTIG, SLICE_BP + 40, "past_end", "A", "C"),
        (ECOLI_CONTIG, 10, "contig_start", bases[9], other_base(bases[9])),
        ("plasmid_F", 100, "other_contig", "A", "C"),
        (ECOLI_CONTIG, 2500, "symbolic", bases[2499], "<DEL>"),
    ]


def read_tsv(path):
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


# ---------------------------------------------------------------- rules, through the command line


def test_each_rule_gives_its_row_in_vcf_order(tiny_run, genome_file, slice_bases, tmp_path, capsys, caplog):
    rows = rule_rows(slice_bases)
    vcf = write_vcf(tmp_path / "calls.vcf", rows)
    out = tmp_path / "scores.tsv"
    assert cli_main(["variants", str(tiny_run), "--vcf", str(vcf), "--genome", str(genome_file), "--out", str(out),
                     "--output", "prob"]) == 0
    printed = capsys.readouterr()
    table = read_tsv(out)
    n_multi = len(rows[2][4].split(","))
    assert [r["id"] for r in table] == ["snv", "wrong_ref"] + ["multi"] * n_multi + [
        "del", "ins", "near_n", "past_end", "contig_start", "other_contig", "symbolic"]
    first_record_line = 4  # three header lines
    assert [int(r["line"]) for r in table] == [first_record_line + i for i in range(2)] + \
        [first_record_line + 2] * n_multi + [first_record_line + 3 + i for i in range(7)]
    status = {r["id"] + r["alt"]: (r["status"], r["reason"].split(":")[0]) for r in table}
    by_id = {r["id"]: r for r in table}
    assert status["snv" + rows[0][4]] == ("scored", ".")
    assert by_id["wrong_ref"]["status"] == "skipped" and by_id["wrong_ref"]["reason"].startswith(
        f"ref_mismatch: VCF REF {rows[1][3]}, genome has {slice_bases[999]}")
    assert [r["alt"] for r in table if r["id"] == "multi"] == rows[2][4].split(",")
    assert all(r["status"] == "scored" for r in table if r["id"] == "multi")
    assert by_id["del"]["status"] == by_id["ins"]["status"] == "scored"
    expected = {"near_n": "n_in_window", "past_end": "position_off_contig", "contig_start": "window_off_contig",
                "other_contig": "unknown_contig", "symbolic": "non_acgt_allele"}
    assert {k: by_id[k]["reason"].split(":")[0] for k in expected} == expected
    assert all(by_id[k]["score"] == "" and by_id[k]["status"] == "skipped" for k in expected)
    assert all(r["reason"].split(":")[0] in SKIP_REASONS for r in table if r["status"] == "skipped")
    assert "1 ref_mismatch" in printed.out and f"{3 + n_multi} of {9 + n_multi} alleles scored" in printed.out
    assert f"(lines {first_record_line + 1})" in caplog.text  # the mismatch is logged with its VCF line
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic write left no temporary file


def test_scores_are_alt_minus_ref_of_the_run_on_centred_windows(tiny_run, genome_file, slice_bases, tmp_path):
    from gr_ft.predictor import load_run

    rows = rule_rows(slice_bases)
    vcf = write_vcf(tmp_path / "calls.vcf", [rows[0], rows[3], rows[4]])
    out = tmp_path / "scores.tsv"
    assert cli_main(["variants", str(tiny_run), "--vcf", str(vcf), "--genome", str(genome_file), "--out", str(out),
                     "--both-strands"]) == 0
    table = read_tsv(out)
    predictor = load_run(tiny_run)
    window = 64  # kmer3 at data.max_length=64: 62 tokens = 64 bases
    genome = open_genome(genome_file)
    for row, (chrom, pos, _, ref, alt) in zip(table, [rows[0], rows[3], rows[4]]):
        begin = pos - 1
        ref_win = slice_bases[begin - (window - len(ref)) // 2 : begin] + ref
        ref_win += slice_bases[begin + len(ref) : begin + len(ref) + window - len(ref_win)]
        alt_win = slice_bases[begin - (window - len(alt)) // 2 : begin] + alt
        alt_win += slice_bases[begin + len(ref) : begin + len(ref) + window - len(alt_win)]
        assert len(ref_win) == len(alt_win) == window
        windows, _ = variant_windows(VariantRecord(1, chrom, pos, ".", ref, alt), genome, window)
        assert (windows.ref, windows.alt) == (ref_win, alt_win)
        logits = predictor.logits([ref_win, alt_win, reverse_complement(ref_win), reverse_complement(alt_win)])
        delta = ((logits[1] - logits[0]) + (logits[3] - logits[2])) / 2
        assert float(row["delta_logit_1"]) == pytest.approx(float(delta[1]), abs=1e-4)
        assert float(row["score"]) == pytest.approx(float(delta[1]), abs=1e-4)
        assert abs(float(row["score"])) > 0  # the model does respond to each of these


# ---------------------------------------------------------------- known answer: destroying a planted motif


def test_destroying_a_planted_motif_lowers_the_score_and_a_distant_snv_does_not(slice_bases, tmp_path):
    from gr_ft.synthetic import MOTIFS

    tokenizer = SequenceTokenizer.from_pretrained("nucleotide")
    model = SequenceModel(MotifScannerBackbone(tokenizer, MOTIFS["CTCF"]), "binary", 2, head_dropout=0.0)
    with torch.no_grad():  # class-1 logit = mean over tokens of relu(CTCF log-odds - 8), class 0 its negative
        model.task_head[1].weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model.task_head[1].bias.zero_()
    predictor = make_predictor(model, tokenizer, max_length=128)
    site = "".join("ACGT"[i] for i in MOTIFS["CTCF"].argmax(1))  # CCGCGAGGAGGCAG
    at = 700
    bases = slice_bases[:at] + site + slice_bases[at + len(site) :]
    genome = open_genome(write_fasta(tmp_path / "planted.fa", {ECOLI_CONTIG: bases}))
    core = at + 3  # 0-based: site[3] = G, a high-information base (not one of the consensus N)
    records = [VariantRecord(1, ECOLI_CONTIG, core + 1, "site", bases[core], "T"),
               VariantRecord(2, ECOLI_CONTIG, 1500, "far", bases[1499], other_base(bases[1499]))]
    rows = score_variants(supervised_scorer(predictor, "logit", both_strands=True), genome, records,
                          VariantConfig(window_bp=126))
    site_row, far_row = rows
    assert site_row.status == far_row.status == "scored"
    assert site_row.ref_values[1] > 0  # the window holds the site: the motif unit fires
    assert site_row.deltas[1] < -0.01, site_row
    assert far_row.deltas[1] == pytest.approx(0.0, abs=1e-6)  # 800 bp away: no site in either window


# ---------------------------------------------------------------- zero-shot


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    """A tiny kmer3 BERT masked LM saved as gr-ft pretrain saves one (save_pretrained model + tokenizer)."""
    from gr_ft.config import ModelConfig
    from gr_ft.pretraining import build_mlm_model

    folder = tmp_path_factory.mktemp("mlm") / "pretrained"
    tokenizer = SequenceTokenizer.from_pretrained("kmer3")
    torch.manual_seed(0)
    model = build_mlm_model(ModelConfig(arch="bert", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
                            tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model.eval(), tokenizer


def test_zero_shot_masks_every_kmer_covering_the_snv_and_scores_the_mean_log_ratio(tiny_mlm, genome_file,
                                                                                     slice_bases, tmp_path):
    folder, model, tokenizer = tiny_mlm
    rows = rule_rows(slice_bases)
    vcf = write_vcf(tmp_path / "calls.vcf", [rows[0], rows[3]])
    out = tmp_path / "llr.tsv"
    assert cli_main(["variants", str(folder), "--zero-shot", "--window-bp", "41", "--vcf", str(vcf), "--genome",
                     str(genome_file), "--out", str(out)]) == 0
    snv, deletion = read_tsv(out)
    assert deletion["status"] == "skipped" and deletion["reason"].startswith("not_snv")
    # by hand: a 41-bp window, the variant at index 20; kmer3 tokens 18, 19, 20 (windows [18,21) [19,22) [20,23))
    # cover it, i.e. input positions 19, 20, 21 after [CLS]
    pos, ref, alt = rows[0][1], rows[0][3], rows[0][4]
    ref_win = slice_bases[pos - 1 - 20 : pos - 1 + 21]
    alt_win = ref_win[:20] + alt + ref_win[21:]
    ids = torch.tensor([tokenizer.encode([ref_win])["input_ids"][0]])
    masked = ids.clone()
    masked[0, 19:22] = tokenizer.mask_token_id
    with torch.no_grad():
        log_probs = model(input_ids=masked, attention_mask=torch.ones_like(ids)).logits[0].log_softmax(-1)
    vocab = tokenizer.hf.get_vocab()
    ratios = [log_probs[19 + j, vocab[alt_win[18 + j : 21 + j]]] - log_probs[19 + j, vocab[ref_win[18 + j : 21 + j]]]
              for j in range(3)]
    assert float(snv["delta_logp"]) == pytest.approx(float(torch.stack(ratios).mean()), abs=1e-4)
    assert float(snv["score"]) == float(snv["delta_logp"]) and snv["status"] == "scored"


def test_zero_shot_known_answer_with_a_head_that_favours_a(tmp_path, genome_file, slice_bases):
    """An MLM head whose logits are its bias alone: log p(k-mer) = 5 x (A count) - const, whatever the context.

    Each of the 3 masked kmer3 tokens changes by +5 when a base becomes A and by -5 when an A goes, so the
    mean log ratio is exactly +5 / -5 / 0 for X->A / A->X / X->Y (no A involved), on either strand averaged
    (the reverse complement turns A into T: a T->X change then costs nothing and X->T gains nothing).
    """
    from gr_ft.config import ModelConfig
    from gr_ft.pretraining import build_mlm_model

    tokenizer = SequenceTokenizer.from_pretrained("kmer3")
    model = build_mlm_model(ModelConfig(arch="bert", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
                            tokenizer)
    with torch.no_grad():
        transform = model.cls.predictions.transform
        for parameter in (transform.dense.weight, transform.dense.bias, transform.LayerNorm.weight,
                          transform.LayerNorm.bias):
            parameter.zero_()  # hidden state -> 0, so logits = bias
        bias = torch.zeros(len(tokenizer.hf))
        for token, index in tokenizer.hf.get_vocab().items():
            if len(token) == 3 and set(token) <= set("ACGT"):
                bias[index] = 5.0 * token.count("A")
        model.cls.predictions.bias.copy_(bias)
    folder = tmp_path / "favours_a"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    picks = {}
    for pos in range(300, 600):  # 1-based positions of a G, a C and an A with no A/T next to them
        ref = slice_bases[pos - 1]
        if ref in "GCA" and ref not in picks and not set(slice_bases[pos - 3 : pos + 2].replace(ref, "", 1)) & set("AT"):
            picks[ref] = pos
    rows = [(ECOLI_CONTIG, picks["G"], "g_to_a", "G", "A"), (ECOLI_CONTIG, picks["C"], "c_to_g", "C", "G")]
    if "A" in picks:
        rows.append((ECOLI_CONTIG, picks["A"], "a_to_c", "A", "C"))
    vcf = write_vcf(tmp_path / "calls.vcf", rows)
    out = tmp_path / "llr.tsv"
    assert cli_main(["variants", str(folder), "--zero-shot", "--window-bp", "41", "--vcf", str(vcf), "--genome",
                     str(genome_file), "--out", str(out)]) == 0
    scores = {r["id"]: float(r["score"]) for r in read_tsv(out)}
    assert scores["g_to_a"] == pytest.approx(5.0, abs=1e-4)
    assert scores["c_to_g"] == pytest.approx(0.0, abs=1e-4)
    if "a_to_c" in scores:
        assert scores["a_to_c"] == pytest.approx(-5.0, abs=1e-4)
    assert cli_main(["variants", str(folder), "--zero-shot", "--both-strands", "--window-bp", "41", "--vcf", str(vcf),
                     "--genome", str(genome_file), "--out", str(out)]) == 0
    assert float(read_tsv(out)[0]["score"]) == pytest.approx(2.5, abs=1e-4)  # (5 + 0) / 2: G->A is C->T reversed


def test_zero_shot_refuses_a_backbone_without_an_mlm_head(tiny_mlm, genome_file, slice_bases, tmp_path, capsys):
    folder, model, tokenizer = tiny_mlm
    encoder_only = tmp_path / "encoder"
    model.bert.save_pretrained(encoder_only)
    tokenizer.save_pretrained(encoder_only)
    vcf = write_vcf(tmp_path / "calls.vcf", rule_rows(slice_bases)[:1])
    assert cli_main(["variants", str(encoder_only), "--zero-shot", "--window-bp", "41", "--vcf", str(vcf),
                     "--genome", str(genome_file), "--out", str(tmp_path / "o.tsv")]) == 2
    assert "has no trained masked-LM head" in capsys.readouterr().err
    assert not (tmp_path / "o.tsv").exists()


def test_zero_shot_refuses_a_run_fine_tuned_from_random_weights(tiny_run, genome_file, slice_bases, tmp_path, capsys):
    vcf = write_vcf(tmp_path / "calls.vcf", rule_rows(slice_bases)[:1])
    assert cli_main(["variants", str(tiny_run), "--zero-shot", "--vcf", str(vcf), "--genome", str(genome_file),
                     "--out", str(tmp_path / "o.tsv")]) == 2
    assert "randomly initialised backbone" in capsys.readouterr().err


def test_zero_shot_runs_remote_code_only_with_the_flag(tiny_mlm, genome_file, slice_bases, tmp_path, capsys):
    import shutil

    folder, _, _ = tiny_mlm
    remote = tmp_path / "remote"
    shutil.copytree(folder, remote)
    config = json.loads((remote / "config.json").read_text())
    config["model_type"] = "evilbert"  # no transformers class: only the shipped code could load it
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForMaskedLM": "modeling_evil.Evil"}
    (remote / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "remote_code_ran"
    (remote / "configuration_evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nraise ValueError('shipped code refused')\n")
    vcf = write_vcf(tmp_path / "calls.vcf", rule_rows(slice_bases)[:1])
    argv = ["variants", str(remote), "--zero-shot", "--window-bp", "41", "--vcf", str(vcf), "--genome",
            str(genome_file), "--out", str(tmp_path / "o.tsv")]
    assert cli_main(argv) == 2
    assert "--trust-remote-code" in capsys.readouterr().err and not marker.exists()
    cli_main(argv + ["--trust-remote-code"])
    assert marker.exists()  # with the flag (and only then) the shipped code is imported


# ---------------------------------------------------------------- bad input: one line, exit 2


def test_bad_inputs_exit_2_with_one_line_naming_the_file(tiny_run, genome_file, slice_bases, tmp_path, capsys):
    vcf = write_vcf(tmp_path / "calls.vcf", rule_rows(slice_bases)[:1])
    base = ["variants", str(tiny_run), "--out", str(tmp_path / "o.tsv")]

    assert cli_main(base + ["--vcf", str(tmp_path / "missing.vcf"), "--genome", str(genome_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"--vcf {tmp_path / 'missing.vcf'}: no such file" in err

    bad_fasta = tmp_path / "bad.fa"
    bad_fasta.write_text("this is not a fasta\n")
    assert cli_main(base + ["--vcf", str(vcf), "--genome", str(bad_fasta)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"--genome {bad_fasta}: not a readable FASTA" in err

    not_vcf = tmp_path / "notes.vcf"
    not_vcf.write_text("just some notes\n")
    assert cli_main(base + ["--vcf", str(not_vcf), "--genome", str(genome_file)]) == 2
    assert f"--vcf {not_vcf}: not a readable VCF" in capsys.readouterr().err

    numbered = write_fasta(tmp_path / "numbered.fa", {"1": slice_bases})
    chr_vcf = write_vcf(tmp_path / "chr.vcf", [("chr1", 500, ".", slice_bases[499], other_base(slice_bases[499]))],
                        contig="chr1")
    assert cli_main(base + ["--vcf", str(chr_vcf), "--genome", str(numbered)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{chr_vcf}:4: chromosome 'chr1'" in err and "it has '1'" in err and "chr1 vs 1" in err
    assert not (tmp_path / "o.tsv").exists()


def test_read_vcf_gives_one_record_per_alt_with_line_numbers(tmp_path):
    vcf = write_vcf(tmp_path / "m.vcf", [(ECOLI_CONTIG, 5, "a", "A", "C,G,T"), (ECOLI_CONTIG, 9, ".", "G", ".")])
    records = list(read_vcf(vcf))
    assert [(r.line, r.alt) for r in records] == [(4, "C"), (4, "G"), (4, "T"), (5, "")]


def test_variant_config_names_the_flag():
    with pytest.raises(ValueError, match="--max-indel-bp"):
        VariantConfig(window_bp=10, max_indel_bp=10)
    with pytest.raises(ValueError, match="--window-bp"):
        VariantConfig(window_bp=1)


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        cli_main(["variants", "--help"])
    assert "gr-ft variants runs/tf --vcf calls.vcf.gz --genome genome.fa.gz --out scores.tsv" in capsys.readouterr().out
