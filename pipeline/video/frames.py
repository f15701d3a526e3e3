"""Resize-and-crop to the fixed square every backbone batch needs, for decoded frames and JPEG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# How decoded video frames reach the backbones' square: the centre square, then a proper downscaling filter
# (swscale's "area", without the default bicubic's aliasing). Recorded in every cache (FRAME_RESIZE), so caches
# made with another conversion are never mixed with these.
VIDEO_INTERPOLATION = "area"
FRAME_RESIZE = "video: centre square, RGB, swscale area to the input size; jpeg: PIL draft + bilinear, centre crop"


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at `short_side`, aspect kept; portrait and landscape alike."""
    if width <= height:
        return short_side, max(short_side, round(height * short_side / width))
    return max(short_side, round(width * short_side / height)), short_side


# The squares of a frame's spatial views, along its long side (left/centre/right, or top/centre/bottom for portrait
# video), as the field's 3-crop test: the centre first, so one view is the centre square as always.
CROP_PLACES = ("centre", "start", "end")


def crop_offset(length: int, side: int, place: str) -> int:
    """Where a square of `side` starts along a frame side of `length` for a crop `place`."""
    return {"centre": (length - side) // 2, "start": 0, "end": length - side}[place]


def square_crops(image: np.ndarray, size: int, crops: int) -> np.ndarray:
    """image: [H, W, 3] with min(H, W) >= size -> its first `crops` squares of CROP_PLACES: [crops, size, size, 3]."""
    height, width = image.shape[:2]
    out = []
    for place in CROP_PLACES[:crops]:
        top, left = crop_offset(height, size, place), crop_offset(width, size, place)
        out.append(image[top : top + size, left : left + size])
    return np.stack(out)


def load_jpeg(path: Path, size: int, crops: int = 1) -> np.ndarray:
    """A JPEG frame file -> [crops, size, size, 3] uint8 (JPEG draft mode decodes large frames at reduced scale)."""
    with Image.open(path) as image:
        image.draft("RGB", scaled_size(image.width, image.height, size))
        image = image.convert("RGB")
        image = image.resize(scaled_size(image.width, image.height, size), Image.BILINEAR)
        return square_crops(np.asarray(image), size, crops)
