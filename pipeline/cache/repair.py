"""`cli cache repair`: shards with damaged files (truncated, failed checksum) are marked not done, so the next
`cli extract` with the same settings redoes exactly those shards, bit for bit as before.

Nothing is deleted: a damaged shard's files (and its failure list) move into the cache's `quarantine/` folder,
where the next extract that finishes the shard removes them. A cache whose metadata disagrees with its stored
bytes is refused before anything moves (open_cache): a forged size must not make intact files look damaged.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.cache.inspect import read_done, read_shard
from pipeline.cache.layout import FEATURES, open_cache
from pipeline.cache.shards import CacheShards
from pipeline.cache.writer import failures_file, quarantine_folder, quarantined


def repair_cache(path: str | Path) -> dict[int, list[Path]]:
    """Mark every shard with an unreadable feature file or `done` chunk for re-extraction; returns each such
    shard and where its files were kept."""
    path = Path(path)
    group = open_cache(path, mode="r+")
    done, damaged_done = read_done(group, int(group.attrs["shard_size"]))
    broken = {shard for shard, _ in damaged_done}
    shards = CacheShards(path, group)
    for shard in range(len(shards)):
        if shard not in broken and read_shard(shards, shard)[1] is not None:
            broken.add(shard)
    kept: dict[int, list[Path]] = {}
    if broken:
        group.require_group(quarantine_folder(path).name)  # a member group, so Zarr does not warn about it
    for shard in sorted(broken):
        lo, hi = shards.rows(shard)
        group["done"][lo:hi] = False  # first: a repair killed midway leaves the shard to redo, never half-trusted
        sources = {name: shards.file(name, shard) for name in FEATURES}
        sources["failures"] = failures_file(path, shard)
        kept[shard] = []
        for name, source in sources.items():
            if source.exists():
                target = quarantined(path, shard, name)
                os.replace(source, target)  # same file system: a rename, never a copy that could fail half-way
                kept[shard].append(target)
    return kept
