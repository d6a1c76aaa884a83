"""The run folder: what a fine-tuning run leaves behind, and the one call that reloads it.

Layout of ``output_dir`` after a finished run::

    config.yaml        the resolved config
    metrics.json       test metrics of the best dev epoch, dev history, timing (written last)
    label_map.json     problem type and class names by id
    base_model.json    which backbone the adapter belongs to (name, revision, weight fingerprint)
    tokenizer/         the tokenizer
    adapter/           peft adapter (adapter_config.json + adapter_model.safetensors), or
    model.safetensors  all weights, for lora.method=full
    backbone/          the backbone itself, only when it was built from a config (random init)

Example:
    >>> predictor = load_run("runs/demo")
    >>> predictor.predict(["ACGT" * 25]).columns.tolist()
    ['prediction', 'prob_0', 'prob_1']
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from .config import FinetuneConfig, load_config, save_config
from .labels import LabelSpec, load_label_spec
from .modeling import SequenceModel, _looks_local, backbone_fingerprint, load_backbone
from .tokenization import SequenceTokenizer

__all__ = ["Predictor", "load_run", "evaluate_run", "prepare_output_dir", "write_run", "BaseModelRecord",
           "load_model_for_run", "resolve_run_dir"]

logger = logging.getLogger(__name__)
FINISHED_MARKER = "metrics.json"


@dataclass
class BaseModelRecord:
    """The backbone an adapter was trained on."""

    name_or_path: Optional[str]
    revision: Optional[str]
    fingerprint: str
    built_from_config: bool
    trust_remote_code: bool = False

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "BaseModelRecord":
        return cls(**json.loads(path.read_text()))


def prepare_output_dir(cfg: FinetuneConfig) -> Optional[Path]:
    """Check ``cfg.output_dir`` before training; returns the checkpoint to resume from, if any.

    A finished run is never overwritten unless ``overwrite=true``; a folder that is not a gr-ft
    run is never touched.
    """
    out = Path(cfg.output_dir)
    last = out / "checkpoints" / "last"
    if (out / FINISHED_MARKER).exists():
        if not cfg.overwrite:
            raise ValueError(
                f"output_dir {out} already holds a finished run ({FINISHED_MARKER}); choose another output_dir or "
                f"pass overwrite=true to replace it"
            )
        return None
    if out.is_dir() and any(out.iterdir()) and not (out / "checkpoints").is_dir():
        raise ValueError(f"output_dir {out} exists, is not empty and is not a gr-ft run; choose another output_dir")
    if last.is_dir() and cfg.resume:
        return last
    return None


def write_run(out: Path, model, tokenizer: SequenceTokenizer, spec: LabelSpec, cfg: FinetuneConfig,
              base: BaseModelRecord, metrics: dict, backbone_dir: Optional[Path] = None) -> None:
    """Write the run folder: everything goes to a staging folder first, ``metrics.json`` lands last.

    ``backbone_dir`` is a ``save_pretrained`` folder of the untouched backbone, copied in when the
    backbone was built from a config (the adapter is useless without those exact random weights).
    """
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_config(cfg, staging / "config.yaml")
    spec.save(staging / "label_map.json")
    base.save(staging / "base_model.json")
    tokenizer.save_pretrained(staging / "tokenizer")
    if isinstance(model, PeftModel):
        model.save_pretrained(str(staging / "adapter"))
    else:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(staging / "model.safetensors"))
    if base.built_from_config:
        if backbone_dir is None:
            raise ValueError("a backbone built from config must be saved with the run (pass backbone_dir)")
        shutil.copytree(backbone_dir, staging / "backbone")
    (staging / "metrics.tmp").write_text(json.dumps(metrics, indent=2) + "\n")
    for item in staging.iterdir():
        if item.name == "metrics.tmp":
            continue
        target = out / item.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
    os.replace(staging / "metrics.tmp", out / FINISHED_MARKER)
    staging.rmdir()


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
    if path.exists() or _looks_local(str(name_or_path)):
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


def load_model_for_run(run_dir: str | Path, base_model: Optional[str] = None):
    """Rebuild the trained model of a run folder; returns ``(model, tokenizer, spec, cfg)``.

    ``base_model`` overrides where the backbone is loaded from (e.g. a local copy of the Hub model);
    its weights must match the fingerprint recorded at training time. ``run_dir`` may be a Hub repo id.
    """
    run_dir = resolve_run_dir(run_dir)
    if not (run_dir / FINISHED_MARKER).exists():
        raise ValueError(f"{run_dir} is not a finished gr-ft run folder (no {FINISHED_MARKER})")
    cfg = load_config(FinetuneConfig, run_dir / "config.yaml")
    spec = load_label_spec(run_dir / "label_map.json")
    base = BaseModelRecord.load(run_dir / "base_model.json")
    tokenizer = SequenceTokenizer.from_pretrained(str(run_dir / "tokenizer"))
    source = base_model or (str(run_dir / "backbone") if base.built_from_config else base.name_or_path)
    backbone = load_backbone(source, revision=None if base_model else base.revision,
                             trust_remote_code=base.trust_remote_code)
    if (run_dir / "model.safetensors").exists():
        model = SequenceModel(backbone, spec.problem_type, spec.num_labels, cfg.model.pooling, cfg.model.head_dropout)
        model.load_state_dict(load_file(str(run_dir / "model.safetensors")))
    else:
        _check_fingerprint(backbone, base)
        model = SequenceModel(backbone, spec.problem_type, spec.num_labels, cfg.model.pooling, cfg.model.head_dropout)
        model = PeftModel.from_pretrained(model, str(run_dir / "adapter"))
    model.eval()
    return model, tokenizer, spec, cfg


class Predictor:
    """Predict with a trained run: raw sequences in, a DataFrame of predictions out."""

    def __init__(self, model, tokenizer: SequenceTokenizer, spec: LabelSpec, cfg: FinetuneConfig):
        self.model, self.tokenizer, self.spec, self.cfg = model, tokenizer, spec, cfg

    def logits(self, sequences: list[str], batch_size: int = 64) -> list[torch.Tensor]:
        """Raw model outputs per sequence (token tasks: L, C per sequence; else C)."""
        return self._forward(sequences, batch_size)[0]

    @torch.no_grad()
    def _forward(self, sequences: list[str], batch_size: int) -> tuple[list[torch.Tensor], list[list]]:
        """Outputs per sequence, in input order, and each token's span in full-sequence coordinates."""
        from .data import EncodedSplit, encode_sequences, make_dataloader

        sequences = [s.strip().upper() for s in sequences]
        encoded, starts = encode_sequences(self.tokenizer, sequences, self.cfg.data.max_length, self.cfg.data.crop)
        dummy = [[-100] * len(ids) if self.spec.problem_type == "token_classification" else 0
                 for ids in encoded["input_ids"]]
        data = EncodedSplit(encoded["input_ids"], dummy, self.spec.problem_type)
        loader = make_dataloader(data, self.tokenizer, batch_size, shuffle=False)
        order = list(loader.sampler)
        outputs: list[Optional[torch.Tensor]] = [None] * len(sequences)
        position = 0
        for batch in loader:
            logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])["logits"]
            for row in logits.float():
                index = order[position]
                outputs[index] = row[: len(encoded["input_ids"][index])] if row.ndim == 2 else row
                position += 1
        spans = [[None if span is None else (span[0] + start, span[1] + start) for span in token_spans]
                 for token_spans, start in zip(encoded["token_spans"], starts)]
        return outputs, spans

    def predict(self, sequences: list[str], batch_size: int = 64) -> pd.DataFrame:
        """Predicted label (and class probabilities) per sequence.

        Example:
            >>> load_run("runs/demo").predict(["TATAAAAGGC" * 10])["prediction"].tolist()
            ['1']
        """
        outputs, spans = self._forward(sequences, batch_size)
        kind = self.spec.problem_type
        if kind == "regression":
            return pd.DataFrame({"prediction": [float(o.squeeze()) for o in outputs]})
        if kind == "token_classification":
            return pd.DataFrame({"prediction": [self._positions(o, s, len(seq))
                                                for o, s, seq in zip(outputs, spans, sequences)]})
        probs = torch.stack(outputs)
        probs = probs.sigmoid() if kind == "multilabel" else probs.softmax(-1)
        frame = pd.DataFrame(probs.numpy(), columns=[f"prob_{n}" for n in self.spec.names])
        if kind == "multilabel":
            frame.insert(0, "prediction", [self.spec.separator.join(n for n, p in zip(self.spec.names, row) if p > 0.5)
                                           for row in probs.numpy()])
        else:
            frame.insert(0, "prediction", [self.spec.decode(i) for i in probs.argmax(-1).tolist()])
        return frame

    def _positions(self, logits: torch.Tensor, spans, length: int) -> str:
        """Per-position label string: each position takes the class of the token covering it (else class 0)."""
        classes = np.zeros(length, dtype=np.int64)
        predicted = logits.argmax(-1).tolist()
        for token, span in enumerate(spans):
            if span is not None:
                classes[span[0] : span[1]] = predicted[token]
        return "".join(self.spec.names[c] for c in classes)


