"""Statistics are bound to the cache they describe: refused on a cache still being extracted, and refused by
training (and listed by verify) once the cache has changed since they were computed."""

import numpy as np
import zarr
from click.testing import CliRunner

from cli import main
from pipeline.synth.features import make_feature_cache

DIMS = {"semantic": (16, 32), "motion": (4, 16)}


def test_statistics_taken_mid_extraction_are_refused_once_it_finishes(tmp_path):
    train = make_feature_cache(tmp_path / "train", 64, "ssv2", **DIMS, shard_size=16)
    val = make_feature_cache(tmp_path / "val", 16, "ssv2", **DIMS, split="validation", shard_size=16)
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
