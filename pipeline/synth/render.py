"""Clips of one object moving over a textured background: the object's kind needs appearance to tell apart,
its direction needs motion, so a label made of both needs both feature streams."""

from __future__ import annotations

import numpy as np

SHAPES = {"square": (220, 60, 50), "circle": (60, 200, 80), "triangle": (70, 110, 230)}
MOTIONS = {  # name -> unit direction (dx, dy) in image coordinates
    "left to right": (1.0, 0.0),
    "right to left": (-1.0, 0.0),
    "upwards": (0.0, -1.0),
    "downwards": (0.0, 1.0),
}


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    base = rng.uniform(60, 190, size=3)
    yy, xx = np.mgrid[0:height, 0:width]
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height)[..., None] * rng.uniform(-40, 40, size=3)
    noise = rng.normal(0, 8, size=(height, width, 3))
    return np.clip(base + ramp + noise, 0, 255)


def _mask(shape: str, height: int, width: int, cx: float, cy: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    dx, dy = xx - cx, yy - cy
    if shape == "square":
        return (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
    if shape == "circle":
        return dx**2 + dy**2 <= radius**2
    return (dy <= radius) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) / 2)  # triangle, apex up


def render_clip(rng: np.random.Generator, shape: str, motion: str, frames: int, height: int, width: int) -> np.ndarray:
    """-> [frames, height, width, 3] uint8: `shape` crossing the frame in direction `motion`."""
    background = _background(rng, height, width)
    radius = min(height, width) * rng.uniform(0.12, 0.18)
    colour = np.clip(np.array(SHAPES[shape]) + rng.normal(0, 15, size=3), 0, 255)
    dx, dy = MOTIONS[motion]
    travel = rng.uniform(0.45, 0.6)
    # Start off-centre against the direction of motion and end beyond the centre along it.
    cx0 = width * (0.5 - dx * travel / 2 + rng.uniform(-0.08, 0.08))
    cy0 = height * (0.5 - dy * travel / 2 + rng.uniform(-0.08, 0.08))
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        progress = t / max(frames - 1, 1)
        cx, cy = cx0 + dx * travel * width * progress, cy0 + dy * travel * height * progress
        frame = background.copy()
        frame[_mask(shape, height, width, cx, cy, radius)] = colour
        out[t] = frame
    return out
