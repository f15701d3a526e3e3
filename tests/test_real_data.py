"""Acceptance on real public files (skipped unless REAL_FIXTURES names the folder)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import zarr
from conftest import ROOT


@pytest.mark.slow
def test_ssv2_mini_at_real_shapes(real_fixtures, tmp_path):
    """The README's first command: default backbones, random init, on real SSv2 clips."""
    cache = tmp_path / "C"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "extract",
            "--dataset",
            "ssv2",
            "--data-root",
            str(real_fixtures / "ssv2-mini"),
            "--split",
            "validation",
            "--cache",
            str(cache),
            "--random-init",
            "--no-progress",
        ],
        check=True,
        timeout=600,
    )
    group = zarr.open_group(str(cache), mode="r")
    assert group["semantic"].shape == (2, 196, 768) and group["semantic"].dtype == np.float16
    assert group["motion"].shape == (2, 8, 512) and group["motion"].dtype == np.float16
    names = json.loads((real_fixtures / "ssv2-mini" / "labels.json").read_text())
    entries = json.loads((real_fixtures / "ssv2-mini" / "validation.json").read_text())
    assert group["label"][:].tolist() == [int(names[e["label"]]) for e in entries]
    assert group["done"][:].all() and np.isfinite(group["semantic"][:]).all() and np.isfinite(group["motion"][:]).all()


def test_epic_frames_extract(real_fixtures, tmp_path, tiny):
    from conftest import real_epic_frames_root

    from pipeline.datasets import DataSource
    from pipeline.extract import run_extraction

    cache = tmp_path / "E"
    summary = run_extraction(
        DataSource("epic100", real_epic_frames_root(real_fixtures, tmp_path), "validation"), cache, tiny
    )
    assert (summary.extracted, summary.failed) == (2, 0)
    group = zarr.open_group(str(cache), mode="r")
    assert group["verb"][:].tolist() == [3, 0] and group["noun"][:].tolist() == [3, 13]


def test_odd_videos_through_a_manifest(real_fixtures, tmp_path, tiny):
    from pipeline.datasets import DataSource
    from pipeline.extract import run_extraction

    videos = sorted(v for v in (real_fixtures / "videos").rglob("*") if v.suffix in {".mp4", ".avi", ".webm"})
    manifest = tmp_path / "clips.csv"
    manifest.write_text(
        "path,label\n" + "".join(f"{v},{i}\n" for i, v in enumerate(videos)) + f"{tmp_path / 'gone.mp4'},0\n"
    )
    classes = tmp_path / "classes.txt"
    classes.write_text("".join(f"class {i}\n" for i in range(len(videos))))
    summary = run_extraction(DataSource("manifest", manifest, "clips", classes=classes), tmp_path / "M", tiny)
    assert (summary.extracted, summary.failed) == (len(videos), 1)
