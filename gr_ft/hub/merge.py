"""Folding a run's LoRA adapter into the base weights: a standalone run folder with full weights."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ..utils import save_tensors
from ..backbones.record import BaseModelRecord
from ..run_folder import LEAKAGE_REPORT, MERGE_RECORD, RunFolder, read_json, read_run_folder
from ..run_state import MARKER
from .repo_files import folder_size_mb
from .publish import copy_item, staged_folder

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------- merging


def _write_merged(model, run: RunFolder, staging: Path) -> None:
    """Files of a merged run folder: full weights, the merged backbone, and the run's other files."""
    from ..backbones import save_backbone
    from ..modeling import backbone_fingerprint

    for name in ("config.yaml", "label_map.json", "tokenizer", LEAKAGE_REPORT):
        if (run.path / name).exists():
            copy_item(run, name, staging)
    save_backbone(model.backbone, staging / "backbone")
    save_tensors(model.state_dict(), staging / "model.safetensors")
    base = run.base
    BaseModelRecord(name_or_path=base.name_or_path, revision=base.revision,
                    fingerprint=backbone_fingerprint(model.backbone), built_from_config=True,
                    needs_remote_code=base.needs_remote_code, family=base.family).save(staging / "base_model.json")
    adapter = read_json(run.path / "adapter" / "adapter_config.json") or {}
    record = {"source_run": str(run.path.resolve()), "method": run.cfg.adapter.method, "merged_with":
              "peft merge_and_unload", "target_modules": adapter.get("target_modules"), "base": base.__dict__}
    (staging / MERGE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    shutil.copy2(run.path / MARKER, staging / MARKER)


def merge_run(run_dir: str | Path, out_dir: str | Path, overwrite: bool = False,
              trust_remote_code: bool = False) -> Path:
    """Fold a run's LoRA adapter into the base weights; writes a standalone run folder with full weights.

    The new folder has ``model.safetensors``, ``backbone/`` (the merged backbone, so no base model is
    needed to load it) and ``merged_from.json``; ``load_run(out_dir)`` predicts as the adapter did.

    Example:
        >>> merge_run("runs/demo", "runs/demo_merged")  # doctest: +SKIP
        PosixPath('runs/demo_merged')
    """
    from ..run_folder import load_model_for_run

    run = read_run_folder(run_dir)
    if not run.has_adapter:
        raise ValueError(f"{run_dir} has no adapter/ (adapter.method={run.cfg.adapter.method}): its weights are already "
                         f"full weights; load it directly")
    model, _tokenizer, _spec, _cfg = load_model_for_run(run.path, trust_remote_code=trust_remote_code)
    merged = model.merge_and_unload()
    out = Path(out_dir)
    with staged_folder(out, overwrite) as staging:
        _write_merged(merged, run, staging)
    logger.info("merged %s (%.2f MB) into %s (%.2f MB)", run.path, folder_size_mb(run.path), out, folder_size_mb(out))
    return out
