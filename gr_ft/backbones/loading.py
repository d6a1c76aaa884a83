"""Loading a backbone: read config.json, find its family, check what it needs, then build the encoder.

The order matters for safety and for clear errors: the family is recognised from the raw
``config.json`` before any model code could run; remote code runs only when the caller passes
``trust_remote_code=True`` (which gr-ft takes only from the command line or config of the command
being run, never from a file); missing requirements are reported before an import traceback can be.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Optional

from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.dynamic_module_utils import get_class_from_dynamic_module

from ..utils import looks_local
from .compat import IGNORABLE_MISSING, apply_config_defaults, load_weights_into
from .spec import BackboneSpec

__all__ = ["read_checkpoint_config", "resolve_checkpoint_folder", "load_backbone", "uses_remote_code"]

logger = logging.getLogger(__name__)

REMOTE_CODE_HINT = "model.trust_remote_code=true (on the command line: --trust-remote-code for predict/evaluate)"


def _offline_error(name: str, err: Exception) -> ValueError:
    return ValueError(
        f"could not get model {name!r} from the Hugging Face Hub ({type(err).__name__}: "
        f"{str(err).splitlines()[0][:200] if str(err) else 'no details'}). Check the id; if you are offline, download "
        f"it on a connected machine (`hf download {name} --local-dir DIR`) and pass DIR as model.name_or_path"
    )


def resolve_checkpoint_folder(name_or_path: str, revision: Optional[str] = None) -> Path:
    """A local folder holding the checkpoint: the path itself, or the Hub snapshot (downloaded once, then cached)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"model path {name_or_path!r} is a file; pass the folder that holds config.json")
    if looks_local(name_or_path):
        raise ValueError(f"model path {name_or_path!r} does not exist (and is not a Hub id of the form user/name)")
    import huggingface_hub

    try:
        return Path(huggingface_hub.snapshot_download(name_or_path, revision=revision))
    except Exception as err:  # offline, unknown repo, gated: all mean "cannot get it"
        raise _offline_error(name_or_path, err) from err


def read_checkpoint_config(folder: Path) -> dict:
    """The raw config.json of a checkpoint folder (nothing imported, nothing executed)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ValueError(f"{folder} has no config.json, so it is not a model folder; pass the folder that holds the "
                         f"checkpoint (config.json + weights), or leave model.name_or_path empty to build one")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON (line {err.lineno}: {err.msg}); re-download the checkpoint") from err


def uses_remote_code(spec: BackboneSpec, raw: dict, trust_remote_code: bool) -> bool:
    """Whether loading runs the checkpoint's own code: only with the caller's opt-in, and only if it has code."""
    has_code = bool(raw.get("auto_map"))
    if spec.needs_remote_code and not trust_remote_code:
        raise ValueError(
            f"this checkpoint is {spec.description}: its model exists only as code shipped with the checkpoint "
            f"({', '.join(sorted(set(str(v).split('.')[0] + '.py' for v in (raw.get('auto_map') or {}).values())))}). "
            f"gr-ft runs such code only when you opt in on the command: if you trust its source, set {REMOTE_CODE_HINT}"
        )
    return trust_remote_code and has_code


def _check_requirements(spec: BackboneSpec) -> None:
    missing = [module for module in spec.requirements if importlib.util.find_spec(module) is None]
    if missing:
        note = f" ({spec.requirement_note})" if spec.requirement_note else ""
        raise ValueError(
            f"{spec.description} needs the Python package(s) {missing}{note}; install them with "
            f"pip install 'gr-ft[{spec.extra}]'"
        )


def _load_config(folder: Path, spec: BackboneSpec, raw: dict, remote: bool) -> PretrainedConfig:
    if raw.get("model_type") is None and spec.model_class is not None and not remote:
        # e.g. Rostlab/prot_bert: a BertForMaskedLM config without model_type, which AutoConfig refuses
        config = spec.model_class(raw).config_class.from_pretrained(folder)
    else:
        try:
            config = AutoConfig.from_pretrained(folder, trust_remote_code=remote)
        except ValueError as err:
            if "trust_remote_code" in str(err):
                raise ValueError(f"model in {folder} needs its own code: if you trust its source, set "
                                 f"{REMOTE_CODE_HINT}") from err
            raise ValueError(f"could not read the config in {folder}: {str(err).splitlines()[0][:300]}") from err
    apply_config_defaults(config, spec.config_defaults)
    return config


def _dynamic_class(reference: str, folder: Path, auto_class: str) -> type:
    """A class from the checkpoint's code, registered so ``save_pretrained`` copies that code beside the weights."""
    cls = get_class_from_dynamic_module(reference, str(folder))
    cls.register_for_auto_class(auto_class)
    return cls


