"""Which frames of a clip feed each backbone."""

from __future__ import annotations

import numpy as np


def uniform_indices(num_available: int, num_wanted: int) -> np.ndarray:
    """Centres of `num_wanted` equal segments over `num_available` frames: [num_wanted] int64.

    Clips shorter than `num_wanted` repeat frames rather than pad, so every clip yields the same shape.
    """
    if num_available <= 0:
        raise ValueError(f"a clip with {num_available} frames cannot be sampled")
    if num_wanted <= 0:
        raise ValueError(f"cannot sample {num_wanted} frames")
    positions = (np.arange(num_wanted) + 0.5) * num_available / num_wanted
    return np.minimum(positions.astype(np.int64), num_available - 1)


def semantic_positions(num_available: int, num_frames: int, reduce: str) -> np.ndarray:
    """Frames for the image backbone: all `num_frames` for "mean" and "frames", the middle one for "center"."""
    if reduce == "center":
        return np.array([num_available // 2], dtype=np.int64)
    if reduce in ("mean", "frames"):
        return uniform_indices(num_available, num_frames)
    raise ValueError(f"semantic_reduce must be 'mean', 'center' or 'frames', got {reduce!r}")
