"""What state an output folder is in (fresh, resumable, complete) and how it moves between them.

Every recipe's output folder (``gr-ft finetune``, ``gr-ft pretrain``, the meta recipes) follows one
protocol, so that a kill at any instant leaves a folder that is either *resumable* or *complete*:

1. while training, ``checkpoints/`` exists (created before anything else is written);
   ``checkpoints/last`` is replaced atomically (``last.tmp`` -> ``last``, the previous one kept as
   ``last.old`` during the swap);
2. the final files are written to ``.staging/`` and moved in one by one;
3. the marker ``metrics.json`` is moved in (``os.replace``) last;
4. ``checkpoints/`` is renamed to ``.trash`` in one step, then deleted.

A folder is **complete** only when the marker exists and neither ``checkpoints/`` nor ``.staging/``
is left (a kill during 2-4 leaves ``checkpoints/``, so the rerun resumes and writes the folder again).

Example:
    >>> folder_status(Path("runs/demo"))
    'complete'
    >>> check_complete("runs/demo", "finetune")  # raises ValueError on an interrupted folder
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
from pathlib import Path
from typing import Optional

__all__ = ["MARKER", "STAGING", "CHECKPOINTS", "folder_status", "check_complete", "publish_staged",
           "resumable_checkpoint", "kill_point", "check_pretrained_folder"]

MARKER = "metrics.json"
"""Written last: the folder is finished (given no checkpoints/ or .staging/ is left)."""
STAGING = ".staging"
RUN_CONFIG_FILE = "run_config.json"
"""Inside a checkpoint: the flat resolved config it was trained with (a resume compares against it)."""
CHECKPOINTS = "checkpoints"
TRASH = ".trash"

RESUME_HINT = {
    "finetune": ("rerun the command that wrote it (`gr-ft finetune` or a meta recipe, same config and output_dir) to "
                 "resume and finish it"),
    "pretrain": "rerun the same `gr-ft pretrain` command (same config and output_dir) to resume and finish it",
    "meta": "rerun the same meta-training command (same config and output_dir) to resume and finish it",
}


def folder_status(folder: Path) -> str:
    """``complete``, ``interrupted`` (a gr-ft run that has not finished) or ``absent`` (no run here)."""
    folder = Path(folder)
    leftovers = (folder / CHECKPOINTS).exists() or (folder / STAGING).exists()
    if (folder / MARKER).exists() and not leftovers:
        return "complete"
    if leftovers or (folder / MARKER).exists():
        return "interrupted"
    return "absent"


def check_complete(folder: str | Path, kind: str = "finetune") -> None:
    """Refuse a folder that is not a finished run of ``kind`` (finetune, pretrain, meta), saying how to finish it.

    Example:
        >>> check_complete("runs/pretrain_dna_kmer", "pretrain")
    """
    folder = Path(folder)
    status = folder_status(folder)
    if status == "complete":
        return
    if status == "interrupted":
        left = [name for name in (CHECKPOINTS, STAGING) if (folder / name).exists()]
        raise ValueError(
            f"{folder} is an interrupted gr-ft {kind} run (it still holds {', '.join(left) or 'no marker'}; it is "
            f"complete only once {MARKER} is written and checkpoints are cleaned up); {RESUME_HINT[kind]}, or pass "
            f"overwrite=true to start it over"
        )
    raise ValueError(f"{folder} is not a finished gr-ft {kind} run folder (no {MARKER}); pass the output_dir of a "
                     f"run that has finished")


def resumable_checkpoint(folder: Path) -> Optional[Path]:
    """The newest complete ``checkpoints/last``: ``last``, or ``last.old`` after a kill between the two renames."""
    checkpoints = Path(folder) / CHECKPOINTS
    for name in ("last", "last.old"):
        if (checkpoints / name).is_dir():
            return checkpoints / name
    return None


def publish_staged(out: Path, staging: Path, marker_text: str) -> None:
    """Move every file of ``staging`` into ``out``, then the marker, then drop ``checkpoints/`` (see module doc)."""
    for item in sorted(staging.iterdir()):
        target = out / item.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
        kill_point("publishing")
    marker_tmp = out / f".{MARKER}.tmp"
    marker_tmp.write_text(marker_text)
    os.replace(marker_tmp, out / MARKER)
    kill_point("marker")
    staging.rmdir()
    if (out / CHECKPOINTS).exists():
        shutil.rmtree(out / TRASH, ignore_errors=True)
        os.replace(out / CHECKPOINTS, out / TRASH)
    shutil.rmtree(out / TRASH, ignore_errors=True)


def kill_point(name: str, step: Optional[int] = None) -> None:
    """Test-only fault injection: SIGKILL this process at the point ``GRFT_TEST_KILL_AT`` names.

    ``GRFT_TEST_KILL_AT=checkpoint:20`` kills right after the step-20 checkpoint is in place,
    ``checkpoint_staged:20`` after ``last.tmp`` is written but before it is renamed, ``publishing`` after
    the first final file is moved in, ``marker`` after ``metrics.json`` is written but before cleanup.
    ``GRFT_TEST_ENOSPC_AT=<point>`` raises ``OSError(ENOSPC)`` there instead, as a full disk would.
    Unset (always, outside tests/test_resume.py and tests/test_bad_input.py) they do nothing.
    """
    here = name if step is None else f"{name}:{step}"
    if os.environ.get("GRFT_TEST_KILL_AT") == here:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("GRFT_TEST_ENOSPC_AT") == here:  # the disk fills up here (tests/test_bad_input.py)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"{here} (GRFT_TEST_ENOSPC_AT)")


def check_pretrained_folder(folder: str | Path) -> None:
    """Refuse a ``gr-ft pretrain`` output folder (it has pretrain_config.yaml, checkpoints/ or .staging/) that is not
    complete; any other folder (a Hub snapshot, a downloaded checkpoint) passes untouched.

    Example:
        >>> check_pretrained_folder("runs/pretrain_dna_kmer")  # before loading it as a backbone
    """
    folder = Path(folder)
    if any((folder / name).exists() for name in ("pretrain_config.yaml", CHECKPOINTS, STAGING)):
        check_complete(folder, "pretrain")
