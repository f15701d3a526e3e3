"""Reading a cache the way every consumer must: failure lists, which rows are usable and why the others are
not, and feature rows checked to be finite. A number computed on fewer clips than the cache holds says so."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipeline.cache.layout import is_count
from pipeline.cache.shards import map_rows
from pipeline.core.errors import UserError

FAILURE_KEYS = ("clip_id", "row", "stage", "error")


def read_failures(cache: str | Path, clip_ids: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Every failure record; one line (exit status 2) for a record that is not one. With the cache's `clip_ids`,
    each record's row must be in range and hold its clip id (a forged row must never drop a real clip)."""
    records = []
    for file in sorted((Path(cache) / "failures").glob("shard-*.jsonl")):
        for number, line in enumerate(file.read_text(errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"failure record {file}:{number}"
            try:
                record = json.loads(line)
            except ValueError:
                raise UserError(f"{where} is not JSON: {line[:80]!r}") from None
            if not isinstance(record, dict) or any(key not in record for key in FAILURE_KEYS):
                raise UserError(f"{where}: expected an object with {', '.join(FAILURE_KEYS)}, got {line[:80]!r}")
            row = record["row"]
            if clip_ids is not None:
                if not is_count(row) or row >= len(clip_ids):
                    raise UserError(f"{where}: row {row!r} is not a row of the cache (0..{len(clip_ids) - 1})")
                if str(clip_ids[row]) != str(record["clip_id"]):
                    raise UserError(f"{where}: row {row} holds clip {clip_ids[row]}, not {record['clip_id']}")
            records.append(record)
    return records


@dataclass(frozen=True)
class RowCounts:
    """How many of a cache's clips a consumer uses, and why the others are left out."""

    clips: int  # rows of the cache
    not_done: int  # not extracted yet (a job that has not run or did not finish)
    failed: int  # listed in failures/ (missing, corrupt, undecodable videos)
    unlabelled: int  # done and not failed, but label -1 (left out where labels are needed)
    usable: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def describe(self) -> str:
        parts = [f"{self.usable} of {self.clips} clips used"]
        parts += [
            f"{n} {what}"
            for n, what in ((self.not_done, "not extracted"), (self.failed, "failed"), (self.unlabelled, "unlabelled"))
            if n
        ]
        return ", ".join(parts)


def usable_rows(
    path: Path, group: zarr.Group, labels: dict[str, np.ndarray], require_labels: bool, allow_partial: bool
) -> tuple[np.ndarray, RowCounts]:
    """Rows that are done, not failed and (if required) labelled in every field. A cache with clips not done
    is refused unless `allow_partial`: a metric on part of a split must never pass for one on all of it."""
    done = group["done"][:]
    failed = np.zeros(len(done), dtype=bool)
    failed[[r["row"] for r in read_failures(path, group["clip_id"][:])]] = True
    failed &= done
    labelled = np.ones(len(done), dtype=bool)
    for values in labels.values():
        labelled &= values >= 0
    usable = done & ~failed & (labelled if require_labels else True)
    counts = RowCounts(
        clips=len(done),
        not_done=int((~done).sum()),
        failed=int(failed.sum()),
        unlabelled=int((done & ~failed & ~labelled).sum()) if require_labels else 0,
        usable=int(usable.sum()),
    )
    if counts.not_done and not allow_partial:
        raise UserError(
            f"cache {path}: {counts.not_done} of {counts.clips} clips are not extracted yet; finish the extraction "
            f"(`cli cache verify {path}` lists them) or pass --allow-partial to use the {counts.usable} that are"
        )
    if counts.usable == 0:
        raise UserError(f"cache {path} has no usable clips ({counts.describe()})")
    return np.flatnonzero(usable), counts


def finite_rows(block: np.ndarray) -> np.ndarray:
    """[rows, ...] -> [rows] bool: every value of the row is finite."""
    flat = block.reshape(len(block), -1)
    if flat.dtype == np.float16:
        # Inf and NaN are the float16 values with every exponent bit set; testing the bits is several times
        # faster than np.isfinite on float16 (which the read path would otherwise spend half its time on).
        return ((flat.view(np.uint16) & 0x7C00) != 0x7C00).all(axis=1)
    return np.isfinite(flat).all(axis=1)


def check_finite(path: Path, clip_ids: Any, rows: np.ndarray, features: dict[str, np.ndarray]) -> None:
    """Refuse NaN/Inf feature rows (of clips not listed as failed), naming them: they would poison training."""
    if len(rows) == 0:
        return
    finite = np.ones(len(rows), dtype=bool)
    for block in features.values():
        finite &= map_rows(finite_rows, block)
    if not finite.all():
        bad = rows[~finite]
        names = ", ".join(f"{clip_ids[int(r)]} (row {int(r)})" for r in bad[:5])
        raise UserError(
            f"cache {path}: {len(bad)} clip(s) hold NaN or Inf features: {names}{' ...' if len(bad) > 5 else ''}; "
            f"`cli cache verify {path}` lists them all"
        )
