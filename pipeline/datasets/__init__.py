"""Dataset readers by name: each turns a data root and split into an ordered ClipList."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.defaults import DATASETS
from pipeline.core.errors import UserError
from pipeline.datasets.base import Clip, ClipList, refuse_duplicates
from pipeline.datasets.epic100 import read_epic100
from pipeline.datasets.manifest import read_manifest
from pipeline.datasets.ssv2 import read_ssv2

READERS: dict[str, Callable[[str | Path, str], ClipList]] = dict(
    zip(DATASETS, (read_ssv2, read_epic100, read_manifest), strict=True)
)


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


@dataclass(frozen=True)
class DataSource:
    """Which clips a command reads: a dataset layout, its root (a manifest: the CSV), a split, and optionally only
    the first `limit` clips and a manifest's class list."""

    dataset: str
    data_root: Path
    split: str
    limit: int | None = None
    classes: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_root", Path(self.data_root))
        if self.classes is not None:  # absolute: a cache's record and an array task elsewhere must find it
            object.__setattr__(self, "classes", Path(self.classes).resolve())

    def read(self) -> ClipList:
        return read_dataset(self.dataset, self.data_root, self.split, self.limit, self.classes)

    def record(self) -> dict[str, Any]:
        """As a cache's `source` attribute records it."""
        source: dict[str, Any] = {
            "dataset": self.dataset, "data_root": str(self.data_root), "split": self.split, "limit": self.limit
        }  # fmt: skip
        if self.classes is not None:
            source["classes"] = str(self.classes)
        return source


__all__ = ["Clip", "ClipList", "DataSource", "READERS", "read_dataset"]
