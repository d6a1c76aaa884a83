"""Masked-LM pretraining: corpus windows, masking rates, the k-mer leak, and the recipe end to end (tiny)."""

import gzip
import importlib
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import free_port
from gr_ft.config import load_config
from gr_ft.modeling import load_backbone
from gr_ft.pretraining import (
    CorpusConfig,
    MaskedLMCollator,
    MaskingConfig,
    PretrainConfig,
    TokenBatch,
    WindowStream,
    build_window_encoder,
    is_held_out,
    select_mask_positions,
    validation_windows,
)
from gr_ft.pretraining import corpus as corpus_module
from gr_ft.pretraining.corpus import VALIDATION_SEED
from gr_ft.tokenization import SequenceTokenizer

REPO = Path(__file__).resolve().parent.parent
COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


def import_recipe(name: str):
    """``gr_ft.recipes.<name>`` when installed, else the script in recipes/ (PYTHONPATH=. checkouts)."""
    try:
        return importlib.import_module(f"gr_ft.recipes.{name}")
    except ModuleNotFoundError:
        return importlib.import_module(f"recipes.{name}")


def random_dna(rng, length: int) -> str:
    return "".join(rng.choice(list("ACGT"), size=length))


def write_fasta(path: Path, records: dict[str, str]) -> Path:
    with gzip.open(path, "wt") as handle:
        for record_id, sequence in records.items():
            handle.write(f">{record_id} note=x\n")
            handle.writelines(sequence[i : i + 60] + "\n" for i in range(0, len(sequence), 60))
    return path


@pytest.fixture
def dna_records():
    rng = np.random.default_rng(0)
    records = {f"rec{i}": random_dna(rng, int(rng.integers(150, 900))) for i in range(60)}
    records["short1"] = random_dna(rng, 40)
    records["gapped"] = random_dna(rng, 300) + "N" * 50 + random_dna(rng, 300) + "N" * 3 + random_dna(rng, 200)
    return records


@pytest.fixture
def nucleotide():
    return SequenceTokenizer.from_pretrained("nucleotide")


def decode_nucleotides(tokenizer, ids) -> str:
    letters = np.array(tokenizer.hf.convert_ids_to_tokens(list(range(tokenizer.vocab_size))))
    ids = np.asarray(ids)
    return "".join(letters[ids[~np.isin(ids, tokenizer.special_token_ids)]])


def stream_windows(cfg, tokenizer, n_batches: int, batch_size: int = 16) -> list[str]:
    stream = WindowStream(cfg, tokenizer, batch_size=batch_size, seed=0)
    batches = itertools.islice(iter(stream), n_batches)
    return [decode_nucleotides(tokenizer, ids) for batch in batches for ids in batch.sequences]


# ----------------------------------------------------------------------------- corpus


def test_windows_cover_both_strands_skip_n_runs_and_keep_short_records(tmp_path, dna_records, nucleotide):
    path = write_fasta(tmp_path / "dna.fa.gz", dna_records)
    cfg = CorpusConfig(train_files=[str(path)], window_bp=100, validation_fraction=0.0, min_length=30,
                       shuffle_buffer=32, bucket_batches=4)
    windows = stream_windows(cfg, nucleotide, n_batches=40)
    forward = "|".join(dna_records.values())
    reverse = forward.translate(COMPLEMENT)[::-1]
    on_forward = [w in forward for w in windows]
    on_reverse = [w in reverse for w in windows]
    assert all(f or r for f, r in zip(on_forward, on_reverse))  # every window is a real stretch of one strand
    assert 0.35 < np.mean([r and not f for f, r in zip(on_forward, on_reverse)]) < 0.65
    assert not any("N" * 10 in w for w in windows)  # the 50-N gap never enters a window
    assert any("N" in w for w in windows)  # the 3-N run is kept (shorter than corpus.n_run_bp)
    assert {len(w) for w in windows} == {40, 100}  # full windows, plus the 40-bp record taken whole


