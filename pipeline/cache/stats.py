"""`cli cache stats`: per-channel mean/std, token norms and NaN counts of each feature, out of core with dask
(one task per shard), stored in the cache's attrs for the trainer's normalisation."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.cache.layout import FEATURES, open_cache
from pipeline.errors import UserError


def compute_stats(path: str | Path, scheduler: str | None = None) -> dict[str, Any]:
    """Stats over every finite row (failed and missing clips are NaN and left out); written to attrs["stats"]."""
    import dask
    import dask.array as da

    group = open_cache(path, mode="r+")
    shard_size = int(group.attrs["shard_size"])
    lazy = {}
    for name in FEATURES:
        array = da.from_zarr(group[name], chunks=(shard_size, *group[name].shape[1:])).astype("float64")
        finite = da.isfinite(array).all(axis=(1, 2))
        valid = da.where(finite[:, None, None], array, float("nan"))
        lazy[name] = {
            "mean": da.nanmean(valid, axis=(0, 1)),
            "std": da.nanstd(valid, axis=(0, 1)),
            "mean_token_norm": da.nanmean(da.sqrt((valid**2).sum(axis=2))),
            "non_finite_clips": (~finite).sum(),
        }
    if scheduler:
        try:
            from dask.distributed import Client
        except ImportError:
            raise UserError("--scheduler needs dask-distributed: pip install 'dask[distributed]'") from None

        with Client(scheduler):
            (computed,) = dask.compute(lazy)
    else:
        (computed,) = dask.compute(lazy, scheduler="threads")
    stats = {name: {"mean": values["mean"].tolist(), "std": values["std"].tolist(),
                    "mean_token_norm": float(values["mean_token_norm"]), "non_finite_clips": int(values["non_finite_clips"])}
             for name, values in computed.items()}
    group.attrs["stats"] = stats
    return stats
