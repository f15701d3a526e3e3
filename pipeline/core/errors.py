"""The exception types the command line turns into a single clear line: bad input (exit status 2) and a signal
(128 + its number); and the errors of a full disk (exit status 1; the message: pipeline/core/paths.py)."""

from __future__ import annotations

import errno
from pathlib import Path


class UserError(Exception):
    """Bad input the user must fix: names the file or field and what was expected."""


class FolderLost(Exception):
    """The folder a writer holds was moved, replaced or lost its lock file: it stops writing (exit status 1),
    naming where what it wrote now lives (`moved_to`, when the folder was moved)."""

    def __init__(self, message: str, folder: Path, moved_to: Path | None):
        super().__init__(message)
        self.folder, self.moved_to = folder, moved_to


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
