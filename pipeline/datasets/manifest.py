"""A plain CSV manifest for any other data: one clip per line, `path[,label]`, optional header.

Relative paths are resolved against the manifest's folder; `--split` names the manifest file
(`{split}.csv` in the data root) or `--data-root` is the CSV itself.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.datasets.base import Clip, ClipList
from pipeline.errors import UserError


def read_manifest(root: str | Path, split: str) -> ClipList:
    root = Path(root)
    path = root if root.is_file() else root / f"{split}.csv"
    if not path.is_file():
        raise UserError(f"manifest: {path} does not exist (expected a CSV of path[,label])")
    clips = []
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row or not row[0].strip() or row[0].startswith("#"):
                continue
            if line == 1 and row[0].strip().lower() == "path":
                continue
            if len(row) > 2:
                raise UserError(f"{path}: line {line}: expected path[,label], got {len(row)} fields")
            source = Path(row[0].strip())
            if not source.is_absolute():
                source = path.parent / source
            label = -1
            if len(row) == 2 and row[1].strip():
                try:
                    label = int(row[1])
                except ValueError:
                    raise UserError(f"{path}: line {line}: label {row[1]!r} is not an integer") from None
            clips.append(Clip(clip_id=row[0].strip(), source=str(source), labels={"label": label}))
    if not clips:
        raise UserError(f"manifest: {path} lists no clips")
    return ClipList("manifest", split, clips, ("label",), {"label": []})
