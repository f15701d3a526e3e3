"""Checkpoints: plain tensors and containers only, so `torch.load(weights_only=True)` reads them; written
atomically so a kill mid-save leaves the previous checkpoint intact."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import torch

from pipeline.core import atomic
from pipeline.core.errors import UserError
from pipeline.core.paths import free_mb

FORMAT = "gasm-cast-checkpoint"
VERSION = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic.atomic_path(path) as staging:
        try:
            torch.save({"format": FORMAT, "version": VERSION, **state}, staging)
        except RuntimeError as exc:
            # torch reports a write that failed (a full disk) as a RuntimeError of its zip writer; the space is
            # measured before the partial file is removed, which frees it again.
            if free_mb(path) < 64:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
            raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a folder, expected a .pt file (e.g. {path / 'best.pt'})")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {path} is empty (0 bytes), expected a .pt file written by fuse-train")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every unreadable file gets the same clear message
        raise UserError(
            f"checkpoint {path} is corrupt or not a torch checkpoint: {str(exc).splitlines()[0][:200]}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a gasm-cast checkpoint")
    if state.get("version") != VERSION:
        raise UserError(f"checkpoint {path} has version {state.get('version')}, expected {VERSION}")
    return state
