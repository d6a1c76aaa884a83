"""The run folder: what a fine-tuning run leaves behind, and the one call that reloads it.

Layout of ``output_dir`` after a finished run::

    config.yaml        the resolved config
    metrics.json       test metrics of the best dev epoch, dev history, timing (written last)
    label_map.json     problem type and class names by id
    base_model.json    which backbone the adapter belongs to (name, revision, weight fingerprint)
    tokenizer/         the tokenizer
    adapter/           peft adapter (adapter_config.json + adapter_model.safetensors), or
    model.safetensors  all weights, for adapter.method=full
    backbone/          the backbone itself, only when it was built from a config (random init)

Optional files: ``leakage_report.json`` (a :func:`gr_ft.leakage.leakage_report`, summarised in the card) and
``merged_from.json`` (written by :func:`gr_ft.hub.merge_run`). How the folder moves from interrupted to
complete is :mod:`gr_ft.run_state`; prediction with it is :mod:`gr_ft.predictor`.

This module writes the folder (:func:`prepare_output_dir`, :func:`write_run`) and reads it
(:func:`read_run_folder` for its files, :func:`load_model_for_run` for the trained model).

Example:
    >>> read_run_folder("runs/demo").spec.problem_type
    'binary'
    >>> model, tokenizer, spec, cfg = load_model_for_run("runs/demo")
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from peft import PeftModel
from safetensors.torch import load_file

from .backbones.record import BaseModelRecord
from .config import FinetuneConfig, config_to_dict, current_key, load_config, save_config
from .labels import LabelSpec, load_label_spec
from .modeling import SequenceModel, backbone_fingerprint, load_backbone
from .run_state import CHECKPOINTS, MARKER, RUN_CONFIG_FILE, STAGING, TRASH, check_complete, folder_status
from .run_state import publish_staged, resumable_checkpoint
from .tokenization import SequenceTokenizer
from .utils import check_output_folder, looks_local, save_tensors

__all__ = ["RunFolder", "read_run_folder", "read_json", "prepare_output_dir", "write_run", "load_model_for_run",
           "resolve_run_dir", "run_precision", "check_resume_config", "flat_config", "RESUME_NEUTRAL_KEYS",
           "LEAKAGE_REPORT", "MERGE_RECORD", "ADAPTER_FILES"]

logger = logging.getLogger(__name__)

LEAKAGE_REPORT = "leakage_report.json"
"""Optional: a :func:`gr_ft.leakage.leakage_report` saved as JSON in the run folder; summarised in the card."""
MERGE_RECORD = "merged_from.json"
"""Written by :func:`gr_ft.hub.merge_run`: which run and base the full weights were merged from."""
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


RESUME_NEUTRAL_KEYS: dict[str, frozenset[str]] = {
    # Keys a resume may change because they cannot change the trained weights or the metrics; any other
    # difference from the checkpoint's config is refused. Common to every recipe: where the run lives and
    # whether it resumes, how often it logs or checkpoints (resume is exact at any step), where logs go.
    "common": frozenset({"output_dir", "overwrite", "resume", "push_to_hub", "hub_repo_id", "train.log_every_steps",
                         "train.tracker", "train.checkpoint_every_steps"}),
    # fine-tuning: evaluation batches are scored example by example (metrics do not depend on batching)
    "FinetuneConfig": frozenset({"train.eval_batch_size"}),
    # pretraining: the wall-clock budget (to give a time-limited run more time) and loader worker count (the
    # window stream is a function of (seed, batch index)); NOT train.eval_batch_size: validation masks are
    # drawn per validation batch
    "PretrainConfig": frozenset({"train.max_minutes", "corpus.num_workers"}),
    # meta-training: checkpoint cadence (episodes are a function of (seed, step))
    "MetaTrainConfig": frozenset({"meta.checkpoint_every_steps", "train.eval_batch_size"}),
}


# ---------------------------------------------------------------- writing


def prepare_output_dir(cfg) -> Optional[Path]:
    """Check ``cfg.output_dir`` before training; returns the checkpoint to resume from, if any.

    A complete run is never overwritten unless ``overwrite=true``; a folder that is not a gr-ft run is never
    touched; an interrupted run resumes (``resume=true``, the default) only with the config it was trained
    with (see :data:`RESUME_NEUTRAL_KEYS`). Starting afresh creates ``checkpoints/`` first, so the folder is an
    interrupted run from then on until the recipe publishes it (see :mod:`gr_ft.run_state`).
    Works for every recipe config with ``output_dir``, ``overwrite`` and ``resume``.
    """
    out = check_output_folder(cfg.output_dir, "output_dir")
    status = folder_status(out)
    if status == "complete" and not cfg.overwrite:
        raise ValueError(
            f"output_dir {out} already holds a finished run ({MARKER}); choose another output_dir or "
            f"pass overwrite=true to replace it"
        )
    if status == "absent" and out.is_dir() and any(p.name != TRASH for p in out.iterdir()):
        raise ValueError(f"output_dir {out} exists, is not empty and is not a gr-ft run; choose another output_dir")
    last = resumable_checkpoint(out) if status == "interrupted" else None
    if last is not None and cfg.resume and not cfg.overwrite:
        check_resume_config(cfg, last)
        return last
    _start_fresh(out)
    return None


def _start_fresh(out: Path) -> None:
    """Empty ``checkpoints/`` and drop the marker (main process only), so the folder reads as interrupted."""
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:
        if (out / CHECKPOINTS).exists():  # renamed away in one step: a half-deleted checkpoint is never resumed
            shutil.rmtree(out / TRASH, ignore_errors=True)
            os.replace(out / CHECKPOINTS, out / TRASH)
            shutil.rmtree(out / TRASH)
        (out / CHECKPOINTS).mkdir(parents=True)  # before the marker goes: never "absent" with run files in it
        (out / MARKER).unlink(missing_ok=True)
        shutil.rmtree(out / STAGING, ignore_errors=True)
    state.wait_for_everyone()


def flat_config(cfg) -> dict:
    """The config as ``{"train.lr": 0.003, ...}`` (JSON types), for storing in and comparing with checkpoints."""
    def walk(node: dict, prefix: str):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield prefix + key, value
    return dict(walk(json.loads(json.dumps(config_to_dict(cfg))), ""))


def check_resume_config(cfg, checkpoint: Path) -> None:
    """Refuse to resume ``checkpoint`` with a config other than the one it was trained with, naming each key."""
    saved_path = checkpoint / RUN_CONFIG_FILE
    if not saved_path.exists():  # written by an older gr-ft, or by a recipe that does not pass its config
        logger.warning("checkpoint %s does not record the config it was trained with (%s); resuming without "
                       "checking that the config is unchanged", checkpoint, RUN_CONFIG_FILE)
        return
    # keys saved under an older name (lora.r, now adapter.r) compare with the current one
    saved = {current_key(type(cfg), key): value for key, value in json.loads(saved_path.read_text()).items()}
    now = flat_config(cfg)
    neutral = RESUME_NEUTRAL_KEYS["common"] | RESUME_NEUTRAL_KEYS.get(type(cfg).__name__, frozenset())
    changed = sorted(key for key in set(saved) | set(now)
                     if key not in neutral and saved.get(key, "<absent>") != now.get(key, "<absent>"))
    if changed:
        diffs = "; ".join(f"{key}: {saved.get(key, '<absent>')!r} -> {now.get(key, '<absent>')!r}" for key in changed)
        raise ValueError(
            f"output_dir {cfg.output_dir} holds an interrupted run trained with another config ({diffs}); resuming "
            f"would mix the two. Restore the old values to resume it, or pass overwrite=true to start over"
        )


def write_run(out: Path, model, tokenizer: SequenceTokenizer, spec: LabelSpec, cfg: FinetuneConfig,
              *, base: BaseModelRecord, metrics: dict, backbone_dir: Optional[Path] = None) -> None:
    """Write the run folder: everything goes to a staging folder first, ``metrics.json`` lands last, then
    ``checkpoints/`` goes (see :func:`gr_ft.run_state.publish_staged`; a kill at any point leaves the folder
    resumable or complete).

    ``backbone_dir`` is a ``save_pretrained`` folder of the untouched backbone, copied in when the
    backbone was built from a config (the adapter is useless without those exact random weights).
    """
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_config(cfg, staging / "config.yaml")
    spec.save(staging / "label_map.json")
    base.save(staging / "base_model.json")
    tokenizer.save_pretrained(staging / "tokenizer")
    if isinstance(model, PeftModel):
        model.save_pretrained(str(staging / "adapter"))
    else:
        save_tensors(model.state_dict(), staging / "model.safetensors")
    if base.built_from_config:
        if backbone_dir is None:
            raise ValueError("a backbone built from config must be saved with the run (pass backbone_dir)")
        shutil.copytree(backbone_dir, staging / "backbone")
    publish_staged(out, staging, json.dumps(metrics, indent=2) + "\n")


# ---------------------------------------------------------------- reading


@dataclass
class RunFolder:
    """The files of a finished run folder, parsed (publishing, merging and cards read it this way)."""

    path: Path
    cfg: FinetuneConfig
    spec: LabelSpec
    base: BaseModelRecord
    metrics: dict
    leakage: Optional[dict]
    merged_from: Optional[dict]

    @property
    def has_adapter(self) -> bool:
        return (self.path / "adapter").is_dir()

    @property
    def original_base(self) -> BaseModelRecord:
        """The backbone the model was trained on (for merged weights: the base before merging)."""
        return BaseModelRecord(**self.merged_from["base"]) if self.merged_from else self.base


def read_json(path: Path) -> Optional[dict]:
    """A JSON file of the run folder, None when absent; a broken one is an error naming it."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); rewrite or delete it") from err


