"""torchrun with 2 gloo processes follows 1 process step by step (same global batch, no dropout)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.synth.features import make_feature_cache

ROOT = Path(__file__).resolve().parents[1]


def steps(run: Path) -> list[float]:
    with (run / "steps.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def test_two_gloo_processes_follow_one(tmp_path):
    dims = {"semantic": (16, 64), "motion": (4, 32)}
    train = make_feature_cache(tmp_path / "train", 150, "epic100", **dims, shard_size=16)
    val = make_feature_cache(tmp_path / "val", 40, "epic100", **dims, split="validation", shard_size=16)
    config = tmp_path / "nodrop.yaml"
    config.write_text("model:\n  dropout: 0.0\n")
    args = [
        "fuse-train",
        "--cache",
        str(train),
        "--val-cache",
        str(val),
        "--epochs",
        "2",
        "--batch-size",
        "20",
        "--device",
        "cpu",
        "--no-progress",
        "--config",
        str(config),
    ]
    subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args, "--out", str(tmp_path / "one")], check=True, timeout=600
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            str(ROOT / "cli.py"),
            *args,
            "--out",
            str(tmp_path / "two"),
        ],
        check=True,
        timeout=600,
    )
    one, two = steps(tmp_path / "one"), steps(tmp_path / "two")
    assert len(one) == len(two) == 16  # 150 clips / 20 per global batch = 8 steps per epoch
    assert one == pytest.approx(two, rel=1e-5)
    final = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("one", "two")]
    assert final[1]["processes"] == 2
    for key, value in final[0]["last"].items():
        assert final[1]["last"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
