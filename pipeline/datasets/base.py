"""What every dataset reader returns: an ordered list of clips and the names of its label fields."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError


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


def plain_name(value: object, where: str) -> str:
    """A name from a dataset file that becomes part of a path (a clip id, a participant or video id): refused
    unless it is one plain path part, so no entry can reach outside the data root."""
    text = value if isinstance(value, str) else str(value) if isinstance(value, int) else None
    if text is None:
        raise UserError(f"{where}: expected a string or number, got {type(value).__name__} {value!r}")
    if not text or text in (".", "..") or any(c in text for c in "/\\\0") or Path(text).is_absolute():
        raise UserError(f"{where}: {text!r} is not a plain name (no path separators, '.' or '..')")
    return text


def inside(root: Path, relative: str, where: str) -> Path:
    """`root / relative`, refused if `relative` is absolute or climbs out of `root` with '..'."""
    path = Path(relative)
    if path.is_absolute() or not (root / path).resolve().is_relative_to(root.resolve()):
        raise UserError(f"{where}: {relative!r} is outside {root}")
    return root / path


def refuse_duplicates(clips: ClipList, where: str) -> None:
    """Each clip once: a clip listed twice would be trained (and counted) twice."""
    seen: dict[str, int] = {}
    for n, clip in enumerate(clips.clips):
        if clip.clip_id in seen:
            raise UserError(f"{where}: clip id {clip.clip_id!r} is listed twice (entries {seen[clip.clip_id]} and {n})")
        seen[clip.clip_id] = n
