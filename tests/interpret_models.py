"""Hand-built models with known answers for the interpretation tests (test_interpret.py, test_motifs.py).

- :class:`OneHotBackbone`: one-hot ACGT per nucleotide token, no layers (a linear base-count model).
- :class:`MotifScannerBackbone`: one-hot -> a PWM log-odds scan on both strands -> ReLU (or softplus)
  above a threshold: a stand-in for a model that learned the motif.
- :func:`tiny_hyena_folder`: a HyenaDNA checkpoint folder (the published model code from ../shared/models)
  at 64 channels, random weights: a nucleotide-token model small enough to train in a slow test.
"""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gr_ft.config import DataConfig, FinetuneConfig
from gr_ft.labels import LabelSpec
from gr_ft.modeling import SequenceModel
from gr_ft.predictor import Predictor
from gr_ft.tokenization import SequenceTokenizer


def spec_for(problem_type: str, num_labels: int) -> LabelSpec:
    names = [] if problem_type == "regression" else [str(i) for i in range(num_labels)]
    return LabelSpec(problem_type, names)


def make_predictor(model, tokenizer, problem_type="binary", num_labels=2, max_length=64, crop="start") -> Predictor:
    cfg = FinetuneConfig(data=DataConfig(max_length=max_length, crop=crop))
    return Predictor(model.eval(), tokenizer, spec_for(problem_type, num_labels), cfg)


class OneHotBackbone(nn.Module):
    """Embeds each base as a one-hot ACGT vector (zeros for specials); no layers on top."""

    def __init__(self, tokenizer: SequenceTokenizer):
        super().__init__()
        self.config = types.SimpleNamespace(hidden_size=4)
        self.embeddings = nn.Embedding(tokenizer.vocab_size, 4)
        with torch.no_grad():
            self.embeddings.weight.zero_()
            for column, base in enumerate("ACGT"):
                self.embeddings.weight[tokenizer.hf.convert_tokens_to_ids(base), column] = 1.0

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings

    def forward(self, input_ids, attention_mask):
        return types.SimpleNamespace(last_hidden_state=self.embeddings(input_ids))


class MotifScannerBackbone(nn.Module):
    """Nucleotide one-hot -> CTCF log-odds scan on both strands -> ReLU above a threshold, one unit per token.

    A hand-built stand-in for a nucleotide-token model that learned the motif (a from-scratch
    nucleotide transformer does not learn it within a test's budget; see docs/interpret.md).
    ``activation="softplus"`` gives every base a small non-zero effect, as in a trained model (modisco
    estimates its seqlet threshold from the background's spread, which a ReLU makes exactly 0).
    """

    def __init__(self, tokenizer: SequenceTokenizer, pwm: np.ndarray, threshold: float = 8.0,
                 activation: str = "relu"):
        super().__init__()
        self.config = types.SimpleNamespace(hidden_size=1)
        self.embeddings = OneHotBackbone(tokenizer).embeddings
        log_odds = torch.tensor(np.log(pwm / 0.25), dtype=torch.float32).T  # 4, W
        self.register_buffer("kernels", torch.stack([log_odds, log_odds.flip(0, 1)]))  # 2 strands, 4, W
        self.threshold = threshold
        self.activation = {"relu": torch.relu, "softplus": nn.functional.softplus}[activation]

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings

    def forward(self, input_ids, attention_mask):
        onehot = self.embeddings(input_ids).transpose(1, 2)  # B, 4, T
        width = self.kernels.shape[-1]
        padded = nn.functional.pad(onehot, ((width - 1) // 2, width // 2))  # CTCF (14): token t scans t-6 .. t+7
        scores = nn.functional.conv1d(padded, self.kernels).amax(1)  # B, T
        return types.SimpleNamespace(last_hidden_state=self.activation(scores - self.threshold)[..., None])


def motif_scanner_predictor(pwm: np.ndarray, activation: str = "relu", max_length: int = 128) -> Predictor:
    """A binary predictor whose class-1 logit is the mean scan activation (class 0: its negative)."""
    tokenizer = SequenceTokenizer.from_pretrained("nucleotide")
    model = SequenceModel(MotifScannerBackbone(tokenizer, pwm, activation=activation), "binary", 2, head_dropout=0.0)
    with torch.no_grad():
        model.task_head[1].weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model.task_head[1].bias.zero_()
    return make_predictor(model, tokenizer, max_length=max_length)


HYENA_FILES = ("config.json", "configuration_hyena.py", "modeling_hyena.py")
TINY_HYENA = {"d_model": 64, "d_inner": 256, "n_layer": 2, "filter_order": 32, "max_seq_len": 1026}
"""Overrides of the published hyenadna-small-32k config (256 channels, 4 layers): 3 s per training step of 32 x 103
tokens on a busy core at 256 channels and 2 layers, ~0.2 s at these sizes."""


def tiny_hyena_folder(out: Path) -> Path:
    """A HyenaDNA folder (published config and code, :data:`TINY_HYENA` sizes, random weights, seed 0), or skip.

    Load it with ``model.name_or_path=<folder> model.trust_remote_code=true``.
    """
    import pytest
    import transformers

    from hub_fixtures import SHARED_FIXTURES, SHARED_MODELS
    from gr_ft.utils import save_tensors

    source = SHARED_MODELS / SHARED_FIXTURES["hyena"]
    if not source.is_dir():
        pytest.skip(f"{source} is absent (../shared/models is provided beside the checkout in CI)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in HYENA_FILES:
        shutil.copy2(source / name, out / name)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, **TINY_HYENA}, indent=2) + "\n")
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.from_pretrained(out, trust_remote_code=True), trust_remote_code=True)
    save_tensors(model.state_dict(), out / "model.safetensors")  # copes with the shared filter frequencies
    return out


