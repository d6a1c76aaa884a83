"""Hub-shaped model folders with random weights for tests: one entry point, ``make_fixture``.

Four families are written from this repo's ``tests/fixtures/hub_models/<name>/`` (published config and
tokenizer files, re-typed or regenerated as each PROVENANCE.md says): ``protbert``, ``prott5``,
``ntv1``, ``esm1b``. Six more wrap the folders in ``../shared/models`` by running their
``make_weights.py``: ``esm2``, ``dnabert6``, ``dnabert2``, ``ntv2``, ``hyena``, ``caduceus``
(caduceus has no weights: its model needs mamba-ssm, so only its files are copied).

    >>> folder = make_fixture("protbert", tmp_path / "protbert")   # config.json, vocab.txt, model.safetensors
    >>> SequenceTokenizer.from_pretrained(folder).input_format
    'spaced_uzob_to_x'
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures" / "hub_models"
SHARED_MODELS = Path(__file__).resolve().parent.parent.parent / "shared" / "models"
SKIP_FILES = {"PROVENANCE.md", "make_weights.py", "__pycache__"}

PROTT5_RESIDUES = list("ALGVSREDTIPKFQNYMHWCXBOUZ")  # ids 3..27 of Rostlab/prot_t5_xl_uniref50
ESM_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO.-", "<null_1>", "<mask>"]


@dataclass(frozen=True)
class LocalFixture:
    """A family whose files live in tests/fixtures/hub_models/<folder>."""

    folder: str
    arch: str
    """transformers class whose random weights are written (the published checkpoint's layout)."""
    shrink: dict = field(default_factory=dict)
    """config.json overrides that make a forward pass take milliseconds."""


LOCAL_FIXTURES = {
    "protbert": LocalFixture("protbert", "BertForMaskedLM", {
        "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
        "max_position_embeddings": 1026}),
    "prott5": LocalFixture("prott5", "T5ForConditionalGeneration", {
        "d_model": 32, "d_kv": 8, "d_ff": 64, "num_heads": 4, "num_layers": 2}),
    "ntv1": LocalFixture("ntv1", "EsmForMaskedLM", {
        "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2}),
    "esm1b": LocalFixture("esm1b", "EsmForMaskedLM", {
        "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2}),
}

SHARED_FIXTURES = {
    "esm2": "esm2_t6_8M_UR50D",
    "dnabert6": "DNA_bert_6",
    "dnabert2": "DNABERT-2-117M",
    "ntv2": "nucleotide-transformer-v2-50m-multi-species",
    "hyena": "hyenadna-small-32k-seqlen-hf",
    "caduceus": "caduceus-ph_seqlen-131k_d_model-256_n_layer-16",
}

NARROW_BERT = {"hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 256}
SHARED_SHRINK = {"esm2": {"num_hidden_layers": 2}, "dnabert6": NARROW_BERT, "dnabert2": NARROW_BERT}
"""Config overrides added to a shared fixture's own SHRINK, for a fast suite (ESM-2 8M keeps its 6 layers there,
the DNABERTs their 768-wide layers); vocabularies, tokenizer files and model code stay as published."""

FIXTURE_NAMES = sorted([*LOCAL_FIXTURES, *SHARED_FIXTURES])


def make_fixture(name: str, out_dir: Path, shrink: bool = True) -> Path:
    """Write the Hub-shaped folder of fixture ``name`` (with random weights, seed 0) into ``out_dir``.

    ``shrink=False`` keeps the published sizes (ProtBERT ~1.7 GB, ProtT5-XL ~11 GB in float32: benchmarks only).
    Raises FileNotFoundError (skip the test on it) when a ``../shared/models`` folder is absent.
    """
    out_dir = Path(out_dir)
    if name in LOCAL_FIXTURES:
        return _make_local(LOCAL_FIXTURES[name], out_dir, shrink)
    if name in SHARED_FIXTURES:
        return _make_shared(SHARED_FIXTURES[name], out_dir, shrink, SHARED_SHRINK.get(name, {}))
    raise ValueError(f"unknown fixture {name!r}; choose one of {FIXTURE_NAMES}")


# ----------------------------------------------------------------------------- local families
def _make_local(spec: LocalFixture, out_dir: Path, shrink: bool) -> Path:
    """Copy the published files, write the regenerated tokenizer files, then random weights."""
    source = FIXTURES_DIR / spec.folder
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name not in SKIP_FILES:
            shutil.copy2(item, out_dir / item.name)
    GENERATED_FILES.get(spec.folder, lambda _: None)(out_dir)
    config = json.loads((out_dir / "config.json").read_text())
    if shrink:
        config.update(spec.shrink)
        (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    _write_random_weights(spec.arch, out_dir)
    return out_dir


def _write_random_weights(arch: str, folder: Path) -> None:
    """Build ``arch`` from the folder's config (the class's own config class: ProtBERT's config has no
    model_type) with seed 0 and copy only its model.safetensors: save_pretrained would rewrite config.json."""
    import tempfile

    import torch
    import transformers

    model_class = getattr(transformers, arch)
    torch.manual_seed(0)
    model = model_class(model_class.config_class.from_pretrained(folder))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for weights in Path(tmp).glob("*.safetensors*"):
            shutil.copy2(weights, folder / weights.name)


def _write_ntv1_vocab(folder: Path) -> None:
    """NT v1 vocab.txt (reconstructed): <unk> <pad> <mask> <cls>, the 4096 6-mers in A,T,C,G product
    order, A T C G N, then <eos> <bos> - the v1 order of instadeepai/nucleotide-transformer's tokenizer."""
    kmers = ["".join(p) for p in itertools.product("ATCG", repeat=6)]
    tokens = ["<unk>", "<pad>", "<mask>", "<cls>", *kmers, *"ATCGN", "<eos>", "<bos>"]
    (folder / "vocab.txt").write_text("\n".join(tokens))


def _write_esm_vocab(folder: Path) -> None:
    """The 33-token ESM vocabulary (ESM-1b and ESM-2 share it)."""
    (folder / "vocab.txt").write_text("\n".join(ESM_VOCAB))


def _write_prott5_tokenizer_json(folder: Path) -> None:
    """ProtT5's sentencepiece vocabulary as a ``tokenizers`` Unigram file (no spiece.model was found):
    <pad>=0 </s>=1 <unk>=2, the 25 residues as \\u2581X pieces at 3..27, <extra_id_99>..<extra_id_0> at 28..127."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    extra = [f"<extra_id_{i}>" for i in range(99, -1, -1)]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"\u2581{r}", -3.2) for r in PROTT5_RESIDUES] + [(e, 0.0) for e in extra]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tokenizer.add_special_tokens(["<pad>", "</s>", "<unk>", *extra])
    tokenizer.save(str(folder / "tokenizer.json"))


GENERATED_FILES = {
    "ntv1": _write_ntv1_vocab,
    "esm1b": _write_esm_vocab,
    "prott5": _write_prott5_tokenizer_json,
}


# ----------------------------------------------------------------------------- ../shared/models
def _make_shared(folder_name: str, out_dir: Path, shrink: bool, extra_shrink: dict) -> Path:
    """Run ../shared/models/<folder>/make_weights.py into out_dir (or copy the files if it has none)."""
    source = SHARED_MODELS / folder_name
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is absent (../shared/models is provided beside the checkout in CI)")
    script = source / "make_weights.py"
    if not script.is_file():  # caduceus: its model needs mamba-ssm, so there are no weights to write
        shutil.copytree(source, out_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*SKIP_FILES))
        return out_dir
    module_spec = importlib.util.spec_from_file_location(f"make_weights_{folder_name.replace('-', '_')}", script)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    module.SHRINK = {**module.SHRINK, **extra_shrink}  # read by its main() unless PUBLISHED_SIZE=1
    with _published_size(not shrink):
        module.main(out_dir)
    return out_dir


@contextlib.contextmanager
def _published_size(on: bool):
    """Set PUBLISHED_SIZE=1 (make_weights.py keeps the published config) for the duration."""
    previous = os.environ.get("PUBLISHED_SIZE")
    os.environ["PUBLISHED_SIZE"] = "1" if on else "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PUBLISHED_SIZE", None)
        else:
            os.environ["PUBLISHED_SIZE"] = previous