def load_run(run_dir: str | Path, base_model: Optional[str] = None) -> Predictor:
    """Reload a finished run folder (or a Hub repo id written by ``gr-ft push``) for prediction, in one call.

    Example:
        >>> load_run("runs/demo").predict(["ACGT" * 25])  # doctest: +SKIP
        >>> load_run("me/promoter-lora").predict(["ACGT" * 25])  # doctest: +SKIP
    """
    return Predictor(*load_model_for_run(run_dir, base_model))


def evaluate_run(run_dir: str | Path, data_path: str, split: str = "test", batch_size: int = 64) -> dict:
    """Metrics of a finished run on labelled data: a file, or one split of a dataset folder.

    Labels are encoded with the run's own label map, so an unknown label is an error naming file and line.

    Example:
        >>> evaluate_run("runs/demo", "../shared/data/promoter/gue_prom_core_all")["mcc"]  # doctest: +SKIP
    """
    from accelerate import Accelerator

    from .data import LabeledSplit, encode_split, make_dataloader
    from .io import find_split_files, read_table, validate_sequences
    from .training import evaluate, has_accelerator_device

    model, tokenizer, spec, cfg = load_model_for_run(run_dir)
    path = Path(data_path)
    if path.is_dir():
        files = find_split_files(path)
        if split not in files:
            raise ValueError(f"dataset folder {path} has no {split} split; found {sorted(files)}")
        path = files[split]
    frame = read_table(path, cfg.data.label_column, cfg.data.labels_file)
    if cfg.data.label_column not in frame.columns:
        raise ValueError(f"{path}: no {cfg.data.label_column!r} column; found {[c for c in frame.columns if c != '_line']}")
    alphabet = "protein" if tokenizer.kind == "protein" else "dna"
    frame = validate_sequences(frame, alphabet, str(path), cfg.data.sequence_column)
    encoded = encode_split(LabeledSplit(frame, str(path)), tokenizer, spec, cfg.data.max_length, cfg.data.crop,
                           cfg.data.sequence_column, cfg.data.label_column)
    accelerator = Accelerator(cpu=not has_accelerator_device())
    loader = accelerator.prepare(make_dataloader(encoded, tokenizer, batch_size, shuffle=False))
    return evaluate(accelerator.prepare(model), loader, accelerator, spec.problem_type, spec.num_labels)
