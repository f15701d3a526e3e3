"""A synthetic Something-Something-V2: labels.json, train/validation/test.json, videos/{id}.webm (VP9)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from pipeline.synth.render import MOTIONS, SHAPES, render_clip

FPS = 12


# Direction only: one kind of object, so classes differ only in where it moves (nothing in any single frame, or in
# the mean of the frames' maps, tells them apart).
DIRECTION_ONLY = ("square",)


def templates(shapes: tuple[str, ...] = tuple(SHAPES)) -> list[str]:
    return [f"Moving [{shape}] {motion}" for shape in shapes for motion in MOTIONS]


def write_webm(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """frames: [T, H, W, 3] uint8 -> a VP9 WebM file (what SSv2 ships)."""
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "30", "b:v": "0", "deadline": "realtime", "cpu-used": "8"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def make_ssv2(
    out: str | Path,
    train: int = 96,
    validation: int = 48,
    test: int = 8,
    seed: int = 0,
    frames: int = 24,
    height: int = 120,
    width: int = 160,
    shapes: tuple[str, ...] = tuple(SHAPES),
    on_clip: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the dataset under `out`; classes (every object of `shapes` in every direction) cycle so every split
    is balanced; `on_clip(written, total)` after each video. Returns `out`."""
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    names = templates(shapes)
    (out / "labels.json").write_text(
        json.dumps({t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(names)}, indent=1)
    )
    rng = np.random.default_rng(seed)
    next_id = 100000
    for split, count in (("train", train), ("validation", validation), ("test", test)):
        entries = []
        for n in range(count):
            label = n % len(names)
            shape, motion = shapes[label // len(MOTIONS)], list(MOTIONS)[label % len(MOTIONS)]
            clip_id = str(next_id)
            next_id += 1
            length = int(rng.integers(frames - 6, frames + 7))
            write_webm(out / "videos" / f"{clip_id}.webm", render_clip(rng, shape, motion, length, height, width))
            if on_clip is not None:
                on_clip(next_id - 100000, train + validation + test)
            if split == "test":
                entries.append({"id": clip_id})
            else:
                entries.append(
                    {
                        "id": clip_id,
                        "label": names[label].replace("[", "").replace("]", ""),
                        "template": names[label],
                        "placeholders": [shape],
                    }
                )
        (out / f"{split}.json").write_text(json.dumps(entries, indent=1))
    return out
