"""Array extraction through submitit's local executor, HDF5 round trips, merging caches."""

import json
import os
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from conftest import tiny_config
from test_extract import assert_same_cache

from cli import main
from pipeline.cluster.plan import pack
from pipeline.cluster.submit import ArraySettings, submit_extract
from pipeline.extract import run_extraction
from pipeline.synth.features import make_feature_cache


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
    run_extraction("ssv2", ssv2_root, "train", tmp_path / "one", cfg)
    cache = tmp_path / "array"
    jobs, plan = submit_extract(
        "ssv2", ssv2_root, "train", cache, cfg, ArraySettings(tasks=3, executor="local", gpus=0, cpus=1)
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
        "ssv2", ssv2_root, "train", cache, cfg, ArraySettings(tasks=3, executor="local", gpus=0, cpus=1)
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
    assert submit_extract("ssv2", ssv2_root, "train", cache, cfg, ArraySettings(executor="local"))[0] == []


def arrays_and_attrs(cache):
    group = zarr.open_group(str(cache), mode="r")
    return {name: group[name][:] for name in group.array_keys()}, dict(group.attrs)


def test_hdf5_export_import_round_trips_bit_for_bit(tmp_path):
    cache = make_feature_cache(
        tmp_path / "c", 37, "epic100", semantic=(9, 16), motion=(2, 8), shard_size=8, failed_rows=(4, 30)
    )
    runner = CliRunner()
    assert runner.invoke(main, ["cache", "export", str(cache), "--out", str(tmp_path / "f.h5")]).exit_code == 0
    with h5py.File(tmp_path / "f.h5", "r") as h5:
        assert h5["semantic"].shape == (37, 9, 16) and h5["verb"].shape == (37,) and h5["clip_id"].shape == (37,)
    result = runner.invoke(main, ["cache", "import", str(tmp_path / "f.h5"), "--cache", str(tmp_path / "back")])
    assert result.exit_code == 0, result.output
    (left, left_attrs), (right, right_attrs) = arrays_and_attrs(cache), arrays_and_attrs(tmp_path / "back")
    assert left.keys() == right.keys() and left_attrs == right_attrs
    for name in left:
        a, b = left[name], right[name]
        if a.dtype.kind == "f":
            assert a.tobytes() == b.tobytes(), name  # bit for bit, NaN rows included
        else:
            assert np.array_equal(a, b), name
    assert (cache / "failures" / "shard-000000.jsonl").read_text() == (
        tmp_path / "back" / "failures" / "shard-000000.jsonl"
    ).read_text()
    assert (
        runner.invoke(main, ["cache", "import", str(tmp_path / "f.h5"), "--cache", str(tmp_path / "back")]).exit_code
        == 2
    )


def test_merge_concatenates_and_refuses_mismatches(tmp_path):
    a = make_feature_cache(tmp_path / "a", 10, "ssv2", semantic=(4, 8), motion=(2, 4), shard_size=4, failed_rows=(9,))
    b = make_feature_cache(tmp_path / "b", 7, "ssv2", semantic=(4, 8), motion=(2, 4), split="validation", shard_size=4)
    result = CliRunner().invoke(
        main, ["cache", "merge", str(a), str(b), "--out", str(tmp_path / "m"), "--shard-size", "5"]
    )
    assert result.exit_code == 0, result.output
    merged, attrs = arrays_and_attrs(tmp_path / "m")
    (left, _), (right, _) = arrays_and_attrs(a), arrays_and_attrs(b)
    for name in ("semantic", "motion", "label", "clip_id", "done"):
        expected = np.concatenate([left[name], right[name]])
        assert np.array_equal(merged[name], expected, equal_nan=expected.dtype.kind == "f"), name
    assert attrs["num_clips"] == 17 and attrs["split"] == "train+validation" and attrs["shard_size"] == 5
    assert [
        json.loads(line)["row"]
        for line in (tmp_path / "m" / "failures" / "shard-000001.jsonl").read_text().splitlines()
    ] == [9]
    duplicate = CliRunner().invoke(main, ["cache", "merge", str(a), str(a), "--out", str(tmp_path / "d")])
    assert duplicate.exit_code == 2 and "more than one of the caches" in duplicate.output
    other = make_feature_cache(tmp_path / "o", 5, "ssv2", semantic=(4, 16), motion=(2, 4), shard_size=4)
    mismatch = CliRunner().invoke(main, ["cache", "merge", str(a), str(other), "--out", str(tmp_path / "x")])
    assert mismatch.exit_code == 2 and "'backbones' differ" in mismatch.output


def test_cache_stats_out_of_core_under_a_memory_limit(tmp_path):
    """The cache's features (fp16) are larger than the address space the stats process may use."""
    import resource
    import subprocess
    import sys

    clips, dims = 8500, {"semantic": (196, 256), "motion": (8, 64)}
    cache = make_feature_cache(tmp_path / "big", clips, "ssv2", **dims, shard_size=64)
    feature_bytes = clips * sum(t * d for t, d in dims.values()) * 2
    limit = 800 * 2**20
    assert feature_bytes > limit
    # Two malloc arenas: the address-space limit then measures data, not per-thread arena reservations.
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    result = subprocess.run(
        [sys.executable, str(Path(__file__).parents[1] / "cli.py"), "cache", "stats", str(cache)],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    stats = zarr.open_group(str(cache), mode="r").attrs["stats"]
    group = zarr.open_group(str(cache), mode="r")
    motion = group["motion"][:].astype(np.float64)  # the small one fits here: check against numpy
    assert np.allclose(stats["motion"]["mean"], motion.mean(axis=(0, 1)))
    assert np.allclose(stats["motion"]["std"], motion.std(axis=(0, 1)))
    sample = group["semantic"][:500].astype(np.float64)
    assert np.allclose(stats["semantic"]["mean"], sample.mean(axis=(0, 1)), atol=0.05)