# ---------------------------------------------------------------- models trained on the planted grammar (slow tests)

PLANTED_TF = "CTCF"  # synthetic:tf_binding plants one CTCF site in each positive (gr_ft.synthetic)
PLANTED_COMMON = ["data.path=synthetic:tf_binding", "data.synthetic_size=12000", "data.max_length=128",
                  "adapter.method=full", "train.epochs=4", "train.precision=fp32"]
"""Every weight trained: LoRA over random weights stays near chance."""
PLANTED_BERT = ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=4", "model.intermediate_size=128",
                "train.lr=1e-3"]
PLANTED_RUNS = {  # tokenizer -> overrides
    "kmer6": PLANTED_BERT + ["model.tokenizer=kmer6"],
    # BPE overfits 12,000 rows (dev MCC falls after epoch 2): twice the rows for half the epochs, same steps
    "bpe": PLANTED_BERT + ["model.tokenizer=bpe", "data.synthetic_size=24000", "train.epochs=2"],
    # a from-scratch BERT or ESM on one token per base stays at the GC-content shortcut (docs/interpret.md);
    # HyenaDNA's convolutions learn the motif (24,000 rows: dev MCC 0.79 after 4 epochs, ISM site AUROC 0.97; with
    # 12,000 it was 0.74 and 0.88). Its name_or_path is filled in by train_planted.
    "nucleotide": ["model.trust_remote_code=true", "model.dropout=0", "train.lr=2e-3", "data.synthetic_size=24000"],
}


def train_planted(name: str, out: Path) -> tuple[dict, Predictor]:
    """Train the ``name`` tokenizer's model of :data:`PLANTED_RUNS` on synthetic:tf_binding into ``out``.

    Returns the recipe's metrics and the reloaded run. The nucleotide model needs ../shared/models (else skip).
    """
    from gr_ft.predictor import load_run
    from gr_ft.recipes import finetune_lora

    out = Path(out)
    overrides = [f"output_dir={out / 'run'}"] + PLANTED_COMMON + PLANTED_RUNS[name]
    if name == "nucleotide":
        overrides.append(f"model.name_or_path={tiny_hyena_folder(out / 'hyena')}")
    metrics = finetune_lora.main(overrides)
    return metrics, load_run(out / "run", trust_remote_code=name == "nucleotide")