def _remote_class(folder: Path, raw: dict, spec: BackboneSpec) -> tuple[type, Optional[str]]:
    """The class named by the checkpoint's auto_map, and the attribute holding the encoder inside it (if any)."""
    auto_map = raw.get("auto_map") or {}
    if "AutoModel" in auto_map:
        return _dynamic_class(auto_map["AutoModel"], folder, "AutoModel"), None
    for key in ("AutoModelForMaskedLM", "AutoModelForCausalLM"):
        if key in auto_map:  # e.g. NT v2 re-added only AutoModelForMaskedLM: take the encoder out of the MLM
            cls = _dynamic_class(auto_map[key], folder, key)
            return cls, spec.encoder_attr or cls.base_model_prefix
    raise ValueError(f"the auto_map of {folder}/config.json names no AutoModel, AutoModelForMaskedLM or "
                     f"AutoModelForCausalLM class ({sorted(auto_map)}); gr-ft cannot tell which class is the encoder")


def _encoder_class(folder: Path, raw: dict, spec: BackboneSpec, config, remote: bool) -> tuple[type, Optional[str]]:
    if remote:
        return _remote_class(folder, raw, spec)
    if spec.model_class is not None:
        return spec.model_class(config), None
    return AutoModel, None


def _sdpa_kwargs(cls: type) -> dict:
    return {"attn_implementation": "sdpa"} if getattr(cls, "_supports_sdpa", False) else {}


def _instantiate(cls: type, folder: Path, config, spec: BackboneSpec, remote: bool) -> PreTrainedModel:
    kwargs = dict(spec.load_kwargs)
    if spec.init_on_cpu:
        model = cls(config, **kwargs) if cls is not AutoModel else AutoModel.from_config(config, **kwargs)
        load_weights_into(model, folder)
        return model
    try:
        model, info = cls.from_pretrained(folder, config=config, trust_remote_code=remote, output_loading_info=True,
                                          **kwargs, **_sdpa_kwargs(cls))
    except ValueError as err:
        if "Unrecognized" in str(err) or "model_type" in str(err):
            raise ValueError(
                f"transformers does not know the architecture in {folder} ({str(err).splitlines()[0][:200]}); if the "
                f"checkpoint ships its own code and you trust it, set {REMOTE_CODE_HINT}, otherwise add a "
                f"BackboneSpec for it in gr_ft/backbones/"
            ) from err
        raise
    _check_loading_info(folder, model, info)
    return model


def _check_loading_info(folder: Path, model: PreTrainedModel, info: dict) -> None:
    """Refuse a checkpoint whose weights leave encoder tensors at random init (transformers only warns)."""
    missing = [key for key in info.get("missing_keys", []) if not key.startswith(IGNORABLE_MISSING)]
    mismatched = info.get("mismatched_keys", [])
    if missing or mismatched:
        raise ValueError(
            f"the weights in {folder} do not fit {type(model).__name__}: {len(missing)} tensors missing "
            f"(e.g. {sorted(missing)[:3]}), {len(mismatched)} of another shape; the checkpoint needs another "
            f"architecture (its own code: {REMOTE_CODE_HINT}) or a BackboneSpec in gr_ft/backbones/"
        )


def _set_dropout(config, spec: BackboneSpec, hidden: Optional[float], attention: Optional[float]) -> None:
    hidden_key, attention_key = spec.dropout_keys
    for key, value in ((hidden_key, hidden), (attention_key, attention)):
        if value is not None and hasattr(config, key):
            setattr(config, key, value)


def load_backbone(name_or_path: str, revision: Optional[str] = None, trust_remote_code: bool = False,
                  attention_dropout: Optional[float] = None, hidden_dropout: Optional[float] = None) -> PreTrainedModel:
    """The encoder of a checkpoint (Hub id or local folder), through its family's BackboneSpec.

    ``trust_remote_code`` must come from the person running the command (flag or config), never from a
    file: gr-ft never reads it from a run folder. ``attention_dropout``/``hidden_dropout`` override the
    checkpoint's dropout when given.

    Example:
        >>> load_backbone("facebook/esm2_t6_8M_UR50D").config.model_type  # doctest: +SKIP
        'esm'
    """
    from . import detect_backbone

    folder = resolve_checkpoint_folder(str(name_or_path), revision)
    from ..run_state import check_pretrained_folder  # a `gr-ft pretrain` folder must be complete (metrics.json)

    check_pretrained_folder(folder)
    raw = read_checkpoint_config(folder)
    spec = detect_backbone(raw)
    remote = uses_remote_code(spec, raw, trust_remote_code)
    if remote or spec.needs_remote_code:
        _check_requirements(spec)
    config = _load_config(folder, spec, raw, remote)
    _set_dropout(config, spec, hidden_dropout, attention_dropout)
    cls, encoder_attr = _encoder_class(folder, raw, spec, config, remote)
    model = _instantiate(cls, folder, config, spec, remote)
    if encoder_attr:
        model = getattr(model, encoder_attr)
    if spec.after_load is not None:
        spec.after_load(model)
    logger.info("loaded %s backbone from %s (%s)", spec.name, name_or_path, type(model).__name__)
    return model
