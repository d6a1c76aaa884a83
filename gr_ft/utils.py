"""Small file and naming utilities that several modules share (one home each).

Example:
    >>> is_hub_id("facebook/esm2_t6_8M_UR50D"), is_hub_id("./models/esm2"), is_hub_id("dnabert6")
    (True, False, False)
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Optional

__all__ = ["looks_local", "is_hub_id", "atomic_write_text", "atomic_writer", "check_output_folder", "save_tensors",
           "progress_bar", "save_npz", "configure_logging"]

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
LOG_INTERVAL_S = 60.0  # seconds between progress lines when stderr is a file or pipe, not a terminal


def configure_logging(libraries: int = logging.WARNING) -> None:
    """The log set-up of the commands and recipes: gr_ft's INFO lines, other libraries' from ``libraries`` up."""
    logging.basicConfig(level=libraries, format=LOG_FORMAT)
    logging.getLogger("gr_ft").setLevel(logging.INFO)


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs):
    """A tqdm bar that suits where stderr goes: live on a terminal; in a redirected log one line per
    ``LOG_INTERVAL_S`` seconds instead of ten a second; off with ``enabled=False`` or ``GRFT_PROGRESS=0``."""
    from tqdm.auto import tqdm

    if os.environ.get("GRFT_PROGRESS", "1") == "0":
        enabled = False
    if enabled and not _stderr_is_terminal():
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("maxinterval", LOG_INTERVAL_S)
        kwargs.setdefault("ascii", True)
    return tqdm(iterable, disable=not enabled, **kwargs)


def _stderr_is_terminal() -> bool:
    import sys

    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def looks_local(name: str) -> bool:
    """True when ``name`` can only be a path: it starts with . / ~, has a suffix, or is not of the form user/name."""
    return name.startswith((".", "/", "~")) or Path(name).suffix != "" or name.count("/") != 1


def is_hub_id(name: Optional[str]) -> bool:
    """True for a Hub repo id of the form ``user/name`` that is not also an existing local path."""
    return bool(name) and not Path(name).exists() and not looks_local(name)


def cache_dir() -> Path:
    """Where gr-ft keeps files it derives from inputs (``$GRFT_CACHE_DIR``, default ``~/.cache/gr-ft``): decompressed
    genomes, encoded splits (``encoded/``)."""
    return Path(os.environ.get("GRFT_CACHE_DIR") or Path.home() / ".cache" / "gr-ft")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary sibling and ``os.replace``: readers never see half a file.

    A missing parent folder is an error naming it (not a traceback about the temporary file).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {path.parent} does not exist; create it or choose another path")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot write {path}: {err.strerror or err}") from err
    return path


@contextlib.contextmanager
def atomic_writer(path: str | Path):
    """A text handle onto a temporary sibling of ``path`` that replaces ``path`` only when the block ends
    without an error (for output written as it streams; :func:`atomic_write_text` for text in memory).

        >>> with atomic_writer("scores.bed") as out:
        ...     out.write("chr1\t0\t100\t0.93\n")
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {path.parent} does not exist; create it or choose another path")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_output_folder(path: str | Path, flag: str) -> Path:
    """Refuse an output folder that is an existing file, naming the flag, before any work is done.

    Example:
        >>> check_output_folder("runs/demo", "output_dir")
        PosixPath('runs/demo')
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a folder; choose another {flag} (or move the file away)")
    return path


def save_tensors(tensors: dict, path: str | Path) -> None:
    """Write tensors as safetensors; tensors that share memory (tied embeddings, HyenaDNA's filter frequencies)
    are stored once each as their own copy, which safetensors requires."""
    from safetensors.torch import save_file

    seen: set[int] = set()
    out = {}
    for name, tensor in tensors.items():
        pointer = tensor.untyped_storage().data_ptr()
        out[name] = tensor.detach().clone().contiguous() if pointer in seen else tensor.detach().contiguous()
        seen.add(pointer)
    save_file(out, str(path), metadata={"format": "pt"})


def save_npz(path: str | Path, arrays: dict, compressed: bool = True) -> Path:
    """``np.savez[_compressed]`` into a temporary sibling, then ``os.replace``: never half a file; loads without pickle."""
    import tempfile

    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as handle:
            (np.savez_compressed if compressed else np.savez)(handle, **arrays)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
