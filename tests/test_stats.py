"""Statistics are bound to the cache they describe: refused on a cache still being extracted, and refused by
training (and listed by verify) once the cache has changed since they were computed."""

import os
from pathlib import Path

import numpy as np
import zarr
from click.testing import CliRunner
from conftest import SMALL_DIMS

from cli import main
from pipeline.synth.features import make_feature_cache


def test_statistics_taken_mid_extraction_are_refused_once_it_finishes(tmp_path):
    train = make_feature_cache(tmp_path / "train", 64, "ssv2", **SMALL_DIMS, shard_size=16)
    val = make_feature_cache(tmp_path / "val", 16, "ssv2", **SMALL_DIMS, split="validation", shard_size=16)
    done = zarr.open_group(str(train), mode="r+")["done"]
    extracted = done[:]
    done[32:] = np.zeros(32, dtype=bool)  # as an extraction half-way through leaves it

    result = CliRunner().invoke(main, ["cache", "stats", str(train)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {train} has 32 of 64 clips extracted: statistics need the whole cache")
    assert "stats" not in zarr.open_group(str(train), mode="r").attrs
    assert CliRunner().invoke(main, ["cache", "stats", str(train), "--allow-partial"]).exit_code == 0
    assert zarr.open_group(str(train), mode="r").attrs["stats_covers"]["partial"] is True

    done[:] = extracted  # the extraction finishes
    args = ["fuse-train", "--cache", str(train), "--val-cache", str(val), "--out", str(tmp_path / "run"), "--model",
            "late_fusion", "--batch-size", "16", "--device", "cpu", "--no-progress", "--epochs", "1"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "its statistics were computed with 32 of 64 clips extracted and 0 failed; it now has 64 extracted" in (
        result.output
    )
    assert not (tmp_path / "run").exists()
    verify = CliRunner().invoke(main, ["cache", "verify", str(train)])
    assert verify.exit_code == 1 and "stale statistics" in verify.output

    assert CliRunner().invoke(main, ["cache", "stats", str(train)]).exit_code == 0
    assert CliRunner().invoke(main, args).exit_code == 0
    assert CliRunner().invoke(main, ["cache", "verify", str(train)]).exit_code == 0


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
