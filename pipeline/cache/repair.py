"""`cli cache repair`: damaged shard files (truncated, failed checksum) are removed and their shards marked not
done, so the next `cli extract` with the same settings redoes exactly those shards, bit for bit as before."""

from __future__ import annotations

from pathlib import Path

from pipeline.cache.inspect import read_done, read_shard
from pipeline.cache.layout import FEATURES, open_cache
from pipeline.cache.shards import CacheShards
from pipeline.cache.writer import failures_file


def repair_cache(path: str | Path) -> list[int]:
    """Mark every shard with an unreadable feature file or `done` chunk for re-extraction; returns them."""
    path = Path(path)
    group = open_cache(path, mode="r+")
    done, damaged_done = read_done(group, int(group.attrs["shard_size"]))
    broken = {shard for shard, _ in damaged_done}
    shards = CacheShards(path, group)
    for shard in range(len(shards)):
        if shard not in broken and read_shard(shards, shard)[1] is not None:
            broken.add(shard)
    for shard in sorted(broken):
        lo, hi = shards.rows(shard)
        group["done"][lo:hi] = False  # first: a repair killed midway leaves the shard to redo, never half-trusted
        for name in FEATURES:
            shards.file(name, shard).unlink(missing_ok=True)
        failures_file(path, shard).unlink(missing_ok=True)
    return sorted(broken)
