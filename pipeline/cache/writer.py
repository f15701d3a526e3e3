"""Shard-aligned writes into the cache: features first, then the shard's failure list, then `done` last.

A job only ever writes whole shards it owns, so no two writers touch one Zarr shard file, and a job killed
mid-shard leaves `done` false there: the restart redoes that shard whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipeline.cache.layout import FEATURES, IDENTITY_KEYS, done_shards, shard_rows
from pipeline.core import atomic
from pipeline.core.errors import UserError


def failures_file(cache: Path, shard: int) -> Path:
    return Path(cache) / "failures" / f"shard-{shard:06d}.jsonl"


def quarantine_folder(cache: Path) -> Path:
    """Where `cli cache repair` keeps the files of shards it marked damaged, until an extract redoes them."""
    return Path(cache) / "quarantine"


def quarantined(cache: Path, shard: int, name: str) -> Path:
    """The kept file `name` (semantic, motion, failures) of a shard repair marked damaged."""
    return quarantine_folder(cache) / f"shard-{shard:06d}.{name}"


class ShardWriter:
    def __init__(self, path: str | Path, group: zarr.Group):
        self.path = Path(path)
        self.group = group
        self.shard_size = int(group.attrs["shard_size"])
        self.num_clips = int(group.attrs["num_clips"])
        self.identity = {key: group.attrs.get(key) for key in IDENTITY_KEYS}

    def rows(self, shard: int) -> tuple[int, int]:
        return shard_rows(shard, self.shard_size, self.num_clips)

    def done_shards(self) -> set[int]:
        return set(done_shards(self.group["done"][:], self.shard_size))

    def failed_shards(self) -> set[int]:
        """Shards with at least one clip in their failure list."""
        return {int(file.stem.split("-")[1]) for file in (self.path / "failures").glob("shard-*.jsonl")}

    def reopen(self, shards: set[int]) -> None:
        """Mark `shards` not done before they are rewritten, so a job killed meanwhile leaves them to redo."""
        for shard in sorted(shards):
            lo, hi = self.rows(shard)
            self.group["done"][lo:hi] = False

    def write(self, shard: int, features: dict[str, np.ndarray], failures: list[dict[str, Any]]) -> None:
        """features: name -> [rows of the shard, tokens, dim] (NaN rows for failed clips)."""
        lo, hi = self.rows(shard)
        for name in FEATURES:
            if features[name].shape[0] != hi - lo:
                raise ValueError(f"shard {shard}: {name} has {features[name].shape[0]} rows, expected {hi - lo}")
        # A cache nobody had finished a shard of may be taken over by another run meanwhile: never mix the two.
        now = dict(zarr.open_group(str(self.path), mode="r", zarr_format=3).attrs)
        if {key: now.get(key) for key in IDENTITY_KEYS} != self.identity:
            raise UserError(f"cache {self.path} was replaced by a different run while this job ran; nothing written")
        for name in FEATURES:
            self.group[name][lo:hi] = features[name].astype(np.float16, copy=False)
        write_failures(self.path, shard, failures)
        self.group["done"][lo:hi] = True
        for kept in quarantine_folder(self.path).glob(f"shard-{shard:06d}.*"):
            kept.unlink()  # the shard is whole again: what repair kept of its damaged files has served


def write_failures(cache: Path, shard: int, records: list[dict[str, Any]]) -> None:
    """Replace a shard's failure list atomically; an empty list removes it."""
    target = failures_file(cache, shard)
    if records:
        atomic.write_text(target, "".join(json.dumps(record) + "\n" for record in records))
    elif target.exists():
        target.unlink()  # a redone shard that now succeeds must not keep its old failures


def write_failures_by_row(cache: Path, records: list[dict[str, Any]], shard_size: int) -> None:
    """File each record under the shard holding its row (for caches assembled from other caches)."""
    by_shard: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_shard.setdefault(int(record["row"]) // shard_size, []).append(record)
    for shard, shard_records in by_shard.items():
        write_failures(cache, shard, shard_records)
