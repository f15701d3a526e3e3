"""`cli cache info` and `cli cache verify`: what a cache holds, and everything wrong with it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cache.layout import FEATURES, done_shards, num_shards, open_cache, shard_rows
from pipeline.cache.writer import read_failures


def cache_info(path: str | Path) -> dict[str, Any]:
    group = open_cache(path)
    attrs = dict(group.attrs)
    done = group["done"][:]
    shard_size = int(attrs["shard_size"])
    return {
        "path": str(path),
        "dataset": attrs.get("dataset"),
        "split": attrs.get("split"),
        "num_clips": attrs.get("num_clips"),
        "done": int(done.sum()),
        "failed": len(read_failures(path)),
        "shard_size": shard_size,
        "shards_done": f"{len(done_shards(done, shard_size))}/{num_shards(len(done), shard_size)}",
        "arrays": {name: {"shape": list(group[name].shape), "dtype": str(group[name].dtype)} for name in sorted(group.array_keys())},
        "backbones": attrs.get("backbones"),
        "created_with": attrs.get("created_with"),
    }


def verify_cache(path: str | Path) -> list[dict[str, Any]]:
    """Every problem, one record per clip: {clip_id, row, problem, detail}. Reads one shard at a time."""
    group = open_cache(path)
    shard_size = int(group.attrs["shard_size"])
    clip_ids = group["clip_id"][:]
    done = group["done"][:]
    problems: list[dict[str, Any]] = []
    failed_ids = set()
    for record in read_failures(path):
        failed_ids.add(record["clip_id"])
        problems.append({"clip_id": record["clip_id"], "row": record.get("row"), "problem": "failed",
                         "detail": f"{record['stage']}: {record['error']}"})
    for row in np.flatnonzero(~done):
        problems.append({"clip_id": str(clip_ids[row]), "row": int(row), "problem": "missing", "detail": "not extracted yet"})
    for shard in range(num_shards(len(done), shard_size)):
        lo, hi = shard_rows(shard, shard_size, len(done))
        if not done[lo:hi].any():
            continue
        finite = np.ones(hi - lo, dtype=bool)
        for name in FEATURES:
            finite &= np.isfinite(group[name][lo:hi]).reshape(hi - lo, -1).all(axis=1)
        for offset in np.flatnonzero(~finite):
            row = lo + int(offset)
            if done[row] and str(clip_ids[row]) not in failed_ids:
                problems.append({"clip_id": str(clip_ids[row]), "row": row, "problem": "non-finite",
                                 "detail": "NaN or Inf in its features"})
    return problems
