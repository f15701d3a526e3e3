"""Array extraction through submitit's local executor, HDF5 round trips, merging caches."""

import os
import signal
import time
from pathlib import Path

import pytest
import zarr
from conftest import assert_same_cache, tiny_config

from pipeline.cluster.plan import pack
from pipeline.cluster.submit import ArraySettings, submit_extract
from pipeline.datasets import DataSource
from pipeline.extract import run_extraction


def test_pack_balances_cost():
    costs = {0: 10.0, 1: 9.0, 2: 1.0, 3: 1.0, 4: 8.0, 5: 1.0}
    bins = pack(costs, 3)
    loads = sorted(sum(costs[j] for j in b) for b in bins)
    assert sorted(j for b in bins for j in b) == list(costs) and loads == [10.0, 10.0, 10.0]


def kill_job(job) -> None:
    """SIGKILL a local submitit job: its controller (frozen first, so it spawns nothing more) and its task processes."""
    controller = job._process.pid
    os.kill(controller, signal.SIGSTOP)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == controller:
            os.kill(int(stat.parent.name), signal.SIGKILL)
    os.kill(controller, signal.SIGKILL)


def shard_stamps(cache: Path) -> dict[str, int]:
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in (cache / "semantic").rglob("*") if p.is_file()}


def test_local_array_equals_one_process_and_resubmits_only_what_is_missing(ssv2_root, tmp_path):
    cfg = tiny_config()
    run_extraction(DataSource("ssv2", ssv2_root, "train"), tmp_path / "one", cfg)
    cache = tmp_path / "array"
    jobs, plan = submit_extract(
        DataSource("ssv2", ssv2_root, "train"), cache, cfg, ArraySettings(tasks=3, executor="local", gpus=0, cpus=1)
    )
    assert len(jobs) == 3 and sorted(j for t in plan["tasks"] for j in t["shards"]) == list(range(6))
    victim = jobs[1]
    time.sleep(1.0)  # the task is starting up or extracting
    kill_job(victim)
    for job in (jobs[0], jobs[2]):
        job.result()
    with pytest.raises(Exception):  # noqa: B017 - submitit wraps the task's death in its own types
        victim.result()
    done_before = zarr.open_group(str(cache), mode="r")["done"][:]
    assert 0 < done_before.sum() < len(done_before)
    stamps = shard_stamps(cache)
    jobs, plan = submit_extract(
        DataSource("ssv2", ssv2_root, "train"), cache, cfg, ArraySettings(tasks=3, executor="local", gpus=0, cpus=1)
    )
    redone = sorted(j for t in plan["tasks"] for j in t["shards"])
    assert redone == [j for j in range(6) if not done_before[2 * j]]
    for job in jobs:
        job.result()
    after = shard_stamps(cache)
    for j in range(6):
        if done_before[2 * j]:
            assert (
                after[f"semantic/c/{j}/0/0"] == stamps[f"semantic/c/{j}/0/0"]
            )  # finished shards were not written again
    assert_same_cache(tmp_path / "one", cache)
    assert list((tmp_path / "array-jobs").glob("plan-*.json"))
    assert submit_extract(DataSource("ssv2", ssv2_root, "train"), cache, cfg, ArraySettings(executor="local"))[0] == []
