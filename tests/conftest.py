"""Shared test fixtures: tiny backbones, small synthetic datasets, and the optional real-data folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pipeline.extract_config import ExtractConfig


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
    return {name: group[name][:] for name in group.array_keys()}, dict(group.attrs)
