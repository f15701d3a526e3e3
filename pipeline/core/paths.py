"""Checks on the paths a command will write, made before any work: one clear line instead of a traceback later."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from pipeline.core.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# What this process was asked to write, as its command checked it before work (output_folder / output_file /
# writing): a write that fills the disk is named by it when the error carries no file name (Zarr's, h5py's).
_outputs: list[Path] = []
CLI_SCRIPT = PROJECT_ROOT / "cli.py"  # what subprocess runs of the command line start (benches, the GPU check)


def _nearest_existing(path: Path) -> Path:
    """`path` itself if it exists, else its nearest existing ancestor."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def _writable_ancestor(path: Path, what: str) -> None:
    """The nearest existing ancestor of `path` must be a folder this process can create entries in."""
    ancestor = _nearest_existing(path.absolute().parent)
    if not ancestor.is_dir():
        raise UserError(f"{what} {path}: {ancestor} is a file, expected a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {ancestor} is not writable")


def writing(path: str | Path) -> Path:
    """Note that this command writes at `path` (a cache it updates in place): a full disk is reported there."""
    _outputs.append(Path(path))
    return Path(path)


def output_folder(path: str | Path, what: str) -> Path:
    """A folder to create or add to."""
    path = writing(path)
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{what} {path} is a file, expected a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"{what} {path} is not writable")
        return path
    _writable_ancestor(path, what)
    return path


def output_file(path: str | Path, what: str) -> Path:
    """A file to create or replace."""
    path = writing(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder, expected a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{what} {path} is not writable")
    _writable_ancestor(path, what)
    return path


def safe_name(text: str, fallback: str = "clip") -> str:
    """`text` (a clip id, a manifest path) as one file name inside a folder: its last path part, only letters,
    digits, '.', '_' and '-', never hidden, never '.' or '..'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace("\\", "/").rsplit("/", 1)[-1]).strip("._")
    return name or fallback


def free_mb(path: str | Path) -> float:
    """Free space on the file system that holds `path` (or its nearest existing ancestor), in MB."""
    return shutil.disk_usage(_nearest_existing(Path(path))).free / 2**20


def disk_full_message(exc: OSError) -> str:
    """One line: the file being written (or the output the command writes) and the free space of its file
    system."""
    where = exc.filename or (_outputs[-1] if _outputs else None)
    if where is None:
        return f"disk full ({free_mb('.'):.0f} MB free on the working folder's file system)"
    return f"disk full writing {where} ({free_mb(where):.1f} MB free on its file system)"


def require_space(path: str | Path, nbytes: int) -> None:
    """Refuse before work that would write up to `nbytes` at `path` onto a file system with less free."""
    if free_mb(path) * 2**20 < nbytes:
        raise UserError(f"{path}: needs up to {nbytes / 2**20:.0f} MB, {free_mb(path):.0f} MB free there")
