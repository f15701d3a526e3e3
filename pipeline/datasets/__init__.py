"""Dataset readers by name: each turns a data root and split into an ordered ClipList."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.datasets.base import Clip, ClipList, refuse_duplicates
from pipeline.datasets.epic100 import read_epic100
from pipeline.datasets.manifest import read_manifest
from pipeline.datasets.ssv2 import read_ssv2

READERS: dict[str, Callable[[str | Path, str], ClipList]] = {
    "ssv2": read_ssv2,
    "epic100": read_epic100,
    "manifest": read_manifest,
}


def read_dataset(
    name: str, root: str | Path, split: str, limit: int | None = None, classes: str | Path | None = None
) -> ClipList:
    """`classes`: the class list of a manifest (the other datasets ship theirs)."""
    if name not in READERS:
        raise UserError(f"unknown dataset '{name}' (expected one of {', '.join(READERS)})")
    if classes is not None and name != "manifest":
        raise UserError(f"--classes is for --dataset manifest; {name} reads its own class list")
    clips = read_manifest(root, split, classes) if name == "manifest" else READERS[name](root, split)
    refuse_duplicates(clips, f"{name} {split} ({root})")
    if limit is not None:
        clips.clips = clips.clips[:limit]
    return clips


__all__ = ["Clip", "ClipList", "READERS", "read_dataset"]
