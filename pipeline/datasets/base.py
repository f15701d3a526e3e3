"""What every dataset reader returns: an ordered list of clips and the names of its label fields."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import UserError


@dataclass(frozen=True)
class Clip:
    """One row of the cache.

    `source` is a video file, or a directory of JPEG frames when `frame_template` is set. For a video,
    `start`/`stop` are seconds (None = whole video); for frames they are 1-based inclusive frame numbers.
    """

    clip_id: str
    source: str
    labels: dict[str, int] = field(default_factory=dict)
    start: float | None = None
    stop: float | None = None
    frame_template: str | None = None
    meta: dict[str, str] = field(default_factory=dict)  # per-clip strings kept in the cache (EPIC: participant, video)

    @property
    def is_frames(self) -> bool:
        return self.frame_template is not None


@dataclass
class ClipList:
    """A dataset split in manifest order, with its label fields and their class names."""

    dataset: str
    split: str
    clips: list[Clip]
    label_fields: tuple[str, ...]  # ("label",) or ("verb", "noun")
    label_names: dict[str, list[str]]  # field -> class names, index = class id (may be empty)
    meta_fields: tuple[str, ...] = ()  # keys of Clip.meta, each stored as a string array of the cache
    attrs: dict[str, Any] = field(default_factory=dict)  # dataset facts for the cache attrs (EPIC's official lists)

    def __len__(self) -> int:
        return len(self.clips)


def checked_root(dataset: str, root: str | Path, split: str, splits: Iterable[str]) -> Path:
    """The data root as a Path, after checking the split name and that the root is a folder."""
    if split not in splits:
        raise UserError(f"{dataset}: unknown split '{split}' (expected one of {', '.join(splits)})")
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{dataset}: data root {root} is not a directory")
    return root
