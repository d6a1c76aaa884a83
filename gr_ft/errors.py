"""What a failed command prints and which exit code it returns: one home for the mapping.

* a **user error** (bad input, config, path, a full or read-only disk) prints one line
  ``gr-ft: error: <what, where, how to fix>`` and exits **2**;
* an interrupt (Ctrl-C, SIGINT) prints ``gr-ft: interrupted ...`` and exits **130**; the recipes' output
  folders stay resumable (gr_ft.run_state);
* anything else is a bug: a one-line summary with a hint to rerun with ``--debug``, exit **1**.

``--debug`` (``gr-ft --debug COMMAND ...``) or ``GRFT_DEBUG=1`` also prints the traceback.
User input errors are ``ValueError`` (the style of every gr-ft module) or :class:`UserError`.

Example:
    >>> run_command(lambda argv: int(argv[0]), ["7"])
    7
    >>> run_command(lambda argv: int("x"), [])   # prints "gr-ft: error: invalid literal ..."
    2
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from typing import Callable, Optional

__all__ = ["UserError", "EXIT_USER_ERROR", "EXIT_BUG", "EXIT_INTERRUPTED", "run_command", "debug_requested"]

EXIT_USER_ERROR = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

USER_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR,
                  errno.EISDIR, errno.EEXIST}
"""OSErrors that are about the user's files or disk, not about gr-ft."""
OS_ERROR_HINTS = {
    errno.ENOSPC: "free some space (or choose another output folder) and rerun the same command; a training run "
                  "resumes from its last checkpoint",
    errno.EDQUOT: "free some space or raise the quota, then rerun the same command",
    errno.EROFS: "choose an output folder on a writable file system",
    errno.EACCES: "choose an output folder you can write to (or fix its permissions)",
    errno.EPERM: "choose an output folder you can write to (or fix its permissions)",
}


class UserError(ValueError):
    """Bad input: what was wrong, where (file and line, config key) and how to fix it. Exit code 2."""


def debug_requested() -> bool:
    """True when ``GRFT_DEBUG=1`` is set (the ``--debug`` flag is handled by :func:`gr_ft.cli.main`)."""
    return os.environ.get("GRFT_DEBUG", "0") not in ("", "0")


def describe_os_error(err: OSError) -> str:
    """``No space left on device: runs/x/adapter (free some space ...)``: the reason, the path, the fix."""
    where = f": {err.filename}" if err.filename else ""
    hint = OS_ERROR_HINTS.get(err.errno)
    return f"{err.strerror or err}{where}" + (f"; {hint}" if hint else "")


def _user_message(err: BaseException) -> Optional[str]:
    """The one-line message of a user error, or None when ``err`` is a bug."""
    if isinstance(err, OSError) and err.errno in USER_OS_ERRORS:
        return describe_os_error(err)
    if isinstance(err, (ValueError, FileNotFoundError)):
        return str(err)
    return None


def run_command(func: Callable[[list[str]], Optional[int]], argv: list[str], debug: bool = False,
                prog: str = "gr-ft") -> int:
    """Run ``func(argv)`` and turn its outcome into an exit code, printing failures as described above."""
    debug = debug or debug_requested()
    try:
        result = func(argv)
        return result if isinstance(result, int) else 0  # recipes' main() returns their metrics
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{prog}: interrupted; a training run's output folder is left resumable: rerun the same command to "
              f"continue it", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - this is the one place that decides what a failure prints
        if debug:
            traceback.print_exc()
        message = _user_message(err)
        if message is not None:
            print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(f"{prog}: internal error: {type(err).__name__}: {' '.join(str(err).split())[:500]}\n"
              f"{prog}: this is a bug in gr-ft; rerun with --debug (or GRFT_DEBUG=1) for the traceback and report it",
              file=sys.stderr)
        return EXIT_BUG
