"""Which files of a run folder go into its Hub repository, what each is, and how big."""

from __future__ import annotations

from pathlib import Path

from ..run_folder import ADAPTER_FILES, LEAKAGE_REPORT, MERGE_RECORD, RunFolder
from ..run_state import MARKER

# What each published item is, in the card's file list (also the order files are copied in).
REPO_ITEMS: dict[str, str] = {
    "adapter": "peft adapter (adapter_config.json + adapter_model.safetensors), task head included",
    "model.safetensors": "all weights of the model (backbone and task head), one safetensors file",
    "backbone": "backbone config and weights (transformers save_pretrained)",
    "tokenizer": "the tokenizer",
    "config.yaml": "the resolved training config",
    "label_map.json": "problem type and class names by id",
    "base_model.json": "the backbone the weights belong to (name, revision, weight fingerprint)",
    "metrics.json": "test metrics of the best dev epoch and the dev history",
    LEAKAGE_REPORT: "train/dev/test overlap report (exact and near-duplicate sequences)",
    MERGE_RECORD: "which run and base model these merged weights come from",
}


def repo_items(run: RunFolder) -> list[str]:
    """Top-level names of the run folder that belong in its Hub repository (README.md comes on top).

    The adapter when there is one (never a full-weight duplicate of it), else model.safetensors;
    backbone/ only when the loader needs it (backbone built from a config, or merged weights).
    """
    weights = ["adapter"] if run.has_adapter else ["model.safetensors"]
    backbone = ["backbone"] if run.base.built_from_config else []
    optional = [name for name in (LEAKAGE_REPORT, MERGE_RECORD) if (run.path / name).exists()]
    return weights + backbone + ["tokenizer", "config.yaml", "label_map.json", "base_model.json",
                                 MARKER] + optional


def folder_size_mb(path: str | Path) -> float:
    """Size of a file, or of all files under a folder, in MiB.

    Example:
        >>> folder_size_mb("runs/demo/adapter") < folder_size_mb("runs/demo/backbone")  # doctest: +SKIP
        True
    """
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def item_size_mb(run: RunFolder, name: str) -> float:
    if name == "adapter":
        return sum(folder_size_mb(run.path / "adapter" / f) for f in ADAPTER_FILES)
    return folder_size_mb(run.path / name)
