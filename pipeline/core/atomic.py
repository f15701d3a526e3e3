"""Outputs that appear whole or not at all: written beside their final path and renamed over it when complete,
so a kill, a full disk or an exception never leaves a partial file that looks finished."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from pipeline.core.errors import FolderLost
from pipeline.core.folder_lock import check_held


def _staging(path: Path) -> Path:
    # Same folder (the rename stays on one file system), hidden, the suffix kept for writers that infer the
    # format from it (matplotlib), and the pid so two writers never share one.
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A path to write to; on success it is renamed to `path`, on any failure removed."""
    path = Path(path)
    check_held(path)
    staging = _staging(path)
    # The commands check their output paths before any work (pipeline/core/paths.py); a missing parent folder is
    # made here, at the end, so that no finished work is lost to it.
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield staging
        check_held(path)
        os.replace(staging, path)
    except FolderLost as exc:  # the folder moved under the write: its staging file moved with it
        staging.unlink(missing_ok=True)
        if exc.moved_to is not None and exc.folder in staging.absolute().parents:
            (exc.moved_to / staging.absolute().relative_to(exc.folder)).unlink(missing_ok=True)
        raise
    except BaseException as exc:
        staging.unlink(missing_ok=True)
        if isinstance(exc, FileNotFoundError):
            check_held(path)  # the folder moved between the check and the write: say so, not "no such file"
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """An open file whose contents appear at `path` only once it has been written completely."""
    with atomic_path(path) as staging, open(staging, mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


@contextlib.contextmanager
def staged_folder(target: str | Path, what: str) -> Iterator[Path]:
    """A path beside `target` to build a folder at, renamed to `target` when the block completes and removed on
    any failure; one builder at a time (a lock beside it). One left by a killed builder is rebuilt from nothing."""
    from pipeline.core.folder_lock import folder_lock

    target = Path(target)
    staging = target.with_name(f".{target.name}.partial")
    held = False
    try:
        with folder_lock(target.with_name(f".{target.name}.lock"), what):
            held = True
            shutil.rmtree(staging, ignore_errors=True)
            yield staging
            os.rename(staging, target)
    except BaseException:
        if held:  # ours, not another builder's that refused us
            shutil.rmtree(staging, ignore_errors=True)
        raise
