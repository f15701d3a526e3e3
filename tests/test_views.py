"""Multi-view caches: crops along the long side and offset sampling grids per clip, one view drawn per training
step, every view's softmax averaged in evaluation; a one-view cache is what it always was."""

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner
from conftest import ROOT, real_epic_frames_root, signal_mid_epoch, small_caches, tiny_config

from cli import main
from fusion.data.cache_data import CacheData
from fusion.data.views import average_views
from pipeline.datasets import DataSource
from pipeline.extract import run_extraction
from pipeline.video.frames import square_crops
from pipeline.video.sampling import temporal_offsets, uniform_indices


def test_temporal_grids_spread_evenly_and_the_first_is_the_centred_one():
    assert temporal_offsets(1) == [0.5]
    assert temporal_offsets(2) == [0.5, 0.0]
    assert temporal_offsets(3) == pytest.approx([0.5, 5 / 6, 1 / 6])
    for available in (1, 7, 30, 31, 200):  # the centred grid is the segment centres, as before views
        old = np.minimum(((np.arange(8) + 0.5) * available / 8).astype(np.int64), available - 1)
        assert uniform_indices(available, 8).tolist() == old.tolist()
    grids = [uniform_indices(40, 4, offset) for offset in temporal_offsets(2)]
    assert grids[0].tolist() == [5, 15, 25, 35] and grids[1].tolist() == [0, 10, 20, 30]


def test_spatial_views_are_squares_along_the_long_side_centre_first():
    landscape = np.arange(4 * 10 * 3).reshape(4, 10, 3)
    crops = square_crops(landscape, 4, 3)
    assert crops.shape == (3, 4, 4, 3)
    for crop, left in zip(crops, (3, 0, 6)):  # centre, left, right
        assert (crop == landscape[:, left : left + 4]).all()
    portrait = landscape.transpose(1, 0, 2)
    for crop, top in zip(square_crops(portrait, 4, 3), (3, 0, 6)):  # centre, top, bottom
        assert (crop == portrait[top : top + 4]).all()
    assert (square_crops(landscape, 4, 1)[0] == crops[0]).all()


def _views_config(spatial: int, temporal: int):
    cfg = tiny_config()
    cfg.sampling.spatial_views, cfg.sampling.temporal_views = spatial, temporal
    return cfg


def _check_views(one: zarr.Group, six: zarr.Group) -> None:
    """`six` holds 3 x 2 views of `one`'s clips, the first of them its features bit for bit, the others not."""
    assert dict(six.attrs)["backbones"]["semantic"]["views"] == {"spatial": 3, "temporal": 2}
    assert "views" not in dict(one.attrs)["backbones"]["semantic"]
    for name in ("semantic", "motion"):
        first, views = one[name][:], six[name][:]
        tokens = first.shape[1]
        assert views.shape == (first.shape[0], 6 * tokens, first.shape[2])
        assert np.array_equal(views[:, :tokens], first)
        for v in range(1, 6):
            assert not np.array_equal(views[:, v * tokens : (v + 1) * tokens], first)


def test_views_extract_and_the_first_is_the_one_view_cache(ssv2_root, tmp_path, caplog):
    source = DataSource("ssv2", ssv2_root, "validation", limit=3)
    run_extraction(source, tmp_path / "one", tiny_config())
    caplog.clear()
    with caplog.at_level("INFO"):
        run_extraction(source, tmp_path / "six", _views_config(3, 2))
    size = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("cache size:"))
    # each number says what it counts: a view (26 KB), the cache (470 KB), a clip (157 KB), one view of each clip
    assert size.startswith("cache size: 3 clips x 6 views x 26 KB a view (semantic 196x64, motion 8x64 a view, "
                           "float16) = 470 KB in all (157 KB a clip, 78 KB a view of every clip)"), size  # fmt: skip
    _check_views(zarr.open_group(str(tmp_path / "one"), mode="r"), zarr.open_group(str(tmp_path / "six"), mode="r"))


def test_real_clips_odd_videos_and_epic_frames_extract_three_by_two_views(real_fixtures, tmp_path):
    videos = sorted(v for v in (real_fixtures / "videos").rglob("*") if v.suffix in {".mp4", ".avi", ".webm"})
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,label\n" + "".join(f"{v},0\n" for v in videos))
    (tmp_path / "classes.txt").write_text("one\n")
    sources = {
        "ssv2": DataSource("ssv2", real_fixtures / "ssv2-mini", "train"),
        "odd": DataSource("manifest", manifest, "clips", classes=tmp_path / "classes.txt"),
        "epic": DataSource("epic100", real_epic_frames_root(real_fixtures, tmp_path), "validation"),
    }
    for name, source in sources.items():
        for views, cfg in (("one", tiny_config()), ("six", _views_config(3, 2))):
            summary = run_extraction(source, tmp_path / name / views, cfg)
            assert summary.failed == 0 and summary.extracted == summary.clips > 0, name
        one, six = (zarr.open_group(str(tmp_path / name / views), mode="r") for views in ("one", "six"))
        if name == "epic":  # one-frame segments: every temporal view samples the same frame; crops still differ
            tokens = one["semantic"].shape[1]
            semantic = six["semantic"][:]
            assert np.array_equal(semantic[:, :tokens], one["semantic"][:])
            assert np.array_equal(semantic[:, tokens : 2 * tokens], semantic[:, :tokens])  # temporal view 2
            assert not np.array_equal(semantic[:, 2 * tokens : 3 * tokens], semantic[:, :tokens])  # a side crop
        else:
            _check_views(one, six)


