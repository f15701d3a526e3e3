"""EPIC-KITCHENS-100 action segments in the official layout.

Annotations (`EPIC_100_{train,validation}.csv`, `EPIC_100_test_timestamps.csv`, verb and noun class csvs) are
found in the data root, `annotations/` or `epic-kitchens-100-annotations/`. Pixels come from the official
re-encoded frames `P01/rgb_frames/P01_01/frame_%010d.jpg` when present: `start_frame`/`stop_frame` index these
(1-based, 50 or 60 fps). Otherwise from `P01/videos/P01_01.MP4`, whose native rate (59.94, 50, 29.97, ... fps)
differs from the frames' rate, so the segment is cut by `start_timestamp`/`stop_timestamp` in seconds, which
hold for both.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.datasets.base import Clip, ClipList, checked_root, plain_name

ANNOTATION_DIRS = ("", "annotations", "epic-kitchens-100-annotations")
SPLIT_FILES = {
    "train": "EPIC_100_train.csv",
    "validation": "EPIC_100_validation.csv",
    "test": "EPIC_100_test_timestamps.csv",
}
FRAME_TEMPLATE = "frame_{:010d}.jpg"
REQUIRED = (
    "narration_id",
    "participant_id",
    "video_id",
    "start_timestamp",
    "stop_timestamp",
    "start_frame",
    "stop_frame",
)


def _find(root: Path, name: str) -> Path:
    for sub in ANNOTATION_DIRS:
        if (root / sub / name).is_file():
            return root / sub / name
    raise UserError(
        f"EPIC-100: {name} not found under {root} (looked in {', '.join(d or '.' for d in ANNOTATION_DIRS)})"
    )


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)} (header: {reader.fieldnames})")
        return list(reader)


def read_class_names(root: Path, kind: str) -> list[str]:
    path = _find(root, f"EPIC_100_{kind}_classes.csv")
    rows = _read_csv(path, ("id", "key"))
    names = [""] * len(rows)
    for row in rows:
        try:
            names[int(row["id"])] = row["key"]
        except (ValueError, IndexError):
            raise UserError(f"{path}: id {row['id']!r} is not in 0..{len(rows) - 1}") from None
    return names


def parse_timestamp(text: str) -> float:
    """'HH:MM:SS.ff' -> seconds."""
    try:
        hours, minutes, seconds = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        raise ValueError(f"timestamp {text!r} is not HH:MM:SS.ff") from None


def read_epic100(root: str | Path, split: str) -> ClipList:
    root = checked_root("EPIC-100", root, split, SPLIT_FILES)
    labelled = split != "test"
    path = _find(root, SPLIT_FILES[split])
    rows = _read_csv(path, REQUIRED + (("verb_class", "noun_class") if labelled else ()))
    names = {"verb": read_class_names(root, "verb"), "noun": read_class_names(root, "noun")}

    @cache
    def frames_dir(participant: str, video: str) -> Path | None:
        candidate = root / participant / "rgb_frames" / video
        return candidate if candidate.is_dir() else None

    clips = []
    for line, row in enumerate(rows, start=2):
        try:
            labels = (
                {"verb": int(row["verb_class"]), "noun": int(row["noun_class"])}
                if labelled
                else {"verb": -1, "noun": -1}
            )
            for key in ("narration_id", "participant_id", "video_id"):
                plain_name(row[key], f"{path}: line {line}: {key}")
            frames = frames_dir(row["participant_id"], row["video_id"])
            if frames is not None:
                clip = Clip(
                    row["narration_id"],
                    str(frames),
                    labels,
                    int(row["start_frame"]),
                    int(row["stop_frame"]),
                    FRAME_TEMPLATE,
                    meta={"participant_id": row["participant_id"], "video_id": row["video_id"]},
                )
            else:
                video = root / row["participant_id"] / "videos" / f"{row['video_id']}.MP4"
                clip = Clip(
                    row["narration_id"],
                    str(video),
                    labels,
                    parse_timestamp(row["start_timestamp"]),
                    parse_timestamp(row["stop_timestamp"]),
                    meta={"participant_id": row["participant_id"], "video_id": row["video_id"]},
                )
        except ValueError as exc:
            raise UserError(f"{path}: line {line}: {exc}") from None
        for field, value in labels.items():
            if labelled and not 0 <= value < len(names[field]):
                raise UserError(
                    f"{path}: line {line}: {field}_class {value} is not a class id of EPIC_100_{field}_classes.csv "
                    f"(0..{len(names[field]) - 1})"
                )
        clips.append(clip)
    return ClipList(
        "epic100", split, clips, ("verb", "noun"), names, ("participant_id", "video_id"), official_lists(root, split)
    )


def official_lists(root: Path, split: str) -> dict[str, dict[str, list]]:
    """The official tail classes and unseen participants, as the challenge scorer reads them, when the
    annotation files are present: {"official_lists": {"tail_verbs", "tail_nouns", "unseen_participants"}}."""
    lists: dict[str, list] = {}
    sources = {
        "tail_verbs": ("EPIC_100_tail_verbs.csv", "verb", int),
        "tail_nouns": ("EPIC_100_tail_nouns.csv", "noun", int),
        "unseen_participants": (f"EPIC_100_unseen_participant_ids_{split}.csv", "participant_id", str),
    }
    for key, (name, column, kind) in sources.items():
        try:
            path = _find(root, name)
        except UserError:
            continue  # not shipped with every copy of the annotations: the breakdown then says "unavailable"
        try:
            lists[key] = sorted(kind(row[column]) for row in _read_csv(path, (column,)))
        except ValueError:
            raise UserError(f"{path}: a {column} value is not a {kind.__name__}") from None
    return {"official_lists": lists} if lists else {}
