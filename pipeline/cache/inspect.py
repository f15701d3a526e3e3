"""`cli cache info` and `cli cache verify`: what a cache holds, and everything wrong with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipeline.cache.layout import cache_views, done_shards, num_shards, open_cache, shard_rows, subset_limit
from pipeline.cache.reader import finite_rows, read_failures
from pipeline.cache.shards import CacheShards, ShardUnreadable
from pipeline.cache.stats import stats_problem
from pipeline.cache.writer import quarantine_folder


def cache_info(path: str | Path) -> dict[str, Any]:
    group = open_cache(path)
    attrs = dict(group.attrs)
    done = group["done"][:]
    shard_size = int(attrs["shard_size"])
    limit = subset_limit(attrs)
    return {
        "path": str(path),
        "dataset": attrs.get("dataset"),
        "split": attrs.get("split"),
        "subset": f"the first {limit} clips of the split (--limit)" if limit is not None else "the whole split",
        "num_clips": attrs.get("num_clips"),
        "done": int(done.sum()),
        "failed": len(read_failures(path)),
        "shard_size": shard_size,
        "shards_done": f"{len(done_shards(done, shard_size))}/{num_shards(len(done), shard_size)}",
        "views": cache_views(attrs),  # each clip's views, one after another along the features' token axis
        # files of damaged shards `cli cache repair` kept (pipeline/cache/repair.py), until an extract redoes them
        "quarantined": sorted(p.name for p in quarantine_folder(path).glob("shard-*")),
        "arrays": {
            name: {"shape": list(group[name].shape), "dtype": str(group[name].dtype)}
            for name in sorted(group.array_keys())
        },
        "backbones": attrs.get("backbones"),
        "created_with": attrs.get("created_with"),
    }


def read_done(group: zarr.Group, shard_size: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """The `done` column read chunk by chunk (one chunk per shard): an unreadable chunk counts as not done and is
    reported as (shard, error)."""
    n = int(group.attrs["num_clips"])
    done = np.zeros(n, dtype=bool)
    damaged = []
    for shard in range(num_shards(n, shard_size)):
        lo, hi = shard_rows(shard, shard_size, n)
        try:
            done[lo:hi] = group["done"][lo:hi]
        except Exception as exc:  # noqa: BLE001 - any decoding failure of stored bytes means the same: damaged
            damaged.append((shard, f"done/{group['done'].metadata.encode_chunk_key((shard,))}: {exc}"))
    return done, damaged


def read_shard(shards: CacheShards, shard: int) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The features of one shard, or None and what is wrong with the stored file (truncated, bad checksum...)."""
    try:
        return shards.read_shard(shard), None
    except ShardUnreadable as exc:
        return None, str(exc)


def verify_cache(path: str | Path, deep: bool = False) -> list[dict[str, Any]]:
    """Every problem, one record per clip (or per shard for damaged files): {clip_id, row, problem, detail}.

    Reads the feature shards that hold finished clips, one at a time, to find NaN/Inf rows and damaged files;
    `deep` reads every stored shard, finished or not, and the clip-id and label arrays too."""
    path = Path(path)
    group = open_cache(path)
    shard_size = int(group.attrs["shard_size"])
    problems: list[dict[str, Any]] = []
    try:
        clip_ids = group["clip_id"][:]
        for field in group.attrs.get("label_fields", []) if deep else []:
            group[field][:]
    except Exception as exc:  # noqa: BLE001 - reported, never a traceback
        return [{"clip_id": None, "row": None, "problem": "unreadable", "detail": f"clip ids or labels: {exc}"}]
    done, damaged = read_done(group, shard_size)
    stale = stats_problem(path, group)
    if stale:
        problems.append({"clip_id": None, "row": None, "problem": "stale statistics", "detail": stale})
    for shard, detail in damaged:
        problems.append(_shard_problem(shard, shard_size, detail))
    failed_ids = set()
    for record in read_failures(path, clip_ids):
        failed_ids.add(record["clip_id"])
        problems.append(
            {
                "clip_id": record["clip_id"],
                "row": record.get("row"),
                "problem": "failed",
                "detail": f"{record['stage']}: {record['error']}",
            }
        )
    for row in np.flatnonzero(~done):
        problems.append(
            {"clip_id": str(clip_ids[row]), "row": int(row), "problem": "missing", "detail": "not extracted yet"}
        )
    shards = CacheShards(path, group)
    for shard in range(len(shards)):
        lo, hi = shards.rows(shard)
        if not (done[lo:hi].any() or (deep and shards.stored(shard))):
            continue
        features, error = read_shard(shards, shard)
        if error:
            problems.append(_shard_problem(shard, shard_size, error))
            continue
        finite = np.ones(hi - lo, dtype=bool)
        for block in features.values():
            finite &= finite_rows(block)
        for offset in np.flatnonzero(~finite):
            row = lo + int(offset)
            if done[row] and str(clip_ids[row]) not in failed_ids:
                problems.append(
                    {
                        "clip_id": str(clip_ids[row]),
                        "row": row,
                        "problem": "non-finite",
                        "detail": "NaN or Inf in its features",
                    }
                )
    return problems


def _shard_problem(shard: int, shard_size: int, detail: str) -> dict[str, Any]:
    return {
        "clip_id": f"shard-{shard:06d}",
        "row": shard * shard_size,
        "shard": shard,
        "problem": "unreadable",
        "detail": f"{detail}; `cli cache repair` marks it for the next extract to redo",
    }
