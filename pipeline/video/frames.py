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


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """image: [H, W, 3] with min(H, W) >= size -> [size, size, 3]."""
    height, width = image.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    return image[top : top + size, left : left + size]


def load_jpeg(path: Path, size: int) -> np.ndarray:
    """A JPEG frame file -> [size, size, 3] uint8 (JPEG draft mode decodes large frames at reduced scale)."""
    with Image.open(path) as image:
        image.draft("RGB", scaled_size(image.width, image.height, size))
        image = image.convert("RGB")
        image = image.resize(scaled_size(image.width, image.height, size), Image.BILINEAR)
        return center_crop(np.asarray(image), size)
