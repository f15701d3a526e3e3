"""Balance an array job: estimate each pending shard's cost from the clip list, bin-pack shards onto tasks."""

from __future__ import annotations

import heapq
import os

from pipeline.datasets.base import Clip


def clip_cost(clip: Clip) -> float:
    """Rough decode cost: frames of a frame range, seconds of a video segment, else the file's size.

    Only comparisons within one dataset matter, where every clip is of the same kind.
    """
    if clip.start is not None and clip.stop is not None:
        return float(clip.stop - clip.start) + 1.0
    try:
        return float(os.path.getsize(clip.source)) + 1.0
    except OSError:
        return 1.0  # a missing file fails fast


def pack(costs: dict[int, float], tasks: int) -> list[list[int]]:
    """Longest-processing-time-first: each shard, most costly first, goes to the least loaded task."""
    heap = [(0.0, task) for task in range(tasks)]
    bins: list[list[int]] = [[] for _ in range(tasks)]
    for shard in sorted(costs, key=lambda j: (-costs[j], j)):
        load, task = heapq.heappop(heap)
        bins[task].append(shard)
        heapq.heappush(heap, (load + costs[shard], task))
    return [sorted(b) for b in bins if b]
