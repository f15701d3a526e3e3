"""Which frames of a clip feed each backbone."""

from __future__ import annotations

import numpy as np


def temporal_offsets(views: int) -> list[float]:
    """Where in each segment a clip's `views` temporal views sample, evenly spread and first at its centre (one
    view: the uniform grid of segment centres as always): [0.5, 0.0] for 2, [0.5, 0.833, 0.167] for 3."""
    return [(0.5 + t / views) % 1.0 for t in range(views)]


def uniform_indices(num_available: int, num_wanted: int, offset: float = 0.5) -> np.ndarray:
    """The frame at `offset` (0.5: the centre) of each of `num_wanted` equal segments over `num_available`
    frames: [num_wanted] int64.

    Clips shorter than `num_wanted` repeat frames rather than pad, so every clip yields the same shape.
    """
    if num_available <= 0:
        raise ValueError(f"a clip with {num_available} frames cannot be sampled")
    if num_wanted <= 0:
        raise ValueError(f"cannot sample {num_wanted} frames")
    positions = (np.arange(num_wanted) + offset) * num_available / num_wanted
    return np.minimum(positions.astype(np.int64), num_available - 1)


def semantic_positions(num_available: int, num_frames: int, reduce: str, offset: float = 0.5) -> np.ndarray:
    """Frames for the image backbone: all `num_frames` for "mean" and "frames", the one at `offset` of the clip
    for "center" (0.5: the middle one)."""
    if reduce == "center":
        return uniform_indices(num_available, 1, offset)
    if reduce in ("mean", "frames"):
        return uniform_indices(num_available, num_frames, offset)
    raise ValueError(f"semantic_reduce must be 'mean', 'center' or 'frames', got {reduce!r}")
