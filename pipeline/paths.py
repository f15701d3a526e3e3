"""Checks on the paths a command will write, made before any work: one clear line instead of a traceback later."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipeline.errors import UserError


def _writable_ancestor(path: Path, what: str) -> None:
    """The nearest existing ancestor of `path` must be a folder this process can create entries in."""
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{what} {path}: {ancestor} is a file, expected a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {ancestor} is not writable")


def output_folder(path: str | Path, what: str) -> Path:
    """A folder to create or add to."""
    path = Path(path)
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
    path = Path(path)
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
