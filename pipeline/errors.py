"""The one exception type that the command line turns into a single clear line and exit status 2, and the one
message for a full disk (exit status 1)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


class UserError(Exception):
    """Bad input the user must fix: names the file or field and what was expected."""


class Interrupted(BaseException):
    """A signal (SIGINT: Ctrl-C; SIGTERM: pre-emption, scancel) stopped the work; what was finished is kept.
    The command line ends with one line and exit status 128 + the signal's number. A BaseException, as
    KeyboardInterrupt is: no `except Exception` that records a per-clip failure may swallow it."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# Errors of a write that ran out of space (or quota): one line naming the path and what is left, never a trace.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def free_mb(path: str | Path) -> float:
    """Free space on the file system that holds `path` (or its nearest existing ancestor), in MB."""
    folder = Path(path).absolute()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free / 2**20


def disk_full_message(exc: OSError) -> str:
    where = exc.filename or "the output"
    return f"disk full writing {where} ({free_mb(where if exc.filename else '.'):.0f} MB free)"


def require_space(path: str | Path, nbytes: int) -> None:
    """Refuse before work that would write up to `nbytes` at `path` onto a file system with less free."""
    if free_mb(path) * 2**20 < nbytes:
        raise UserError(f"{path}: needs up to {nbytes / 2**20:.0f} MB, {free_mb(path):.0f} MB free there")
