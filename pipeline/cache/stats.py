"""`cli cache stats`: per-channel mean/std, token norms and NaN counts of each feature, out of core with dask
(one task per shard, each returning small partial sums), stored in the cache's attrs for normalisation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipeline.cache.layout import FEATURES, open_cache
from pipeline.cache.reader import finite_rows, read_failures
from pipeline.cache.shards import CacheShards
from pipeline.core.errors import UserError


def shard_sums(path: str, name: str, shard: int) -> dict[str, Any]:
    """Partial sums over the finite clips of one shard of one feature: what the reduction needs, nothing more."""
    # compute_stats checked the cache (open_cache) before any task: each task only opens it to read its shard,
    # not to check it again (a check reads stored chunks and labels: thousands of tasks would repeat it)
    block = CacheShards(path, zarr.open_group(path, mode="r", zarr_format=3)).read(name, shard)
    finite = finite_rows(block)
    good = block[finite].astype(np.float64)  # the one float64 copy: squared in place below
    total = good.sum(axis=(0, 1))
    np.square(good, out=good)
    return {
        "tokens": good.shape[0] * good.shape[1],
        "sum": total,
        "sumsq": good.sum(axis=(0, 1)),
        "norms": float(np.sqrt(good.sum(axis=2)).sum()),
        "non_finite": int((~finite).sum()),
    }


def combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    tokens = sum(p["tokens"] for p in parts)
    if tokens == 0:
        raise UserError("the cache holds no finite clips to compute statistics from")
    mean = sum(p["sum"] for p in parts) / tokens
    var = np.maximum(sum(p["sumsq"] for p in parts) / tokens - mean**2, 0.0)
    return {
        "mean": mean.tolist(),
        "std": np.sqrt(var).tolist(),
        "mean_token_norm": sum(p["norms"] for p in parts) / tokens,
        "non_finite_clips": sum(p["non_finite"] for p in parts),
    }


def coverage(path: str | Path, group: Any) -> dict[str, Any]:
    """What statistics describe: the done clips and the failures as they are now (a digest of both)."""
    done = np.asarray(group["done"][:], dtype=bool)
    failures = sorted((r["row"], str(r["clip_id"])) for r in read_failures(path, group["clip_id"][:]))
    digest = hashlib.sha256(np.packbits(done).tobytes() + json.dumps(failures).encode()).hexdigest()
    return {"done_clips": int(done.sum()), "clips": len(done), "failed_clips": len(failures), "state": digest}


def stats_problem(path: str | Path, group: Any) -> str | None:
    """Why the cache's statistics no longer describe it (clips extracted, failed or repaired since), or None."""
    covers = group.attrs.get("stats_covers")
    if "stats" not in group.attrs or covers is None:
        return None  # no statistics, or made before they recorded what they cover: nothing to compare
    now = coverage(path, group)
    if covers.get("state") == now["state"]:
        return None
    return (
        f"{path}: its statistics were computed with {covers.get('done_clips')} of {covers.get('clips')} clips "
        f"extracted and {covers.get('failed_clips')} failed; it now has {now['done_clips']} extracted and "
        f"{now['failed_clips']} failed: run `cli cache stats {path}` again"
    )


def compute_stats(path: str | Path, scheduler: str | None = None, allow_partial: bool = False) -> dict[str, Any]:
    """Stats over every finite row (failed and missing clips are NaN and left out); written to attrs["stats"],
    with what they cover in attrs["stats_covers"]. A cache with clips still to extract is refused unless
    `allow_partial` (then the stats are marked partial, and refused by training once the cache has changed)."""
    import dask

    group = open_cache(path, mode="r+")
    before = coverage(path, group)
    if before["done_clips"] < before["clips"] and not allow_partial:
        raise UserError(
            f"{path} has {before['done_clips']} of {before['clips']} clips extracted: statistics need the whole cache "
            "(finish the extraction, or --allow-partial to record them as partial)"
        )
    shards = len(CacheShards(path, group))
    tasks = {name: [dask.delayed(shard_sums)(str(path), name, j) for j in range(shards)] for name in FEATURES}
    if scheduler:
        try:
            from dask.distributed import Client
        except ImportError:
            raise UserError("--scheduler needs dask-distributed: pip install 'dask[distributed]'") from None
        with Client(scheduler):
            (parts,) = dask.compute(tasks)
    else:
        (parts,) = dask.compute(tasks, scheduler="threads")
    stats = {name: combine(values) for name, values in parts.items()}
    if coverage(path, group) != before:
        raise UserError(f"{path} changed while its statistics were computed (is an extraction running?): run again")
    group.attrs.update({"stats": stats, "stats_covers": {**before, "partial": before["done_clips"] < before["clips"]}})
    return stats
