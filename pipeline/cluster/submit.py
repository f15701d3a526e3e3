"""`cli submit extract`: the extraction as a SLURM job array through submitit (or local processes), one task
per bin of pending shards, balanced by estimated cost. Re-submitting runs only the shards not yet done."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from pipeline.cache.layout import num_shards
from pipeline.cluster.plan import clip_cost, pack
from pipeline.errors import UserError
from pipeline.extract import prepare_cache, run_extraction
from pipeline.extract_config import ExtractConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ArraySettings:
    tasks: int = 8
    executor: str = "auto"  # auto (SLURM when available) | slurm | local
    partition: str | None = None
    gpus: int = 1
    cpus: int = 10
    mem_gb: float | None = None
    time_min: int = 240
    parallelism: int = 64  # tasks running at once


def run_task(
    dataset: str, data_root: str, split: str, cache: str, cfg: ExtractConfig, shards: list[int], limit: int | None
) -> dict[str, Any]:
    """One array task: extract its shards (the same code path as `cli extract`)."""
    logging.basicConfig(level=logging.INFO)
    return dataclasses.asdict(run_extraction(dataset, data_root, split, cache, cfg, limit=limit, shards=shards))


def jobs_folder(cache: Path) -> Path:
    """Beside the cache, not in it: submitit's scripts, pickles and logs, and each submission's plan."""
    return cache.parent / f"{cache.name}-jobs"


def submit_extract(
    dataset: str,
    data_root: Path,
    split: str,
    cache: Path,
    cfg: ExtractConfig,
    array: ArraySettings,
    limit: int | None = None,
) -> tuple[list[Any], dict[str, Any]]:
    """Create the cache, plan the pending shards and submit them. Returns (submitit jobs, plan)."""
    import submitit

    clips, _, writer = prepare_cache(dataset, data_root, split, cache, cfg, limit)
    done = writer.done_shards()
    pending = [j for j in range(num_shards(len(clips), cfg.run.shard_size)) if j not in done]
    plan: dict[str, Any] = {"cache": str(cache), "pending_shards": len(pending), "done_shards": len(done), "tasks": []}
    if not pending:
        return [], plan
    costs = {j: sum(clip_cost(c) for c in clips.clips[slice(*writer.rows(j))]) for j in pending}
    bins = pack(costs, max(1, min(array.tasks, len(pending))))
    plan["tasks"] = [{"task": i, "shards": b, "cost": sum(costs[j] for j in b)} for i, b in enumerate(bins)]
    folder = jobs_folder(Path(cache))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"plan-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(plan, indent=1))
    cluster = None if array.executor == "auto" else array.executor
    if cluster not in (None, "slurm", "local"):
        raise UserError(f"--executor must be auto, slurm or local, got '{array.executor}'")
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    gpus = array.gpus
    if executor.cluster == "local":
        import torch

        gpus = min(gpus, torch.cuda.device_count())
    params: dict[str, Any] = {
        "name": f"gasm-extract-{Path(cache).name}",
        "timeout_min": array.time_min,
        "cpus_per_task": array.cpus,
        "gpus_per_node": gpus,
        "slurm_array_parallelism": array.parallelism,
    }
    if array.partition:
        params["slurm_partition"] = array.partition
    if array.mem_gb:
        params["mem_gb"] = array.mem_gb
    executor.update_parameters(**params)
    n = len(bins)
    jobs = executor.map_array(
        run_task, [dataset] * n, [str(data_root)] * n, [split] * n, [str(cache)] * n, [cfg] * n, bins, [limit] * n
    )
    log.info(
        "submitted %d tasks (%s) for %d pending shards; scripts and logs in %s",
        n,
        executor.cluster,
        len(pending),
        folder,
    )
    return jobs, plan
