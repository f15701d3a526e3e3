"""`cli cache repair`: damaged shard files (truncated, failed checksum) are removed and their shards marked not
done, so the next `cli extract` with the same settings redoes exactly those shards, bit for bit as before."""

from __future__ import annotations

from pathlib import Path

from pipeline.cache.inspect import read_done, read_shard
from pipeline.cache.layout import FEATURES, num_shards, open_cache, shard_rows
from pipeline.cache.writer import failures_file


def repair_cache(path: str | Path) -> list[int]:
    """Mark every shard with an unreadable feature file or `done` chunk for re-extraction; returns them."""
    path = Path(path)
    group = open_cache(path, mode="r+")
    shard_size, n = int(group.attrs["shard_size"]), int(group.attrs["num_clips"])
    done, damaged_done = read_done(group, shard_size)
    broken = {shard for shard, _ in damaged_done}
    for shard in range(num_shards(n, shard_size)):
        lo, hi = shard_rows(shard, shard_size, n)
        if shard not in broken and read_shard(group, shard, lo, hi)[1] is not None:
            broken.add(shard)
    for shard in sorted(broken):
        lo, hi = shard_rows(shard, shard_size, n)
        group["done"][lo:hi] = False  # first: a repair killed midway leaves the shard to redo, never half-trusted
        for name in FEATURES:
            (path / name / group[name].metadata.encode_chunk_key((shard, 0, 0))).unlink(missing_ok=True)
        failures_file(path, shard).unlink(missing_ok=True)
    return sorted(broken)
