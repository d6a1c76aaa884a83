"""Every backbone family loads, fine-tunes and round-trips through the registry on its Hub-shaped fixture.

The fixtures are the published config/tokenizer/model-code files with random tiny weights
(tests/hub_fixtures.py); the ../shared/models ones skip with a reason when ../shared is absent.
"""

from __future__ import annotations

import json

import pytest
import torch

from gr_ft.backbones import BACKBONES, buildable_architectures, detect_backbone, load_backbone, spec_for_model
from gr_ft.config import ARCHITECTURES
from gr_ft.modeling import SequenceModel

from family_chain import CHAIN_FAMILIES, PROBABILITY_TOLERANCE, run_chain
from hub_fixtures import make_fixture

EXPECTED_FAMILY = {
    "esm2": "esm", "esm1b": "esm", "dnabert6": "bert", "dnabert2": "dnabert2", "ntv1": "nucleotide_transformer_v1",
    "ntv2": "nucleotide_transformer_v2", "hyena": "hyenadna", "protbert": "protbert", "prott5": "t5_encoder",
    "caduceus": "caduceus",
}


def fixture_or_skip(name, folder):
    try:
        return make_fixture(name, folder)
    except FileNotFoundError as err:
        pytest.skip(str(err))


def test_every_family_is_detected_from_its_published_config(tmp_path):
    for name, family in EXPECTED_FAMILY.items():
        folder = fixture_or_skip(name, tmp_path / name)
        raw = json.loads((folder / "config.json").read_text())
        assert detect_backbone(raw).name == family, name


def test_config_architectures_are_the_buildable_families():
    assert sorted(ARCHITECTURES) == buildable_architectures()
    assert list(BACKBONES)[-1] == "generic"


@pytest.mark.parametrize("name", ["dnabert2", "hyena"])
def test_remote_code_never_runs_without_the_opt_in(name, tmp_path):
    folder = fixture_or_skip(name, tmp_path / name)
    with pytest.raises(ValueError, match="model.trust_remote_code=true"):
        load_backbone(str(folder))


def test_caduceus_without_mamba_is_a_one_line_error_naming_the_extra(tmp_path):

    folder = fixture_or_skip("caduceus", tmp_path / "caduceus")
    try:
        import mamba_ssm  # noqa: F401
        pytest.skip("mamba-ssm is installed here: Caduceus loads for real")
    except ImportError:
        pass
    with pytest.raises(ValueError) as err:
        load_backbone(str(folder), trust_remote_code=True)
    message = str(err.value)
    assert "gr-ft[caduceus]" in message and "CUDA" in message and "\n" not in message


def test_nt_v2_loads_natively_with_its_gated_feed_forward(tmp_path):
    from safetensors.torch import load_file

    folder = fixture_or_skip("ntv2", tmp_path / "ntv2")
    backbone = load_backbone(str(folder))
    stored = load_file(str(folder / "model.safetensors"))
    layer = backbone.encoder.layer[0]
    assert torch.equal(layer.intermediate.dense.weight, stored["esm.encoder.layer.0.intermediate.dense.weight"])
    assert layer.intermediate.dense.bias is None and layer.output.dense.bias is None


def test_wrong_architecture_weights_are_refused_not_randomly_initialised(tmp_path):
    # NT v2 weights under a config that claims plain ESM: transformers would leave tensors at random init
    folder = fixture_or_skip("ntv2", tmp_path / "ntv2")
    config = json.loads((folder / "config.json").read_text())
    config.pop("add_bias_fnn")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises((ValueError, RuntimeError)):
        load_backbone(str(folder))


@pytest.mark.parametrize("name", CHAIN_FAMILIES)
def test_token_states_have_the_family_width(name, tmp_path):
    folder = fixture_or_skip(name, tmp_path / name)
    backbone = load_backbone(str(folder), trust_remote_code=name in ("dnabert2", "hyena"))
    spec = spec_for_model(backbone)
    model = SequenceModel(backbone, "binary", 2)
    ids = torch.tensor([[2, 5, 6, 7, 8, 3], [2, 5, 6, 3, 0, 0]]) % spec.input_embeddings(backbone).num_embeddings
    hidden = model.token_states(ids, (ids != 0).long())
    assert hidden.shape == (2, 6, spec.hidden_size(backbone.config))


@pytest.mark.parametrize("name", CHAIN_FAMILIES)
def test_lora_chain_round_trips(name, tmp_path):
    try:
        result = run_chain(name, tmp_path)
    except FileNotFoundError as err:
        pytest.skip(str(err))
    assert set(result.steps) == {"finetune", "predict", "evaluate", "merge", "push"}
    assert result.max_prob_diff <= PROBABILITY_TOLERANCE
    assert result.evaluate_matches_metrics
    assert 0 < result.trainable_fraction < 0.5
    assert set(result.lora_targets) <= set(BACKBONES[EXPECTED_FAMILY[name]].lora_targets)


@pytest.mark.slow
@pytest.mark.parametrize("name", CHAIN_FAMILIES)
def test_full_finetuning_chain_round_trips(name, tmp_path):
    try:
        result = run_chain(name, tmp_path, method="full")
    except FileNotFoundError as err:
        pytest.skip(str(err))
    assert result.max_prob_diff <= PROBABILITY_TOLERANCE and result.trainable_fraction == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CHAIN_FAMILIES if n not in ("esm2", "esm1b", "protbert", "prott5")])
def test_per_position_chain_round_trips(name, tmp_path):
    try:
        result = run_chain(name, tmp_path, per_position=True)
    except FileNotFoundError as err:
        pytest.skip(str(err))
    assert result.task == "splice_positions" and result.max_prob_diff == 0.0


def test_max_length_beyond_the_positions_is_refused_before_any_write(tmp_path):
    from gr_ft.recipes import finetune_lora

    folder = fixture_or_skip("dnabert6", tmp_path / "dnabert6")  # learned positions: 512
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"data.max_length=600 tokens exceeds the 512 positions"):
        finetune_lora.main([f"output_dir={out}", f"model.name_or_path={folder}", "data.synthetic_size=32",
                            "data.max_length=600", "train.epochs=1", "train.precision=fp32"])
    assert not out.exists()


def test_cropping_most_rows_is_reported(tmp_path, caplog):
    from gr_ft.data import report_cropping
    from gr_ft.tokenization import SequenceTokenizer

    tokenizer = SequenceTokenizer.from_pretrained("kmer6")
    with caplog.at_level("WARNING", logger="gr_ft.data"):
        report = report_cropping(["ACGT" * 63] * 9 + ["ACGT" * 10], tokenizer, 80, "promoters.csv")
    assert report["cropped"] == 9 and report["kept"] == 83  # 78 k-mers + 5 bases of overlap
    assert "cuts 9 of 10 rows (90%) from up to 252 to 83 characters" in caplog.text


def test_a_tokenizer_with_other_ids_than_the_checkpoint_is_refused(tmp_path):
    from gr_ft.config import ModelConfig
    from gr_ft.modeling import load_task_tokenizer

    folder = fixture_or_skip("dnabert6", tmp_path / "dnabert6")
    assert load_task_tokenizer(ModelConfig(name_or_path=str(folder), tokenizer="kmer6"), "dna").k == 6
    ntv2 = fixture_or_skip("ntv2", tmp_path / "ntv2")
    with pytest.raises(ValueError, match="token ids differ"):
        load_task_tokenizer(ModelConfig(name_or_path=str(ntv2), tokenizer="kmer6"), "dna")
