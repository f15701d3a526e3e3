"""Shared test fixtures: tiny backbones, small synthetic datasets, and the optional real-data folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.paths import PROJECT_ROOT as ROOT  # noqa: F401 - the tests' one name for it
from pipeline.extract_config import ExtractConfig

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel workers share the cores: one compute thread each (and in the processes they start), or every
    # worker's torch would spread over all cores and the workers would slow each other down several times.
    import torch

    os.environ["OMP_NUM_THREADS"] = os.environ.get("GASM_TEST_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def tiny_config(**run: object) -> ExtractConfig:
    """2-layer 64-wide DINOv3 (same token layout) + 1/8-width I3D, random init, small shards."""
    cfg = ExtractConfig()
    cfg.backbones.semantic, cfg.backbones.motion, cfg.backbones.random_init = "dinov3_tiny", "i3d_tiny", True
    cfg.run.batch_size, cfg.run.workers, cfg.run.shard_size, cfg.run.device = 2, 0, 2, "cpu"
    for key, value in run.items():
        setattr(cfg.run, key, value)
    return cfg


@pytest.fixture
def tiny() -> ExtractConfig:
    return tiny_config()


@pytest.fixture(scope="session")
def ssv2_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synth.ssv2 import make_ssv2

    return make_ssv2(tmp_path_factory.mktemp("ssv2"), train=12, validation=6, test=2, seed=1)


@pytest.fixture(scope="session")
def epic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synth.epic100 import make_epic100

    return make_epic100(tmp_path_factory.mktemp("epic"), train=6, validation=5, seed=2)


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    """The shared folder of real public data; tests using it skip where REAL_FIXTURES is unset."""
    folder = os.environ.get("REAL_FIXTURES")
    if not folder or not Path(folder).is_dir():
        pytest.skip("REAL_FIXTURES is not set to the folder of real test data")
    return Path(folder)


SMALL_DIMS = {"semantic": (16, 32), "motion": (4, 16)}


def small_caches(
    root: Path,
    train: int,
    validation: int,
    kind: str = "ssv2",
    dims: dict[str, tuple[int, int]] = SMALL_DIMS,
    shard_size: int = 16,
    failed_rows: tuple[int, ...] = (),
    **options: Any,
) -> tuple[Path, Path]:
    """A training and a validation feature cache of one synthetic task (small shapes by default) in ROOT/train and
    ROOT/val; `failed_rows` of the training cache failed; `options` (signal, seed) of make_feature_cache for both."""
    from pipeline.synth.features import make_feature_cache

    common = {**dims, "shard_size": shard_size, **options}
    train_cache = make_feature_cache(root / "train", train, kind, **common, failed_rows=failed_rows)
    val = make_feature_cache(root / "val", validation, kind, **common, split="validation")
    return train_cache, val


def arrays_and_attrs(cache: Path) -> tuple[dict, dict]:
    """Every array of a cache, read whole, and its attributes."""
    import zarr

    group = zarr.open_group(str(cache), mode="r")
    return {name: group[name][:] for name in sorted(group.array_keys())}, dict(group.attrs)


def assert_same_cache(a: Path, b: Path) -> None:
    """Two caches hold the same arrays (NaN rows alike) and the same failure records."""
    import numpy as np

    from pipeline.cache.reader import read_failures

    (left, _), (right, _) = arrays_and_attrs(a), arrays_and_attrs(b)
    assert left.keys() == right.keys()
    for name in left:
        assert np.array_equal(left[name], right[name], equal_nan=left[name].dtype.kind == "f"), name
    assert read_failures(a) == read_failures(b)


def real_epic_frames_root(real_fixtures: Path, tmp_path: Path) -> Path:
    """The real class lists and P28_101 frames (80..115 step 5) with a validation CSV of two one-frame segments."""
    annotations = real_fixtures / "epic100" / "annotations"
    root = tmp_path / "epic"
    (root / "annotations").mkdir(parents=True)
    for kind in ("verb", "noun"):
        (root / "annotations" / f"EPIC_100_{kind}_classes.csv").symlink_to(annotations / f"EPIC_100_{kind}_classes.csv")
    (root / "P28").symlink_to(real_fixtures / "epic100" / "frames" / "P28")
    header = (annotations / "EPIC_100_validation.csv").read_text().splitlines()[0]
    rows = [
        "P28_101_0,P28,P28_101,00:00:01.60,00:00:01.58,00:00:01.62,80,80,open door,open,3,door,3,['door'],[3]",
        "P28_101_1,P28,P28_101,00:00:02.30,00:00:02.28,00:00:02.32,115,115,take cup,take,0,cup,13,['cup'],[13]",
    ]
    (root / "annotations" / "EPIC_100_validation.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def signal_mid_epoch(command: list[str], out: Path, signum: int, code: int, delay: float = 0.5) -> None:
    """Start a fuse-train `command` writing to `out`, send it `signum` once its first epoch is logged (`delay`
    seconds into the second), and check it exited with `code` after checkpointing mid-epoch."""
    import subprocess
    import time

    import torch

    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    csv = out / "metrics.csv"
    deadline = time.time() + 300
    while time.time() < deadline and not csv.exists():
        time.sleep(0.05)
    time.sleep(delay)
    job.send_signal(signum)
    assert job.wait(timeout=120) == code
    assert torch.load(out / "last.pt", weights_only=True)["position"]["batches_done"] > 0
