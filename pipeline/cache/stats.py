"""`cli cache stats`: per-channel mean/std, token norms and NaN counts of each feature, out of core with dask
(one task per shard, each returning small partial sums), stored in the cache's attrs for normalisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cache.layout import FEATURES, open_cache
from pipeline.cache.reader import finite_rows
from pipeline.cache.shards import CacheShards
from pipeline.errors import UserError


def shard_sums(path: str, name: str, shard: int) -> dict[str, Any]:
    """Partial sums over the finite clips of one shard of one feature: what the reduction needs, nothing more."""
    block = CacheShards(path).read(name, shard)
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


def compute_stats(path: str | Path, scheduler: str | None = None) -> dict[str, Any]:
    """Stats over every finite row (failed and missing clips are NaN and left out); written to attrs["stats"]."""
    import dask

    group = open_cache(path, mode="r+")
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
    group.attrs["stats"] = stats
    return stats