def test_a_one_view_cache_reads_as_before_and_draws_nothing(tmp_path):
    train, _ = small_caches(tmp_path, 40, 8)
    data = CacheData(train)
    assert data.spec.views == 1
    generators = [torch.Generator().manual_seed(3) for _ in range(3)]
    runs = [
        list(data.batches(8, shuffle=True, generator=g, views=v))
        for g, v in zip(generators, ("random", "first", "all"))
    ]
    for batches in runs[1:]:
        for a, b in zip(runs[0], batches):
            assert torch.equal(a["semantic"], b["semantic"]) and torch.equal(a["row"], b["row"]) and b["views"] == 1
    assert all(torch.equal(generators[0].get_state(), g.get_state()) for g in generators[1:])


def test_training_reads_one_view_a_clip_and_evaluation_all_of_them(tmp_path):
    train, _ = small_caches(tmp_path, 40, 8, views=3)
    data = CacheData(train)
    assert data.spec.views == 3 and data.spec.shapes["semantic"] == (16, 32)
    stored = zarr.open_group(str(train), mode="r")["semantic"][:].reshape(40, 3, 16, 32)
    batch = next(data.batches(40, shuffle=True, generator=torch.Generator().manual_seed(0), views="random"))
    assert batch["semantic"].shape == (40, 16, 32) and batch["views"] == 1
    drawn = [
        next(v for v in range(3) if np.array_equal(stored[r, v], x))
        for r, x in zip(batch["row"], batch["semantic"].numpy())
    ]
    assert set(drawn) == {0, 1, 2}  # every view is drawn for some clip
    first = next(data.batches(40, views="first"))
    assert np.array_equal(first["semantic"].numpy(), stored[:, 0])
    every = next(data.batches(40))
    assert every["views"] == 3
    inputs = data.model_inputs(every, torch.device("cpu"))
    assert inputs["semantic"].shape == (120, 16, 32)  # each clip's views one after another
    assert torch.equal(inputs["semantic"][1], torch.from_numpy(stored[0, 1]).float())


def test_every_data_mode_reads_drawn_views(tmp_path):
    """Device and RAM modes draw the same views (they train identically); streaming, whose order is its own,
    reads for each clip one of its stored views, and not always the first."""
    train, _ = small_caches(tmp_path, 40, 8, views=3, shard_size=8)
    stored = zarr.open_group(str(train), mode="r")["motion"][:].reshape(40, 3, 4, 16)
    runs = {}
    for mode in ("device", "ram", "streamed"):
        data = CacheData(train, mode=mode, device=torch.device("cpu"))
        assert data.mode == mode
        batches = data.batches(8, shuffle=True, generator=torch.Generator().manual_seed(5), shuffle_shards=2,
                               views="random")  # fmt: skip
        runs[mode] = [(b["row"], b["semantic"], b["motion"]) for b in batches]
    for a, b in zip(runs["device"], runs["ram"]):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    drawn = [
        next(v for v in range(3) if np.array_equal(stored[row, v], x))
        for rows, _, motion in runs["streamed"]
        for row, x in zip(rows.tolist(), motion.numpy())
    ]
    assert len(drawn) == 40 and set(drawn) == {0, 1, 2}


def test_views_average_their_probabilities():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])  # 2 clips x 2 views
    averaged, first = average_views({"logits": logits}, 2)
    expected = logits.softmax(-1).view(2, 2, 2).mean(1)
    assert torch.allclose(averaged["logits"].softmax(-1), expected) and torch.equal(first["logits"], logits[[0, 2]])
    confident = torch.tensor([[200.0, 0.0], [300.0, 0.0]])  # the second class's probability underflows to 0
    assert torch.isfinite(average_views({"logits": confident}, 2)[0]["logits"]).all()


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_noisy_views_averaged_beat_one_view_and_fuse_eval_reports_both(tmp_path):
    train, val = small_caches(tmp_path, 256, 192, views=4, signal=1.0)  # measured: 0.28 averaged, 0.18 one view
    _run("fuse-train", "--cache", train, "--val-cache", val, "--model", "late_fusion", "--out", tmp_path / "run",
         "--epochs", 10, "--lr", 3e-3, "--batch-size", 32, "--device", "cpu", "--no-progress")  # fmt: skip
    best = json.loads((tmp_path / "run" / "metrics.json").read_text())["best"]
    assert best["val_top1"] > best["val_single_view_top1"]
    result = json.loads(_run("fuse-eval", "--checkpoint", tmp_path / "run" / "best.pt", "--cache", val).stdout)
    assert result["views"] == 4
    assert (
        result["metrics"]["top1"] == best["val_top1"]
        and result["single_view_metrics"]["top1"] == best["val_single_view_top1"]
    )
    assert result["metrics"]["top1"] >= result["single_view_metrics"]["top1"] + 0.05


def _train_command(caches, out, *extra):
    return [sys.executable, str(ROOT / "cli.py"), "fuse-train", "--cache", str(caches[0]), "--val-cache",
            str(caches[1]), "--out", str(out), "--epochs", "3", "--batch-size", "8", "--device", "cpu",
            "--views", "random", "--no-progress", *extra]  # fmt: skip


def test_random_views_resume_exactly_after_sigterm_mid_epoch(tmp_path):
    caches = small_caches(tmp_path, 160, 16, views=3)
    subprocess.run(_train_command(caches, tmp_path / "clean"), check=True, timeout=600, capture_output=True)
    signal_mid_epoch(_train_command(caches, tmp_path / "term"), tmp_path / "term", signal.SIGTERM, 143, delay=0.3)
    subprocess.run(_train_command(caches, tmp_path / "term", "--resume"), check=True, timeout=600, capture_output=True)
    final = [json.loads((tmp_path / run / "metrics.json").read_text())["last"] for run in ("clean", "term")]
    assert final[0] == final[1]
