"""What a model needs to know about a cache (CacheSpec, read from its arrays and attrs by CacheData), and the
semantic tokens' time axis as models take it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class CacheSpec:
    """What a model needs to know about a cache, read from its arrays and attrs."""

    path: str
    shapes: dict[str, tuple[int, int]]  # "semantic" / "motion" -> (tokens, dim) of one view
    label_fields: tuple[str, ...]
    label_sizes: dict[str, int]
    label_names: dict[str, list[str]]
    provenance: dict[str, Any] = field(default_factory=dict)
    semantic_frames: int = 1  # > 1: the semantic tokens are that many frames' grids (a `frames` cache)
    views: int = 1  # > 1: every clip's features are that many views, one after another along the token axis

    def summary(self) -> dict[str, Any]:
        """What a model trained on this cache depends on, in plain containers (stored in checkpoints); the frames
        only where time is kept, so frame-averaged checkpoints read as they always did."""
        frames = {"semantic_frames": self.semantic_frames} if self.semantic_frames > 1 else {}
        # a model reads one view at a time: it fits caches of any view count, so views are not recorded here
        return {
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "label_fields": list(self.label_fields),
            "label_sizes": self.label_sizes,
            "label_names": self.label_names,
            **frames,
        }


def with_time_axis(semantic: torch.Tensor, frames: int) -> torch.Tensor:
    """Semantic tokens as a model takes them: [B, F * P, D] of a `frames` cache -> [B, F, P, D]; frame-averaged
    [B, P, D] as they are (frames 1)."""
    return semantic.unflatten(1, (frames, -1)) if frames > 1 else semantic