def read_run_folder(run_dir: str | Path) -> RunFolder:
    """Parse a finished run folder; a folder that is not one is an error saying which file is missing.

    Example:
        >>> read_run_folder("runs/demo").spec.problem_type  # doctest: +SKIP
        'binary'
    """
    path = Path(run_dir)
    check_complete(path, "finetune")  # metrics.json and no checkpoints/ or .staging/ left by an interrupted run
    missing = [name for name in ("config.yaml", "label_map.json", "base_model.json", "tokenizer")
               if not (path / name).exists()]
    if missing:
        raise ValueError(f"run folder {path} lacks {missing}; it was not written by gr-ft or was edited by hand")
    if not (path / "adapter").is_dir() and not (path / "model.safetensors").exists():
        raise ValueError(f"run folder {path} has neither adapter/ nor model.safetensors: no weights in it")
    return RunFolder(path, load_config(FinetuneConfig, path / "config.yaml"), load_label_spec(path / "label_map.json"),
                     BaseModelRecord.load(path / "base_model.json"), read_json(path / MARKER),
                     read_json(path / LEAKAGE_REPORT), read_json(path / MERGE_RECORD))


def _check_fingerprint(backbone, base: BaseModelRecord) -> None:
    found = backbone_fingerprint(backbone)
    if found != base.fingerprint:
        raise ValueError(
            f"this adapter was trained on base model {base.name_or_path or 'built from config'} "
            f"(revision {base.revision}, weight fingerprint {base.fingerprint[:12]}) but the weights loaded now "
            f"have fingerprint {found[:12]}; load the exact base model it needs"
        )


