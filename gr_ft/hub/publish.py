"""The exact repository folder of a run, and its upload to the Hugging Face Hub in one commit."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

import huggingface_hub

from .card import DEFAULT_LICENSE, check_repo_id, render_model_card
from ..run_folder import ADAPTER_FILES, RunFolder, read_run_folder
from .repo_files import folder_size_mb, repo_items

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------- the repository folder


@contextmanager
def staged_folder(out_dir: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a staging folder beside ``out_dir``; on success it becomes ``out_dir`` by rename, else it is removed."""
    if out_dir.is_file():
        raise ValueError(f"{out_dir} is a file; choose a folder path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ValueError(f"{out_dir} exists and is not empty; choose another folder or pass overwrite=True "
                         f"(--overwrite) to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def copy_item(run: RunFolder, name: str, target: Path) -> None:
    source = run.path / name
    if name == "adapter":
        missing = [f for f in ADAPTER_FILES if not (source / f).exists()]
        if missing:
            raise ValueError(f"{source} lacks {missing}; gr-ft publishes adapters as safetensors only (re-save the "
                             f"adapter with peft's save_pretrained(safe_serialization=True))")
        (target / name).mkdir()
        for file in ADAPTER_FILES:  # peft's own README.md stub is left out: README.md is the model card
            shutil.copy2(source / file, target / name / file)
    elif source.is_dir():
        shutil.copytree(source, target / name)
    else:
        shutil.copy2(source, target / name)


def build_repo_folder(run_dir: str | Path, out_dir: str | Path, repo_id: Optional[str] = None,
                      seed_runs: Sequence[str | Path] = (), overwrite: bool = False,
                      license: str = DEFAULT_LICENSE) -> Path:
    """Write exactly the repository that :func:`push_run` would upload, atomically; returns ``out_dir``.

    Example:
        >>> build_repo_folder("runs/demo", "publish/demo", repo_id="me/demo")  # doctest: +SKIP
        PosixPath('publish/demo')
    """
    run = read_run_folder(run_dir)
    card = render_model_card(run_dir, repo_id, seed_runs, license)  # every check before the first write
    out = Path(out_dir)
    with staged_folder(out, overwrite) as staging:
        for name in repo_items(run):
            copy_item(run, name, staging)
        card.save(staging / "README.md")
    logger.info("wrote repository folder %s (%.2f MB)", out, folder_size_mb(out))
    return out


# ---------------------------------------------------------------- upload


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE as set now (huggingface_hub reads them only at import)."""
    values = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return any(v is not None and v.upper() in huggingface_hub.constants.ENV_VARS_TRUE_VALUES for v in values)


def _hub_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning the Hub could not be reached or refused the request."""
    errors: list[type[BaseException]] = [OSError]  # HfHubHTTPError, OfflineModeIsEnabled, ConnectionError
    for module in ("httpx2", "httpx"):  # the HTTP client of huggingface_hub (transport errors are not OSErrors)
        try:
            errors.append(importlib.import_module(module).HTTPError)
        except ImportError:
            pass
    return tuple(errors)


def _upload(folder: Path, repo_id: str, token: str, private: bool, revision: Optional[str]) -> str:
    api = huggingface_hub.HfApi(token=token)
    url = api.create_repo(repo_id, exist_ok=True, private=private)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                      commit_message=f"gr-ft: upload run {folder.name}")  # one commit: all files or none
    return str(url) + (f"/tree/{revision}" if revision else "")


def push_run(run_dir: str | Path, repo_id: str, *, private: bool = False, token: Optional[str] = None,
             local_dir: Optional[str | Path] = None, revision: Optional[str] = None,
             seed_runs: Sequence[str | Path] = (), overwrite: bool = False, license: str = DEFAULT_LICENSE):
    """Upload a run folder as a Hub model repository (one commit), or only write it to ``local_dir``.

    Returns the repository URL, or the folder with ``local_dir``. Without a token or network it raises
    a ValueError saying how to fix that, and leaves nothing behind (locally or on the Hub).

    Example:
        >>> push_run("runs/demo", "me/promoter-lora", private=True)  # doctest: +SKIP
        'https://huggingface.co/me/promoter-lora'
    """
    check_repo_id(repo_id)
    if local_dir is not None:
        return build_repo_folder(run_dir, local_dir, repo_id, seed_runs, overwrite, license)
    token = token or huggingface_hub.get_token()
    if not token:
        raise ValueError(f"cannot upload {run_dir} to {repo_id}: no Hugging Face token. Log in with `hf auth login` "
                         f"(older huggingface_hub: `huggingface-cli login`) or set HF_TOKEN, or write the repository "
                         f"folder locally with --local-dir DIR (push_run(..., local_dir=DIR))")
    if _hub_offline():
        raise ValueError(f"cannot upload {run_dir} to {repo_id}: offline mode is on (HF_HUB_OFFLINE or "
                         f"TRANSFORMERS_OFFLINE); unset it, or write the repository folder with --local-dir DIR")
    with tempfile.TemporaryDirectory(prefix="gr-ft-push-") as tmp:
        folder = build_repo_folder(run_dir, Path(tmp) / Path(repo_id).name, repo_id, seed_runs, license=license)
        try:
            url = _upload(folder, repo_id, token, private, revision)
        except _hub_errors() as err:
            raise ValueError(f"upload of {run_dir} to {repo_id} failed: {type(err).__name__}: "
                             f"{str(err).splitlines()[0][:300] if str(err) else 'no details'}. Check your network "
                             f"and token (`hf auth login`), or write the folder with --local-dir DIR and upload it "
                             f"later (`hf upload {repo_id} DIR`)") from err
    logger.info("pushed %s to %s", run_dir, url)
    return url
