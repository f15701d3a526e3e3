"""A plain CSV manifest for any other data: one clip per line, `path[,label]`, optional `path,label` header.

Relative paths are resolved against the manifest's folder; `--split` names the manifest file
(`{split}.csv` in the data root) or `--data-root` is the CSV itself. Labels are class ids or class names from
the class list (`--classes FILE`: one name per line, line order = id), which every split shares: the number of
classes never depends on which labels a split happens to contain. An empty label (or -1) means unlabelled.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.datasets.base import Clip, ClipList, inside


def read_classes(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--classes {path} does not exist (expected a text file, one class name per line)")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise UserError(f"--classes {path} lists no class names")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"--classes {path}: class name(s) listed twice: {', '.join(duplicates[:5])}")
    return names


def _label(text: str, names: list[str] | None, where: str) -> int:
    text = text.strip()
    if not text:
        return -1
    try:
        label = int(text)
    except ValueError:
        if names is None or text not in names:
            known = "a class name from --classes" if names else "an integer class id (or pass --classes FILE)"
            raise UserError(f"{where}: label {text!r} is not {known}") from None
        return names.index(text)
    if label == -1:
        return -1
    if label < 0 or (names is not None and label >= len(names)):
        valid = f"0..{len(names) - 1}" if names else ">= 0"
        raise UserError(f"{where}: label {label} is out of range (expected -1 for unlabelled, or {valid})")
    return label


def read_manifest(root: str | Path, split: str, classes: str | Path | None = None) -> ClipList:
    root = Path(root)
    path = root if root.is_file() else root / f"{split}.csv"
    if not path.is_file():
        raise UserError(f"manifest: {path} does not exist (expected a CSV of path[,label])")
    names = read_classes(classes) if classes is not None else None
    clips = []
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row or not row[0].strip() or row[0].startswith("#"):
                continue
            if line == 1 and row[0].strip().lower() == "path":
                continue
            if len(row) > 2:
                raise UserError(f"{path}: line {line}: expected path[,label], got {len(row)} fields")
            # Absolute paths are the manifest's explicit choice; relative ones stay inside its folder.
            source = Path(row[0].strip())
            if not source.is_absolute():
                source = inside(path.parent, row[0].strip(), f"{path}: line {line}")
            label = _label(row[1], names, f"{path}: line {line}") if len(row) == 2 else -1
            clips.append(Clip(clip_id=row[0].strip(), source=str(source), labels={"label": label}))
    if not clips:
        raise UserError(f"manifest: {path} lists no clips")
    if names is None and any(c.labels["label"] >= 0 for c in clips):
        raise UserError(
            f"manifest {path} has labels but no class list: pass --classes FILE (one class name per line, in id "
            "order) so that every split agrees on the number of classes"
        )
    return ClipList("manifest", split, clips, ("label",), {"label": names or []})