def resolve_run_dir(name_or_path: str | Path, revision: Optional[str] = None) -> Path:
    """A local run folder for a folder path, or for a Hub repo id ``user/name`` (downloaded, then cached).

    Example:
        >>> resolve_run_dir("runs/demo")
        PosixPath('runs/demo')
        >>> resolve_run_dir("me/promoter-lora")  # a repo written by `gr-ft push`  # doctest: +SKIP
        PosixPath('/home/me/.cache/huggingface/hub/models--me--promoter-lora/snapshots/...')
    """
    path = Path(name_or_path)
    if path.exists() or looks_local(str(name_or_path)):
        return path
    import huggingface_hub

    try:
        return Path(huggingface_hub.snapshot_download(str(name_or_path), revision=revision))
    except Exception as err:  # offline, no such repo, no access, no network: all mean "cannot get it"
        raise ValueError(
            f"{str(name_or_path)!r} is not a local folder, and downloading it as a Hugging Face Hub repo failed "
            f"({type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else 'no details'}). For a local run, "
            f"check the path; for a Hub repo, check the id, your network and login (`hf auth login`) and that "
            f"HF_HUB_OFFLINE is not set, or download it elsewhere (`hf download {name_or_path} --local-dir DIR`) "
            f"and pass DIR"
        ) from err


def load_model_for_run(run_dir: str | Path, base_model: Optional[str] = None, trust_remote_code: bool = False):
    """Rebuild the trained model of a run folder; returns ``(model, tokenizer, spec, cfg)``.

    ``base_model`` overrides where the backbone is loaded from (e.g. a local copy of the Hub model);
    its weights must match the fingerprint recorded at training time. ``run_dir`` may be a Hub repo id.
    ``trust_remote_code`` is the caller's opt-in to run model code shipped with the backbone: a run folder
    can say that its backbone needs such code, but never switches it on (a downloaded folder is untrusted).
    """
    run_dir = resolve_run_dir(run_dir)
    check_complete(run_dir, "finetune")
    cfg = load_config(FinetuneConfig, run_dir / "config.yaml")
    spec = load_label_spec(run_dir / "label_map.json")
    base = BaseModelRecord.load(run_dir / "base_model.json")
    if base.needs_remote_code and not trust_remote_code:
        raise ValueError(
            f"the backbone of run {run_dir} ({base.name_or_path}) runs model code shipped with the checkpoint; gr-ft "
            f"runs it only when you opt in: pass --trust-remote-code (or trust_remote_code=True) if you trust its source"
        )
    tokenizer = SequenceTokenizer.from_pretrained(str(run_dir / "tokenizer"))
    source = base_model or (str(run_dir / "backbone") if base.built_from_config else base.name_or_path)
    backbone = load_backbone(source, revision=None if base_model else base.revision,
                             trust_remote_code=trust_remote_code)
    model = SequenceModel(backbone, spec.problem_type, spec.num_labels, cfg.model.pooling, cfg.model.head_dropout)
    if (run_dir / "model.safetensors").exists():
        model.load_state_dict(load_file(str(run_dir / "model.safetensors")))
    else:
        _check_fingerprint(backbone, base)
        model = PeftModel.from_pretrained(model, str(run_dir / "adapter"))
    model.eval()
    return model, tokenizer, spec, cfg


def run_precision(cfg: FinetuneConfig) -> str:
    """The precision a run trained at, as recorded in its config.yaml (fp32 for runs that did not record it).

    Runs written since the precision is recorded store the resolved value (fp32/bf16/fp16) in config.yaml and
    metrics.json; older runs say ``auto``, which no longer tells what ran.
    """
    recorded = cfg.train.precision
    if recorded == "auto":
        logger.warning("this run did not record the precision it trained at (train.precision=auto); predicting in "
                       "fp32 (pass --precision bf16 if it trained in bf16)")
        return "fp32"
    if recorded == "fp16" and not torch.cuda.is_available():
        return "fp32"
    return recorded
