"""Shared fixtures: tiny tokenizers and models built in memory, and the ../shared data location."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from types import ModuleType
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
FILES = Path(__file__).resolve().parent / "files"


def load_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ imported as module ``name`` (registered in sys.modules: its dataclasses look their
    module up there while it runs)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port nobody listens on now, for a torchrun/DDP rendezvous (fixed ports collide between test runs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shared_data(relative: str) -> Path:
    """Path of a real data set under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data {path} is absent (../shared/data is provided beside the checkout in CI)")
    return path


@pytest.fixture
def tiny_overrides(tmp_path):
    """Overrides that make the fine-tuning recipe run in seconds."""
    return [
        f"output_dir={tmp_path / 'run'}",
        "data.synthetic_size=192",
        "data.max_length=64",
        "model.hidden_size=32",
        "model.num_layers=1",
        "model.num_heads=2",
        "model.intermediate_size=64",
        "model.tokenizer=kmer3",
        "train.epochs=2",
        "train.batch_size=32",
        "train.precision=fp32",
    ]


@pytest.fixture(autouse=True)
def encoded_cache_in_tmp(tmp_path, monkeypatch):
    """gr-ft's cache (encoded splits, decompressed genomes) lives in the test's tmp folder, never in ~/.cache."""
    monkeypatch.setenv("GRFT_CACHE_DIR", str(tmp_path / "gr_ft_cache"))


@pytest.fixture(scope="session")
def planted_run(tmp_path_factory):
    """``planted_run(name)`` -> (run folder, metrics, Predictor) of a model trained on the planted grammar
    (``interpret_models.PLANTED_RUNS``), trained once per session: the planted-site and motif tests share it."""
    from interpret_models import train_planted

    trained = {}

    def get(name: str):
        if name not in trained:
            out = tmp_path_factory.mktemp(f"planted_{name}")
            trained[name] = (out / "run", *train_planted(name, out))
        return trained[name]

    return get
