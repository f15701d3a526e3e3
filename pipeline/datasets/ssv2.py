"""Something-Something-V2 in its released layouts.

Annotations: `labels.json` (or `something-something-v2-labels.json`) mapping template -> class id, and
`train.json` / `validation.json` / `test.json` (or the `something-something-v2-*.json` names), found in the
data root, `annotations/` or `labels/`. Videos: `{id}.webm` in the root, `videos/` or
`20bn-something-something-v2/`. A clip's class is found by its template with `[` and `]` removed; the test
split has no labels (-1).
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.datasets.base import Clip, ClipList, checked_root, plain_name

ANNOTATION_DIRS = ("", "annotations", "labels")
VIDEO_DIRS = ("", "videos", "20bn-something-something-v2")
SPLITS = ("train", "validation", "test")


def _find_file(root: Path, names: tuple[str, ...]) -> Path:
    for sub in ANNOTATION_DIRS:
        for name in names:
            candidate = root / sub / name
            if candidate.is_file():
                return candidate
    looked = ", ".join(str(root / sub / names[0]) for sub in ANNOTATION_DIRS)
    raise UserError(f"SSv2: no {names[0]} found under {root} (looked in {looked})")


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def read_label_names(root: Path) -> list[str]:
    path = _find_file(root, ("labels.json", "something-something-v2-labels.json"))
    mapping = _read_json(path)
    if not isinstance(mapping, dict):
        raise UserError(f"{path}: expected a JSON object mapping template to class id")
    names = [""] * len(mapping)
    for template, idx in mapping.items():
        try:
            names[int(idx)] = template
        except (ValueError, IndexError):
            raise UserError(f"{path}: class id {idx!r} of '{template}' is not in 0..{len(mapping) - 1}") from None
    return names


def find_video(root: Path, clip_id: str) -> Path:
    for sub in VIDEO_DIRS:
        candidate = root / sub / f"{clip_id}.webm"
        if candidate.exists():
            return candidate
    # A missing video is a per-clip failure recorded at decode time, not a reason to refuse the whole split.
    return root / "videos" / f"{clip_id}.webm" if (root / "videos").is_dir() else root / f"{clip_id}.webm"


def read_ssv2(root: str | Path, split: str) -> ClipList:
    root = checked_root("SSv2", root, split, SPLITS)
    names = read_label_names(root)
    class_of = {name: i for i, name in enumerate(names)}
    path = _find_file(root, (f"{split}.json", f"something-something-v2-{split}.json"))
    entries = _read_json(path)
    if not isinstance(entries, list):
        raise UserError(f"{path}: expected a JSON list of {{id, template}} entries")
    clips = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry:
            raise UserError(f"{path}: entry {n} has no 'id' field")
        clip_id = plain_name(entry["id"], f"{path}: entry {n}: id")
        label = -1
        if "template" in entry:
            template = entry["template"]
            if not isinstance(template, str):
                raise UserError(f"{path}: entry {n} (id {clip_id}): template must be a string, got {template!r}")
            template = template.replace("[", "").replace("]", "")
            if template not in class_of:
                raise UserError(f"{path}: entry {n} (id {clip_id}) has template '{template}' not in labels.json")
            label = class_of[template]
        clips.append(Clip(clip_id=clip_id, source=str(find_video(root, clip_id)), labels={"label": label}))
    return ClipList("ssv2", split, clips, ("label",), {"label": names})
