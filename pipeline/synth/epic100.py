"""A synthetic EPIC-KITCHENS-100: the official CSVs and `P01/rgb_frames/P01_01/frame_%010d.jpg` frames.

Verb = direction of motion, noun = object kind: the verb needs the motion stream, the noun the semantic one.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.synth.render import MOTIONS, SHAPES, render_clip

VERBS = ["move-right", "move-left", "lift", "lower"]  # in MOTIONS order
COLUMNS = [
    "narration_id",
    "participant_id",
    "video_id",
    "narration_timestamp",
    "start_timestamp",
    "stop_timestamp",
    "start_frame",
    "stop_frame",
    "narration",
    "verb",
    "verb_class",
    "noun",
    "noun_class",
    "all_nouns",
    "all_noun_classes",
]
# The test split's file (EPIC_100_test_timestamps.csv) has no labels: these columns only.
TEST_COLUMNS = COLUMNS[:8]
FPS = 50


def _timestamp(frame: int) -> str:
    seconds = (frame - 1) / FPS
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{seconds % 60:05.2f}"


def _write_classes(path: Path, keys: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "key", "instances", "category"])
        for i, key in enumerate(keys):
            writer.writerow([i, key, str([key]), "synthetic"])


def make_epic100(
    out: str | Path,
    train: int = 96,
    validation: int = 48,
    test: int = 8,
    seed: int = 0,
    segment_frames: int = 24,
    height: int = 128,
    width: int = 228,
) -> Path:
    """Segments of one video per split and participant, separated by still frames; the test split unlabelled, as
    the challenge's (EPIC_100_test_timestamps.csv). Returns `out`."""
    out = Path(out)
    annotations = out / "annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    _write_classes(annotations / "EPIC_100_verb_classes.csv", VERBS)
    _write_classes(annotations / "EPIC_100_noun_classes.csv", list(SHAPES))
    rng = np.random.default_rng(seed)
    combos = [(v, n) for v in range(len(VERBS)) for n in range(len(SHAPES))]
    for split, count, participant, video in (
        ("train", train, "P01", "P01_01"),
        ("validation", validation, "P02", "P02_01"),
        ("test", test, "P03", "P03_01"),
    ):
        folder = out / participant / "rgb_frames" / video
        folder.mkdir(parents=True, exist_ok=True)
        frame_no, rows = 1, []
        for n in range(count):
            verb, noun = combos[n % len(combos)]
            length = int(rng.integers(segment_frames - 6, segment_frames + 7))
            clip = render_clip(rng, list(SHAPES)[noun], list(MOTIONS)[verb], length + 4, height, width)
            start = frame_no + 2  # two frames of lead-in before the annotated segment
            for image in clip:
                Image.fromarray(image).save(folder / f"frame_{frame_no:010d}.jpg", quality=90)
                frame_no += 1
            stop = start + length - 1
            noun_key = list(SHAPES)[noun]
            rows.append(
                [
                    f"{video}_{n}",
                    participant,
                    video,
                    _timestamp(start),
                    _timestamp(start),
                    _timestamp(stop + 1),
                    start,
                    stop,
                    f"{VERBS[verb]} {noun_key}",
                    VERBS[verb],
                    verb,
                    noun_key,
                    noun,
                    str([noun_key]),
                    str([noun]),
                ]
            )
        labelled = split != "test"
        name = f"EPIC_100_{split}.csv" if labelled else "EPIC_100_test_timestamps.csv"
        with (annotations / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS if labelled else TEST_COLUMNS)
            writer.writerows(rows if labelled else [[row[COLUMNS.index(c)] for c in TEST_COLUMNS] for row in rows])
    return out
