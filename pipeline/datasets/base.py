"""What every dataset reader returns: an ordered list of clips and the names of its label fields."""
from __future__ import annotations

from dataclasses import dataclass, field


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

    def __len__(self) -> int:
        return len(self.clips)
