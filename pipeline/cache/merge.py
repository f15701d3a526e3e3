"""`cli cache merge`: several caches made with the same backbones (e.g. train and validation, or parts of one
split) into one, rows in the order given, written shard by shard."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from pipeline.cache.layout import FEATURES, build_skeleton, num_shards, open_cache, shard_rows
from pipeline.cache.reader import read_failures
from pipeline.cache.shards import CacheShards
from pipeline.cache.writer import write_failures_by_row
from pipeline.core import atomic
from pipeline.core.errors import UserError

SAME = ("schema_version", "dataset", "backbones", "label_fields", "meta_fields")


def merge_caches(sources: list[Path], out: Path, shard_size: int | None = None) -> Path:
    if len(sources) < 2:
        raise UserError("merge needs at least two caches")
    if Path(out).exists():
        raise UserError(f"{out} already exists: merge into a new cache path")
    groups = [open_cache(path) for path in sources]
    first = dict(groups[0].attrs)
    for path, group in zip(sources[1:], groups[1:]):
        for key in SAME:
            if group.attrs.get(key) != first.get(key):
                raise UserError(f"cannot merge {path} with {sources[0]}: their '{key}' differ")
    clip_ids = np.array([str(c) for g in groups for c in g["clip_id"][:]], dtype=str)
    unique, counts = np.unique(clip_ids, return_counts=True)
    if (counts > 1).any():
        raise UserError(f"clip id '{unique[counts > 1][0]}' is in more than one of the caches")
    sizes = [int(g.attrs["num_clips"]) for g in groups]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    shard_size = shard_size or int(first["shard_size"])
    labels = {f: np.concatenate([g[f][:] for g in groups]) for f in first.get("label_fields", [])}
    meta = {f: np.array([str(v) for g in groups for v in g[f][:]], dtype=str) for f in first.get("meta_fields", [])}
    parts = [
        {"path": str(p), "split": g.attrs["split"], "num_clips": n, "manifest_sha256": g.attrs["manifest_sha256"]}
        for p, g, n in zip(sources, groups, sizes)
    ]
    attrs = {
        **first,
        "split": "+".join(str(p["split"]) for p in parts),
        "num_clips": int(offsets[-1]),
        "shard_size": shard_size,
        "merged_from": parts,
        "manifest_sha256": hashlib.sha256(json.dumps([p["manifest_sha256"] for p in parts]).encode()).hexdigest(),
    }
    attrs.pop("stats", None)  # statistics of the parts are not those of the whole
    attrs.pop("stats_covers", None)
    shapes = {name: tuple(groups[0][name].shape[1:]) for name in FEATURES}
    # Built beside OUT and renamed into place: a killed merge leaves no cache at OUT, and running it again redoes it.
    with atomic.staged_folder(out, "merged cache") as staging:
        target = build_skeleton(staging, clip_ids, labels, shard_size, shapes, attrs, meta)
        done = np.concatenate([g["done"][:] for g in groups])
        readers = [CacheShards(path, group) for path, group in zip(sources, groups)]
        for shard in range(num_shards(len(clip_ids), shard_size)):
            lo, hi = shard_rows(shard, shard_size, len(clip_ids))
            for name in FEATURES:
                target[name][lo:hi] = np.concatenate(
                    [
                        reader.read_range(name, max(lo - start, 0), min(hi - start, n))
                        for reader, start, n in zip(readers, offsets[:-1], sizes)
                        if start < hi and start + n > lo
                    ]
                )
        failures = [
            {**record, "row": int(record["row"]) + int(start)}
            for path, start in zip(sources, offsets[:-1])
            for record in read_failures(path)
        ]
        write_failures_by_row(staging, failures, shard_size)
        target["done"][:] = done
    return Path(out)
