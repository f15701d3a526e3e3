"""One writer per folder: an exclusive OS file lock on FOLDER/.lock, which the kernel releases when the process
dies (a SIGKILL never leaves a stale lock), naming its holder (host, pid, command, since when) to whoever is
refused. On shared file systems: NFSv4 carries these locks between nodes; Lustre only when mounted with
`flock` (with `localflock` they hold on one node only); where the file system has no locks at all, a warning
says that one writer is not enforced and the work goes on."""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from pipeline.core.errors import FolderLost, UserError

log = logging.getLogger(__name__)
LOCK_NAME = ".lock"
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
# The folders this process holds: path -> (the open lock file, the folder's and the lock file's identity).
_held: dict[Path, tuple[int, tuple[int, int], tuple[int, int]]] = {}


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def check_held(path: str | Path) -> None:
    """Before writing at `path`: every held folder it lies in is still the one this process locked, at the same
    path, its lock file in place. A lock file deleted under a running writer would let a second one in; a folder
    moved or replaced would take writes elsewhere: either stops the writer (FolderLost), nothing more written."""
    path = Path(path).absolute()
    for folder, (handle, folder_id, lock_id) in _held.items():
        if folder != path and folder not in path.parents:
            continue
        try:
            same = _identity(os.stat(folder)) == folder_id and _identity(os.stat(folder / LOCK_NAME)) == lock_id
        except FileNotFoundError:
            same = False
        if not same:
            now = os.readlink(f"/proc/self/fd/{handle}") if os.path.exists(f"/proc/self/fd/{handle}") else ""
            moved_to = Path(now).parent if now and not now.endswith(" (deleted)") else None
            where = f"it now lives at {moved_to}" if moved_to else "its lock file was deleted"
            raise FolderLost(f"{folder} is no longer the folder this process locked ({where}): stopped without "
                             "writing more; what it wrote before is kept there", folder, moved_to)  # fmt: skip


def _remove_partials(folder: Path) -> None:
    """Staging files of outputs (pipeline/core/atomic.py) that a killed holder left: the lock makes them stale."""
    for leftover in folder.glob(".*.partial*"):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)


def _holder(handle: int) -> str:
    try:
        info = json.loads(os.pread(handle, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on {info['host']} ({info['command']}) since {info['since']}"
    except (ValueError, KeyError, TypeError, OSError):
        return "another process"  # it holds the lock but has not written its name yet


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[None]:
    """Hold FOLDER's lock for the block (creating the folder); refused with one line (exit status 2) while another
    process holds it. Re-entrant within one process is not needed and not supported: take it once, at the top."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{what} {folder} is in use by {_holder(handle)}; wait for it, or stop it") from None
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
            log.warning("%s %s: this file system has no file locks; one writer per folder is not enforced", what,
                        folder)  # fmt: skip
        since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": since})
        os.ftruncate(handle, 0)
        os.pwrite(handle, info.encode(), 0)
        _remove_partials(folder)
        key = folder.absolute()
        _held[key] = (handle, _identity(os.stat(folder)), _identity(os.fstat(handle)))
        yield
    finally:
        _held.pop(folder.absolute(), None)
        # A folder this call made and nothing else wrote to (work refused before it began) is removed again, so bad
        # input leaves nothing behind; otherwise the lock file stays: removing it would race the next holder.
        if created and folder.is_dir() and os.listdir(folder) == [LOCK_NAME]:
            (folder / LOCK_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
        os.close(handle)
