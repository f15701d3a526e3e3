"""`cli submit extract`: the extraction as a SLURM job array through submitit (or local processes), one task
per bin of pending shards, balanced by estimated cost. Re-submitting runs only the shards not yet done."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from pipeline.cache.layout import num_shards
from pipeline.cluster.array_config import ArraySettings
from pipeline.cluster.plan import clip_cost, pack
from pipeline.core.devices import resolve_precision
from pipeline.core.errors import UserError
from pipeline.datasets import DataSource
from pipeline.extract import CacheTarget, run_extraction
from pipeline.extract_config import ExtractConfig

log = logging.getLogger(__name__)


def run_task(
    source: DataSource, cache: str, cfg: ExtractConfig, shards: list[int], retry_failed: bool = False
) -> dict[str, Any]:
    """One array task: extract its shards (the same code path as `cli extract`)."""
    logging.basicConfig(level=logging.INFO)
    summary = run_extraction(source, cache, cfg, shards=shards, retry_failed=retry_failed)
    return dataclasses.asdict(summary)


def jobs_folder(cache: Path) -> Path:
    """Beside the cache, not in it: submitit's scripts, pickles and logs, and each submission's plan."""
    return cache.parent / f"{cache.name}-jobs"


def task_config(cfg: ExtractConfig, array: ArraySettings) -> ExtractConfig:
    """The config the TASKS run with: device and precision resolved for the nodes they get (GPUs requested or
    not), never for the machine that submits, which is often a login node without a GPU."""
    device = cfg.run.device
    if device == "auto":
        device = "cuda" if array.gpus > 0 else "cpu"
    elif device.startswith("cuda") and array.gpus == 0:
        raise UserError(f"--device {device} asks for a GPU but --gpus is 0")
    # Which GPU a task lands on is not known here: 'auto' means bf16 (Ampere or newer, as A100/H100 partitions);
    # on V100/T4 partitions pass --precision fp16.
    precision = resolve_precision(cfg.run.precision, torch.device(device), native_bf16=True)
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, device=device, precision=precision))


def submit_extract(
    source: DataSource, cache: Path, cfg: ExtractConfig, array: ArraySettings, retry_failed: bool = False
) -> tuple[list[Any], dict[str, Any]]:
    """Create the cache, plan the pending shards and submit them. Returns (submitit jobs, plan)."""
    import submitit

    cfg = task_config(cfg, array)
    target = CacheTarget(source, cache, cfg, cfg.run.precision)
    cluster = None if array.executor == "auto" else array.executor
    folder = jobs_folder(Path(cache))
    try:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"--executor {array.executor}: {exc}") from None
    clips, writer = target.clips, target.open(create=True)
    done = writer.done_shards()
    retry = writer.failed_shards() & done if retry_failed else set()
    pending = [j for j in range(num_shards(len(clips), cfg.run.shard_size)) if j not in done or j in retry]
    plan: dict[str, Any] = {
        "cache": str(cache),
        "pending_shards": len(pending),
        "done_shards": len(done) - len(retry),
        "tasks": [],
        "device": cfg.run.device,
        "precision": cfg.run.precision,
    }
    if not pending:
        return [], plan
    costs = {j: sum(clip_cost(c) for c in clips.clips[slice(*writer.rows(j))]) for j in pending}
    bins = pack(costs, max(1, min(array.tasks, len(pending))))
    plan["tasks"] = [{"task": i, "shards": b, "cost": sum(costs[j] for j in b)} for i, b in enumerate(bins)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"plan-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(plan, indent=1))
    executor.update_parameters(**executor_parameters(executor.cluster, array, Path(cache).name))
    n = len(bins)
    common = (source, str(cache), cfg)
    extra = (retry_failed,)
    gpu_sets = local_gpu_sets(n, array.gpus) if executor.cluster == "local" else []
    if gpu_sets:  # local processes: each its own GPUs (one array would pin every task to the same ones)
        jobs = []
        for shards, gpus in zip(bins, gpu_sets):
            executor.update_parameters(visible_gpus=gpus, gpus_per_node=len(gpus))
            jobs.append(executor.submit(run_task, *common, shards, *extra))
    else:
        jobs = executor.map_array(run_task, *([value] * n for value in common), bins, *([value] * n for value in extra))
    log.info(
        "submitted %d tasks (%s) for %d pending shards; scripts and logs in %s",
        n,
        executor.cluster,
        len(pending),
        folder,
    )
    return jobs, plan


def local_gpu_sets(tasks: int, per_task: int) -> list[list[int]]:
    """GPUs for each of `tasks` local processes, round robin over the visible ones (CUDA_VISIBLE_DEVICES, else
    every device); [] when no GPU is asked for or none is visible."""
    visible_env = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if visible_env.strip() and all(part.strip().isdigit() for part in visible_env.split(",")):
        visible = [int(part) for part in visible_env.split(",")]
    else:
        visible = list(range(torch.cuda.device_count()))
    if per_task == 0 or not visible:
        return []
    per_task = min(per_task, len(visible))
    return [[visible[(task * per_task + k) % len(visible)] for k in range(per_task)] for task in range(tasks)]


def executor_parameters(cluster: str, array: ArraySettings, name: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "name": f"gasm-extract-{name}",
        "timeout_min": array.time_min,
        "cpus_per_task": array.cpus,
        "gpus_per_node": array.gpus,
        "slurm_array_parallelism": array.parallelism,
    }
    if cluster == "local":
        params["gpus_per_node"] = min(array.gpus, torch.cuda.device_count())
    if array.partition:
        params["slurm_partition"] = array.partition
    if array.mem_gb:
        params["mem_gb"] = array.mem_gb
    return params
