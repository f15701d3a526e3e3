"""Which shards an array job owns: shard j belongs to job K of N when j mod N == K."""

from __future__ import annotations

import os

from pipeline.core.errors import UserError


def parse_shard(text: str | None) -> tuple[int, int]:
    """'K/N' -> (K, N); None -> from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT, else (0, 1)."""
    if text is None:
        task, count = os.environ.get("SLURM_ARRAY_TASK_ID"), os.environ.get("SLURM_ARRAY_TASK_COUNT")
        if task is None or count is None:
            return 0, 1
        # Arrays may start at any index (--array=1-8): count from the array's first task.
        text = f"{int(task) - int(os.environ.get('SLURM_ARRAY_TASK_MIN', 0))}/{count}"
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard: expected K/N such as 0/4, got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard: expected 0 <= K < N, got {index}/{count}")
    return index, count


def owned_shards(total: int, index: int, count: int) -> list[int]:
    return [shard for shard in range(total) if shard % count == index]