def test_validation_records_never_enter_training(tmp_path, dna_records, nucleotide):
    path = write_fasta(tmp_path / "dna.fa.gz", dna_records)
    cfg = CorpusConfig(train_files=[str(path)], window_bp=100, validation_fraction=0.3, validation_windows=64,
                       shuffle_buffer=32, bucket_batches=4)
    held = {rid for rid in dna_records if is_held_out(f"{rid}:0", 0.3)}
    assert 0 < len(held) < len(dna_records)
    both_strands = {rid: s + "|" + s.translate(COMPLEMENT)[::-1] for rid, s in dna_records.items()}
    source = lambda window: {rid for rid, s in both_strands.items() if window in s}  # noqa: E731

    validation = [decode_nucleotides(nucleotide, ids) for ids in validation_windows(cfg, nucleotide)]
    assert len(validation) == 64 and all(source(w) <= held and source(w) for w in validation)
    assert validation == [decode_nucleotides(nucleotide, ids) for ids in validation_windows(cfg, nucleotide)]
    training = stream_windows(cfg, nucleotide, n_batches=60)  # several passes over the training records
    assert all(source(w) and not source(w) & held for w in training)


def test_token_budget_batches_are_bucketed_and_fit(tmp_path, nucleotide):
    rng = np.random.default_rng(5)
    records = {f"r{i}": random_dna(rng, 40 if i % 2 else 100) for i in range(80)}
    cfg = CorpusConfig(train_files=[str(write_fasta(tmp_path / "dna.fa.gz", records))], window_bp=100,
                       validation_fraction=0.0, shuffle_buffer=32, bucket_batches=8)
    batches = [b.sequences for b in itertools.islice(iter(WindowStream(cfg, nucleotide, 8, batch_tokens=600)), 40)]
    assert all(len(b) * max(map(len, b)) <= 600 for b in batches)
    sizes = {length: max(len(b) for b in batches if max(map(len, b)) == length) for length in (42, 102)}
    assert sizes == {42: 600 // 42, 102: 600 // 102}  # short windows come in bigger batches


def test_stream_reads_records_lazily(tmp_path, nucleotide, monkeypatch):
    rng = np.random.default_rng(1)
    path = write_fasta(tmp_path / "big.fa.gz", {f"r{i}": random_dna(rng, 120) for i in range(3000)})
    seen = {"records": 0}
    real_reader = corpus_module.read_fasta_records

    def counting_reader(p):
        for record in real_reader(p):
            seen["records"] += 1
            yield record

    monkeypatch.setattr(corpus_module, "read_fasta_records", counting_reader)
    cfg = CorpusConfig(train_files=[str(path)], window_bp=100, shuffle_buffer=64, bucket_batches=2)
    next(iter(WindowStream(cfg, nucleotide, batch_size=8)))
    assert seen["records"] < 200  # shuffle buffer + one pool, not the 3000-record file


@pytest.mark.parametrize("name", ["kmer3", "kmer6", "nucleotide", "protein", "bpe"])
def test_window_encoder_matches_the_tokenizer(name):
    tokenizer = SequenceTokenizer.from_pretrained(name)
    rng = np.random.default_rng(2)
    letters = list("ACDEFGHIKLMNPQRSTVWYX") if name == "protein" else list("ACGTN")
    windows = ["".join(rng.choice(letters, size=n)) for n in (3, 7, 64, 300)]
    expected = tokenizer.encode(windows, max_length=128)["input_ids"]
    assert [ids.tolist() for ids in build_window_encoder(tokenizer, 128)(windows)] == expected


# ----------------------------------------------------------------------------- masking


def masked_batch(tokenizer, cfg: MaskingConfig, n: int = 64, length: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    alphabet = list("ACDEFGHIKLMNPQRSTVWY") if tokenizer.kind == "protein" else list("ACGT")
    windows = ["".join(rng.choice(alphabet, size=int(rng.integers(length // 2, length)))) for _ in range(n)]
    original = build_window_encoder(tokenizer, length + 2)(windows)
    batch = MaskedLMCollator(tokenizer, cfg, seed=seed)(TokenBatch(0, original))
    padded = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(o) for o in original], batch_first=True,
                                             padding_value=tokenizer.pad_token_id)
    return padded, batch


@pytest.mark.parametrize("name", ["nucleotide", "protein", "bpe"])
def test_token_masking_rates_and_specials(name):
    tokenizer = SequenceTokenizer.from_pretrained(name)
    original, batch = masked_batch(tokenizer, MaskingConfig())
    special = torch.isin(original, torch.tensor(tokenizer.special_token_ids))  # includes padding
    masked = batch["labels"] != -100
    assert not (masked & special).any()
    assert torch.equal(batch["labels"][masked], original[masked])
    assert masked.sum() / (~special).sum() == pytest.approx(0.15, abs=0.01)
    shown = batch["input_ids"][masked]
    as_mask = (shown == tokenizer.mask_token_id).float().mean()
    changed = ((shown != tokenizer.mask_token_id) & (shown != original[masked])).float().mean()
    pool = len(MaskedLMCollator(tokenizer, MaskingConfig()).random_token_ids)
    assert as_mask == pytest.approx(0.8, abs=0.03)
    assert changed == pytest.approx(0.1 * (1 - 1 / pool), abs=0.02)  # a random draw may repeat the token
    replaced = shown[shown != tokenizer.mask_token_id]
    assert not torch.isin(replaced, torch.tensor(tokenizer.special_token_ids)).any()  # never [PAD], [CLS], ...
    assert torch.equal(batch["input_ids"][~masked], original[~masked])


def test_kmer_span_masking_rate_and_contiguity():
    tokenizer = SequenceTokenizer.from_pretrained("kmer6")
    original, batch = masked_batch(tokenizer, MaskingConfig(), length=600)
    special = torch.isin(original, torch.tensor(tokenizer.special_token_ids))
    masked = batch["labels"] != -100
    assert not (masked & special).any()
    assert masked.sum() / (~special).sum() == pytest.approx(0.15, abs=0.02)
    runs = [len(list(g)) for row in masked.tolist() for bit, g in itertools.groupby(row) if bit]
    assert min(runs) >= 1 and np.mean([r >= 6 for r in runs]) > 0.9  # whole 6-token spans (edges may clip)


def recoverable_fraction(kmers: list[str], masked: list[bool], k: int) -> float:
    """Share of masked k-mers spelled out exactly by the unmasked k-mers that overlap them.

    Base j of the window is known when some unmasked k-mer i (i <= j < i + k) covers it; a masked
    k-mer is recovered when all its k bases are known. For a lone masked token this is the
    neighbour rule below; the general rule also reads tokens next to short masked runs.
    """
    bases: dict[int, str] = {}
    for i, (kmer, hidden) in enumerate(zip(kmers, masked)):
        if not hidden:
            bases.update({i + j: base for j, base in enumerate(kmer)})
    targets = [i for i, hidden in enumerate(masked) if hidden]
    recovered = [all(i + j in bases for j in range(k)) and "".join(bases[i + j] for j in range(k)) == kmers[i]
                 for i in targets]
    return float(np.mean(recovered))


def neighbour_rule_hits(kmers: list[str], masked: list[bool]) -> list[bool]:
    """Per masked k-mer: does "left neighbour's suffix + right neighbour's prefix" spell it, i.e. the left
    k-mer's last k-1 bases followed by the right k-mer's (k-1)-th base (never, when a neighbour is masked)."""
    return [not masked[i - 1] and not masked[i + 1] and kmers[i - 1][1:] + kmers[i + 1][-2] == kmers[i]
            for i in range(1, len(kmers) - 1) if masked[i]]


@pytest.mark.parametrize("span_length,low,high", [(1, 0.99, 1.0), (6, 0.0, 0.0)])
def test_overlapping_kmers_leak_unless_whole_spans_are_masked(span_length, low, high):
    tokenizer = SequenceTokenizer.from_pretrained("kmer6")
    rng = np.random.default_rng(3)
    windows = [random_dna(rng, 500) for _ in range(16)]
    ids = torch.from_numpy(np.stack(build_window_encoder(tokenizer, 512)(windows)))
    maskable = ~torch.isin(ids, torch.tensor(tokenizer.special_token_ids))
    masked = select_mask_positions(maskable, 0.15, span_length, torch.Generator().manual_seed(0))
    recovered, by_neighbours, lone = [], [], []
    for row, mask_row in zip(ids.tolist(), masked.tolist()):
        kmers, hidden = tokenizer.hf.convert_ids_to_tokens(row[1:-1]), mask_row[1:-1]
        recovered.append(recoverable_fraction(kmers, hidden, k=6))
        by_neighbours += neighbour_rule_hits(kmers, hidden)
        lone += [not hidden[i - 1] and not hidden[i + 1] for i in range(1, len(hidden) - 1) if hidden[i]]
    assert low <= np.mean(recovered) <= high
    # the plain neighbour rule reads every lone masked k-mer (~72% of them under per-token masking)
    assert np.mean(by_neighbours) == pytest.approx(np.mean(lone)) and (np.mean(lone) > 0.6) == (span_length == 1)


# ----------------------------------------------------------------------------- recipe


def tiny_pretrain_overrides(fasta: Path, out: Path) -> list[str]:
    return [
        f"corpus.train_files={fasta}",
        f"output_dir={out}",
        "corpus.window_bp=120",
        "corpus.validation_fraction=0.2",
        "corpus.validation_windows=16",
        "corpus.shuffle_buffer=64",
        "corpus.bucket_batches=2",
        "model.tokenizer=kmer3",
        "model.hidden_size=32",
        "model.num_layers=1",
        "model.num_heads=2",
        "model.intermediate_size=64",
        "model.max_position_embeddings=130",
        "train.max_steps=3",
        "train.batch_size=8",
        "train.eval_every_steps=2",
        "train.checkpoint_every_steps=2",
        "train.log_every_steps=1",
        "train.precision=fp32",
    ]


def test_pretrained_folder_loads_and_finetunes(tmp_path, dna_records, tiny_overrides):
    pretrain_mlm, finetune_lora = import_recipe("pretrain_mlm"), import_recipe("finetune_lora")
    fasta, out = write_fasta(tmp_path / "dna.fa.gz", dna_records), tmp_path / "pretrained"
    metrics = pretrain_mlm.main(tiny_pretrain_overrides(fasta, out))
    assert metrics["steps"] == 3 and metrics["stopped_by"] == "max_steps"
    assert [h["step"] for h in metrics["history"]] == [2]
    assert np.isfinite(metrics["val_perplexity"]) and 0 <= metrics["val_accuracy"] <= 1
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "pretrain_config.yaml"} <= {
        p.name for p in out.iterdir()}
    assert not (out / "checkpoints").exists()
    backbone = load_backbone(str(out))
    assert backbone.config.hidden_size == 32 and SequenceTokenizer.from_pretrained(str(out)).kind == "kmer"

    result = finetune_lora.main(tiny_overrides + [f"model.name_or_path={out}", "train.epochs=1"])
    assert np.isfinite(result["test"]["loss"])
    base = json.loads((tmp_path / "run" / "base_model.json").read_text())
    assert base["name_or_path"] == str(out) and not base["built_from_config"]

    continued = pretrain_mlm.main(tiny_pretrain_overrides(fasta, tmp_path / "continued")
                                  + [f"model.name_or_path={out}", "model.tokenizer=null", "train.max_steps=1"])
    assert continued["steps"] == 1


def test_interrupted_pretraining_resumes_the_step_count(tmp_path, dna_records, monkeypatch):
    pretrain_mlm = import_recipe("pretrain_mlm")
    fasta = write_fasta(tmp_path / "dna.fa.gz", dna_records)
    common = ["train.max_steps=4", "model.dropout=0"]
    reference = pretrain_mlm.main(tiny_pretrain_overrides(fasta, tmp_path / "ref") + common)

    real_save = pretrain_mlm.save_checkpoint

    def crash_after_checkpoint(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(pretrain_mlm, "save_checkpoint", crash_after_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        pretrain_mlm.main(tiny_pretrain_overrides(fasta, tmp_path / "run") + common)
    assert (tmp_path / "run" / "checkpoints" / "last").is_dir()
    assert not (tmp_path / "run" / "metrics.json").exists()
    monkeypatch.setattr(pretrain_mlm, "save_checkpoint", real_save)
    resumed = pretrain_mlm.main(tiny_pretrain_overrides(fasta, tmp_path / "run") + common)
    assert resumed["steps"] == 4 and [h["step"] for h in resumed["history"]] == [2, 4]
    # same batches, same masks after resume: the result matches the uninterrupted run
    assert resumed["val_loss"] == pytest.approx(reference["val_loss"], abs=1e-5)


def test_time_budget_stops_early_and_still_saves(tmp_path, dna_records):
    pretrain_mlm = import_recipe("pretrain_mlm")
    fasta, out = write_fasta(tmp_path / "dna.fa.gz", dna_records), tmp_path / "budget"
    metrics = pretrain_mlm.main(tiny_pretrain_overrides(fasta, out) + ["train.max_steps=1000", "train.max_minutes=1e-4"])
    assert metrics["stopped_by"] == "max_minutes" and 1 <= metrics["steps"] < 1000
    assert (out / "model.safetensors").exists() and (out / "metrics.json").exists()


@pytest.mark.distributed
def test_two_processes_train_and_score_the_same_validation_masks(tmp_path, dna_records):
    fasta, out = write_fasta(tmp_path / "dna.fa.gz", dna_records), tmp_path / "ddp"
    overrides = tiny_pretrain_overrides(fasta, out)
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()),
               str(REPO / "recipes" / "pretrain_mlm.py"), *overrides]
    # own process group, so a hang is cleaned up with its workers instead of leaving them behind
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        raise
    assert process.returncode == 0, stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["processes"], metrics["steps"]) == (2, 3)
    cfg = load_config(PretrainConfig, None, overrides)
    tokenizer = SequenceTokenizer.from_pretrained("kmer3")
    windows = validation_windows(cfg.corpus, tokenizer)
    collator = MaskedLMCollator(tokenizer, cfg.masking, seed=VALIDATION_SEED)
    size = cfg.train.eval_batch_size
    masked = sum(int((collator(TokenBatch(i // size, windows[i : i + size]))["labels"] != -100).sum())
                 for i in range(0, len(windows), size))
    assert metrics["val_masked_tokens"] == masked  # split across processes, scored exactly once


def test_protein_pretraining_with_esm(tmp_path):
    pretrain_mlm = import_recipe("pretrain_mlm")
    rng = np.random.default_rng(4)
    proteins = {f"P{i}": "M" + "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=int(rng.integers(30, 300))))
                for i in range(40)}
    fasta = write_fasta(tmp_path / "proteins.fa.gz", proteins)
    overrides = tiny_pretrain_overrides(fasta, tmp_path / "esm") + [
        "model.arch=esm", "model.tokenizer=protein", "corpus.crop_aa=100", "train.max_steps=2"]
    metrics = pretrain_mlm.main(overrides)
    assert metrics["steps"] == 2 and load_backbone(str(tmp_path / "esm")).config.model_type == "esm"


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("path", sorted((REPO / "recipes" / "configs").glob("pretrain_*.yaml")), ids=lambda p: p.name)
def test_pretrain_configs_load(path):
    cfg = load_config(PretrainConfig, path)
    assert cfg.corpus.train_files and cfg.train.max_steps > 0
    header = list(itertools.takewhile(lambda line: line.startswith("#"), path.read_text().splitlines()))
    assert any(f"recipes/pretrain_mlm.py --config recipes/configs/{path.name}" in line for line in header)


@pytest.mark.parametrize("override,message", [
    ("masking.mask_replace_prob=0.95", "masking.mask_replace_prob"),
    ("corpus.window_bp=0", "corpus.window_bp"),
    ("train.max_minutes=-1", "train.max_minutes"),
])
def test_config_errors_name_the_flag(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(PretrainConfig, None, ["corpus.train_files=x.fa", override])
    with pytest.raises(ValueError, match="corpus.train_files"):
        load_config(PretrainConfig, None, [])


def test_window_encoder_reads_spaced_residue_vocabularies_through_the_tokenizer(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from hub_fixtures import make_fixture

    from gr_ft.pretraining.corpus import TokenizerEncoder, build_window_encoder
    from gr_ft.tokenization import SequenceTokenizer

    tokenizer = SequenceTokenizer.from_pretrained(make_fixture("prott5", tmp_path / "prott5"))
    encoder = build_window_encoder(tokenizer, 64)
    assert isinstance(encoder, TokenizerEncoder)
    ids = encoder(["MKTUAY"])[0].tolist()
    assert ids == tokenizer.encode(["MKTUAY"], max_length=64)["input_ids"][0]
    assert tokenizer.hf.unk_token_id not in ids
