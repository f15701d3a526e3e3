"""Extraction into the cache: shapes, labels, resume, concurrent shards, bad clips, refusals."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import ROOT, assert_same_cache, tiny_config

from pipeline.cache.inspect import verify_cache
from pipeline.cache.reader import read_failures
from pipeline.core.errors import UserError
from pipeline.datasets import DataSource
from pipeline.extract import run_extraction


def test_ssv2_cache_layout_and_labels(ssv2_root, tmp_path, tiny):
    cache = tmp_path / "c"
    summary = run_extraction(DataSource("ssv2", ssv2_root, "validation"), cache, tiny)
    assert (summary.extracted, summary.failed, summary.skipped) == (6, 0, 0)
    group = zarr.open_group(str(cache), mode="r")
    assert group["semantic"].shape == (6, 196, 64) and group["semantic"].dtype == np.float16
    assert group["motion"].shape == (6, 8, 64) and group["motion"].dtype == np.float16
    assert group["semantic"].chunks == (1, 196, 64) and group["semantic"].shards == (2, 196, 64)
    assert group["done"][:].all() and np.isfinite(group["semantic"][:]).all()
    entries = json.loads((ssv2_root / "validation.json").read_text())
    names = json.loads((ssv2_root / "labels.json").read_text())
    assert group["clip_id"][:].tolist() == [e["id"] for e in entries]
    assert group["label"][:].tolist() == [int(names[e["label"]]) for e in entries]
    attrs = dict(group.attrs)
    assert attrs["backbones"]["semantic"]["tokens"] == 196 and attrs["backbones"]["motion"]["dim"] == 64
    assert attrs["backbones"]["semantic"]["random_seed"] == 0 and attrs["backbones"]["motion"]["layer"] == "res3"
    assert attrs["created_with"]["package"] == "gasm-cast" and "git_commit" in attrs["created_with"]
    assert attrs["config"]["run"]["shard_size"] == 2 and len(attrs["label_names"]["label"]) == 12
    assert verify_cache(cache) == []
    # clips differ, so their features do
    assert not np.array_equal(group["motion"][0], group["motion"][1])
    # a frame-averaged cache describes itself as caches did before time could be kept (so they stay resumable)
    assert {"pool", "grid"}.isdisjoint(attrs["backbones"]["semantic"]) and attrs["backbones"]["semantic"]["frames"] == 8


def test_a_frames_cache_keeps_every_frame_and_says_so(ssv2_root, tmp_path, tiny):
    from pipeline.cache.layout import semantic_frames
    from pipeline.cache.stats import compute_stats

    tiny.sampling.semantic_reduce, tiny.sampling.semantic_frames, tiny.sampling.semantic_pool = "frames", 4, 2
    cache = tmp_path / "frames"
    run_extraction(DataSource("ssv2", ssv2_root, "validation"), cache, tiny)
    group = zarr.open_group(str(cache), mode="r")
    semantic = dict(group.attrs)["backbones"]["semantic"]
    assert group["semantic"].shape == (6, 4 * 49, 64) and semantic_frames(dict(group.attrs)) == 4
    assert (semantic["reduce"], semantic["frames"], semantic["pool"], semantic["grid"], semantic["tokens"]) == (
        "frames", 4, 2, 7, 196)  # fmt: skip
    assert verify_cache(cache) == []
    compute_stats(cache)  # per channel over every frame's tokens
    assert len(dict(zarr.open_group(str(cache), mode="r").attrs)["stats"]["semantic"]["mean"]) == 64
    # the same clips with the frames averaged: what a mean cache holds is the mean of the kept frames (pooled)
    tiny.sampling.semantic_reduce = "mean"
    run_extraction(DataSource("ssv2", ssv2_root, "validation"), tmp_path / "mean", tiny)
    averaged = zarr.open_group(str(tmp_path / "mean"), mode="r")["semantic"][:].astype(np.float32)
    kept = group["semantic"][:].astype(np.float32).reshape(6, 4, 49, 64).mean(axis=1)
    assert np.allclose(averaged, kept, atol=2e-2)


def test_epic_cache_has_verb_and_noun(epic_root, tmp_path, tiny):
    cache = tmp_path / "e"
    run_extraction(DataSource("epic100", epic_root, "validation"), cache, tiny)
    group = zarr.open_group(str(cache), mode="r")
    assert "label" not in group and group["verb"][:].tolist() == [0, 0, 0, 1, 1]
    assert group["noun"][:].tolist() == [0, 1, 2, 0, 1] and group["done"][:].all()
    assert group.attrs["label_names"]["verb"][0] == "move-right"


def test_rerun_skips_finished_shards_without_rewriting(ssv2_root, tmp_path, tiny):
    cache = tmp_path / "c"
    run_extraction(DataSource("ssv2", ssv2_root, "validation"), cache, tiny)
    shard_files = sorted((cache / "semantic").rglob("*"))
    stamps = [p.stat().st_mtime_ns for p in shard_files if p.is_file()]
    again = run_extraction(DataSource("ssv2", ssv2_root, "validation"), cache, tiny)
    assert (again.extracted, again.skipped) == (0, 6)
    assert stamps == [p.stat().st_mtime_ns for p in shard_files if p.is_file()]


def test_two_shard_jobs_equal_one_job(ssv2_root, tmp_path, tiny):
    run_extraction(DataSource("ssv2", ssv2_root, "train"), tmp_path / "one", tiny)
    for k in (0, 1):
        part = run_extraction(DataSource("ssv2", ssv2_root, "train"), tmp_path / "two", tiny, shard=(k, 2))
        assert part.extracted == 6  # shards 0,2,4 or 1,3,5 of 2 clips each
    assert_same_cache(tmp_path / "one", tmp_path / "two")


def _extract_command(root: Path, cache: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "cli.py"),
        "extract",
        "--dataset",
        "ssv2",
        "--data-root",
        str(root),
        "--split",
        "train",
        "--cache",
        str(cache),
        "--config",
        str(ROOT / "configs" / "extract_tiny.yaml"),
        "--shard-size",
        "2",
        "--batch-size",
        "2",
        "--workers",
        "1",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


def test_concurrent_shard_processes_equal_one_job(ssv2_root, tmp_path):
    jobs = [subprocess.Popen(_extract_command(ssv2_root, tmp_path / "two", "--shard", f"{k}/2")) for k in (0, 1)]
    assert [job.wait(timeout=300) for job in jobs] == [0, 0]
    subprocess.run(_extract_command(ssv2_root, tmp_path / "one"), check=True, timeout=300)
    assert_same_cache(tmp_path / "one", tmp_path / "two")


def test_sigkill_midway_then_rerun_equals_uninterrupted(ssv2_root, tmp_path):
    cache = tmp_path / "killed"
    job = subprocess.Popen(_extract_command(ssv2_root, cache))
    deadline = time.time() + 240
    while time.time() < deadline:
        done = zarr.open_group(str(cache), mode="r")["done"][:] if (cache / "done" / "zarr.json").exists() else None
        if done is not None and 0 < done.sum() < len(done):
            break
        time.sleep(0.02)
    else:
        pytest.fail("extraction never got midway")
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    assert not zarr.open_group(str(cache), mode="r")["done"][:].all()
    subprocess.run(_extract_command(ssv2_root, cache), check=True, timeout=300)
    subprocess.run(_extract_command(ssv2_root, tmp_path / "clean"), check=True, timeout=300)
    assert_same_cache(cache, tmp_path / "clean")


def test_bad_clips_are_recorded_and_named_by_verify(ssv2_root, tmp_path, tiny):
    root = tmp_path / "data"
    shutil.copytree(ssv2_root, root)
    videos = sorted((root / "videos").glob("*.webm"))
    ids = [v["id"] for v in json.loads((root / "train.json").read_text())]
    truncated, empty, missing = (root / "videos" / f"{ids[i]}.webm" for i in (1, 4, 9))
    truncated.write_bytes(truncated.read_bytes()[:400])
    empty.write_bytes(b"")
    missing.unlink()
    assert len(videos) > 9
    cache = tmp_path / "c"
    summary = run_extraction(DataSource("ssv2", root, "train"), cache, tiny)
    assert (summary.extracted, summary.failed) == (9, 3)
    failures = {f["clip_id"]: f for f in read_failures(cache)}
    assert set(failures) == {ids[1], ids[4], ids[9]}
    assert "empty file" in failures[ids[4]]["error"] and "does not exist" in failures[ids[9]]["error"]
    assert all(f["stage"] in ("open", "decode") and f["path"].endswith(".webm") for f in failures.values())
    group = zarr.open_group(str(cache), mode="r")
    assert group["done"][:].all() and np.isnan(group["semantic"][1]).all() and np.isfinite(group["semantic"][0]).all()
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "cache", "verify", str(cache)], capture_output=True, text=True
    )
    assert result.returncode == 1
    for clip_id in (ids[1], ids[4], ids[9]):
        assert f"failed\t{clip_id}\t" in result.stdout


def test_verify_names_missing_and_non_finite_clips(ssv2_root, tmp_path, tiny):
    cache = tmp_path / "c"
    run_extraction(DataSource("ssv2", ssv2_root, "validation"), cache, tiny, shard=(0, 3))  # shards 0 and 3 -> rows 0,1
    group = zarr.open_group(str(cache), mode="r+")
    motion = group["motion"][0:2]
    motion[1, 3, 5] = np.inf
    group["motion"][0:2] = motion
    problems = {(p["problem"], p["row"]) for p in verify_cache(cache)}
    assert problems == {("non-finite", 1), ("missing", 2), ("missing", 3), ("missing", 4), ("missing", 5)}


def test_other_runs_are_refused(ssv2_root, tmp_path, tiny):
    cache = tmp_path / "c"
    run_extraction(DataSource("ssv2", ssv2_root, "validation", limit=4), cache, tiny)
    with pytest.raises(UserError, match="there -> now: num_clips: 4 -> 6; manifest_sha256: "):
        run_extraction(DataSource("ssv2", ssv2_root, "validation"), cache, tiny)
    with pytest.raises(UserError, match="split: 'validation' -> 'train'"):
        run_extraction(DataSource("ssv2", ssv2_root, "train", limit=4), cache, tiny)
    other = tiny_config()
    other.backbones.motion_layer = "res4"
    with pytest.raises(UserError, match=r"backbones.motion.dim: 64 -> 128; backbones.motion.layer: 'res3' -> 'res4'"):
        run_extraction(DataSource("ssv2", ssv2_root, "validation", limit=4), cache, other)
    other = tiny_config(shard_size=4)
    with pytest.raises(UserError, match="shard_size: 2 -> 4"):
        run_extraction(DataSource("ssv2", ssv2_root, "validation", limit=4), cache, other)
    # run settings that do not change the features are fine
    assert (
        run_extraction(DataSource("ssv2", ssv2_root, "validation", limit=4), cache, tiny_config(batch_size=1)).skipped
        == 4
    )


def test_not_a_cache_is_refused(tmp_path, ssv2_root, tiny):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="exists and is not empty, but is not a gasm-cast cache"):
        run_extraction(DataSource("ssv2", ssv2_root, "validation"), tmp_path / "stuff", tiny)
    assert (tmp_path / "stuff" / "notes.txt").read_text() == "mine"
