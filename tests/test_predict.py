"""`cli predict` on raw videos gives what `cli fuse-eval` gives on the same videos' cached features; `cli export`
hands the model on in one file; bad inputs are one line, bad videos one row."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import zarr
from click.testing import CliRunner
from conftest import tiny_config

from cli import main
from fusion.training.command import run_training
from fusion.training.config import training_config
from fusion.training.request import TrainingRequest
from pipeline.cache.stats import compute_stats
from pipeline.datasets import DataSource
from pipeline.extract import run_extraction


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def records(path: Path) -> dict[str, dict]:
    return {r["clip_id"]: r for r in map(json.loads, path.read_text().splitlines())}


def extracted_run(
    dataset: str,
    root: Path,
    tmp: Path,
    model: str = "gasm_cast",
    frames: bool = False,
    views: bool = False,
    backbones: tuple[str, str] = ("dinov3_tiny", "i3d_tiny"),
) -> Path:
    """Caches of the train and validation splits (tiny random-init `backbones`, semantic and motion,
    normalisation statistics on the training cache; `frames`: 4 frames' patch maps kept, pooled 2x2; `views`:
    3 crops x 2 grids a clip) and a run trained on them."""
    cfg = tiny_config()
    cfg.backbones.semantic, cfg.backbones.motion = backbones
    if frames:
        cfg.sampling.semantic_reduce, cfg.sampling.semantic_frames, cfg.sampling.semantic_pool = "frames", 4, 2
    if views:
        cfg.sampling.spatial_views, cfg.sampling.temporal_views = 3, 2
    for split in ("train", "validation"):
        run_extraction(DataSource(dataset, root, split), tmp / split, cfg)
    compute_stats(tmp / "train")
    cfg = training_config("default", None, {"epochs": 2, "device": "cpu", "data": {"batch_size": 4}})
    run_training(TrainingRequest(tmp / "train", tmp / "validation", model, tmp / "run", cfg), live=False)
    return tmp / "run" / "best.pt"


@pytest.fixture(scope="module")
def ssv2_run(ssv2_root, tmp_path_factory):
    return extracted_run("ssv2", ssv2_root, tmp_path_factory.mktemp("ssv2-run"))


@pytest.fixture(scope="module")
def ssv2_frames_run(ssv2_root, tmp_path_factory):
    return extracted_run("ssv2", ssv2_root, tmp_path_factory.mktemp("ssv2-frames-run"), frames=True)


@pytest.fixture(scope="module")
def ssv2_views_run(ssv2_root, tmp_path_factory):
    return extracted_run("ssv2", ssv2_root, tmp_path_factory.mktemp("ssv2-views-run"), views=True)


@pytest.fixture(scope="module")
def ssv2_vjepa2_motion_run(ssv2_root, tmp_path_factory):
    """V-JEPA 2 as the motion stream (each tubelet step's spatial mean) beside DINOv3's frame-mean patches."""
    return extracted_run("ssv2", ssv2_root, tmp_path_factory.mktemp("vjepa2-motion"), backbones=("dinov3_tiny",
                         "vjepa2_tiny"))  # fmt: skip


@pytest.fixture(scope="module")
def ssv2_vjepa2_spacetime_run(ssv2_root, tmp_path_factory):
    """V-JEPA 2's space-time patch tokens as the semantic stream (a grid a tubelet step, pooled 2x2) beside I3D."""
    return extracted_run("ssv2", ssv2_root, tmp_path_factory.mktemp("vjepa2-spacetime"), frames=True,
                         backbones=("vjepa2_tiny", "i3d_tiny"))  # fmt: skip


LAYOUTS = ["ssv2_run", "ssv2_frames_run", "ssv2_views_run", "ssv2_vjepa2_motion_run", "ssv2_vjepa2_spacetime_run"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_predict_on_videos_equals_fuse_eval_on_their_cached_features(ssv2_root, layout, tmp_path, request):
    ssv2_run = request.getfixturevalue(layout)
    if layout == "ssv2_vjepa2_motion_run":  # 16 frames -> 8 tubelet steps of 64 wide
        assert zarr.open_group(str(ssv2_run.parents[1] / "validation"), mode="r")["motion"].shape[1:] == (8, 64)
    if layout == "ssv2_vjepa2_spacetime_run":  # 4 frames -> 2 steps of 8x8 patches pooled to 4x4
        validation = zarr.open_group(str(ssv2_run.parents[1] / "validation"), mode="r")
        assert validation["semantic"].shape[1:] == (2 * 16, 64)
        semantic = validation.attrs["backbones"]["semantic"]
        assert (semantic["frames"], semantic["steps"], semantic["grid"], semantic["tubelet"]) == (4, 2, 4, 2)
    if layout == "ssv2_frames_run":  # the cache kept time: 4 frames of 7x7 pooled patches
        assert zarr.open_group(str(ssv2_run.parents[1] / "validation"), mode="r")["semantic"].shape[1] == 4 * 49
    if layout == "ssv2_views_run":  # 6 views a clip: fuse-eval and predict average their softmax
        assert zarr.open_group(str(ssv2_run.parents[1] / "validation"), mode="r")["semantic"].shape[1] == 6 * 196
    cached = tmp_path / "cached.jsonl"
    assert run("fuse-eval", "--checkpoint", ssv2_run, "--cache", ssv2_run.parents[1] / "validation",
               "--predictions", cached).exit_code == 0  # fmt: skip
    out = tmp_path / "p.jsonl"
    args = ["--checkpoint", ssv2_run, "--dataset", "ssv2", "--data-root", ssv2_root, "--split", "validation"]
    result = run("predict", *args, "--workers", 0, "--device", "cpu", "--out", out, "--attention", tmp_path / "att")
    assert result.exit_code == 0, result.output
    assert "6 of 6 clips predicted; top-1" in result.output
    predicted, expected = records(out), records(cached)
    assert predicted.keys() == expected.keys()
    for clip_id, record in predicted.items():
        assert [item["id"] for item in record["top5"]] == expected[clip_id]["label_top5"]
        assert [item["prob"] for item in record["top5"]] == pytest.approx(
            expected[clip_id]["label_top5_scores"], abs=1e-3
        )
        assert record["label"] == expected[clip_id]["label"] and record["top5"][0]["name"]
        assert {p.name for p in (tmp_path / "att" / clip_id).iterdir()} == {
            "semantic_graph.png", "motion_graph.png", "fusion_layers.png"}  # fmt: skip


def test_export_then_predict_from_the_file_alone(ssv2_root, ssv2_run, tmp_path):
    model = tmp_path / "model.pt"
    assert run("export", "--checkpoint", ssv2_run, "--out", model).exit_code == 0
    package = torch.load(model, weights_only=True)
    assert package["format"] == "gasm-cast-model" and package["spec"]["label_names"]["label"]
    assert package["trained_on"]["best"]["metric"] == "top1" and "optimizer" not in package
    videos = sorted((ssv2_root / "videos").glob("*.webm"))[:3]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.csv"
    assert run("predict", "--model", model, *videos, "--workers", 0, "--out", a).exit_code == 0
    assert run("predict", "--checkpoint", ssv2_run, *videos, "--workers", 0, "--out", b).exit_code == 0
    assert [r["top5"] for r in records(a).values()] == [
        [{"id": int(row[f"top_{k}_id"]), "name": row[f"top_{k}_name"], "prob": float(row[f"top_{k}_prob"])}
         for k in range(1, 6)] for row in __import__("csv").DictReader(b.open())]  # fmt: skip


def test_bad_videos_are_rows_and_bad_inputs_are_one_line(ssv2_root, ssv2_run, tmp_path):
    video = sorted((ssv2_root / "videos").glob("*.webm"))[0]
    out = tmp_path / "p.jsonl"
    result = run("predict", "--checkpoint", ssv2_run, video, tmp_path / "gone.webm", "--workers", 0, "--out", out)
    assert result.exit_code == 1, result.output
    failed = records(out)[str(tmp_path / "gone.webm")]
    assert failed["status"] == "failed" and "does not exist" in failed["error"]
    assert records(out)[str(video)]["status"] == "ok"
    (tmp_path / "empty").mkdir()
    model = tmp_path / "model.pt"
    run("export", "--checkpoint", ssv2_run, "--out", model)
    newer = torch.load(model, weights_only=True)
    newer["version"] = 2
    torch.save(newer, tmp_path / "newer.pt")
    cases = {
        "holds no video files": ["--checkpoint", ssv2_run, tmp_path / "empty"],
        "is a model file of version 2": ["--model", tmp_path / "newer.pt", video],
        "pass exactly one of --checkpoint": ["--checkpoint", ssv2_run, "--model", model, video],
        "nothing to predict": ["--checkpoint", ssv2_run],
        "expected a .jsonl or .csv": ["--checkpoint", ssv2_run, video, "--out", tmp_path / "p.txt"],
        "they are rebuilt from the seed": ["--checkpoint", ssv2_run, video, "--semantic-weights", video],
    }
    for words, args in cases.items():
        result = run("predict", *args)
        assert result.exit_code == 2 and result.output.startswith("error: ") and words in result.output, (
            words,
            result.output,
        )


def test_weights_are_checked_against_the_recorded_sha256(tmp_path):
    from fusion.prediction.complete_model import resolve_weights
    from pipeline.core.errors import UserError
    from pipeline.core.provenance import sha256_of

    weights = tmp_path / "w.pyth"
    weights.write_bytes(b"some weights")
    recorded = {"weights": str(weights), "weights_sha256": sha256_of(weights)}
    assert resolve_weights(recorded, None, "--motion-weights", False) == str(weights)
    other = tmp_path / "other.pyth"
    other.write_bytes(b"other weights")
    with pytest.raises(UserError, match="has sha256 .* but the training cache was made with"):
        resolve_weights(recorded, str(other), "--motion-weights", False)
    assert resolve_weights(recorded, str(other), "--motion-weights", True) == str(other)
    weights.unlink()
    with pytest.raises(UserError, match="pass the weights the training cache was made with"):
        resolve_weights(recorded, None, "--motion-weights", False)


def test_models_of_synthetic_features_cannot_run_on_video(tmp_path):
    from pipeline.synth.features import make_feature_cache

    cache = make_feature_cache(tmp_path / "c", 20, "ssv2", semantic=(16, 32), motion=(4, 16))
    cfg = training_config("default", None, {"epochs": 1, "device": "cpu", "data": {"batch_size": 8}})
    run_training(TrainingRequest(cache, cache, "late_fusion", tmp_path / "run", cfg, allow_same_clips=True), False)
    result = run("predict", "--checkpoint", tmp_path / "run" / "best.pt", tmp_path)
    assert result.exit_code == 2 and "trained on features of no registered backbone" in result.output


def test_epic_frame_folders_give_verb_noun_and_action_names(epic_root, tmp_path):
    checkpoint = extracted_run("epic100", epic_root, tmp_path, model="late_fusion")
    out = tmp_path / "p.jsonl"
    result = run("predict", "--checkpoint", checkpoint, "--dataset", "epic100", "--data-root", epic_root, "--split",
                 "validation", "--workers", 0, "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    first = next(iter(records(out).values()))
    assert len(first["verb_top5"]) == 4 and first["verb_top5"][0]["name"] in (
        "move-right",
        "move-left",
        "lift",
        "lower",
    )
    action = first["action_top5"][0]
    assert action["id"] == action["verb"] * 1000 + action["noun"] and " " in action["name"]
    assert "action_name" in first and isinstance(first["correct"], bool)


def test_real_clips_and_odd_videos(real_fixtures, tmp_path):
    root = real_fixtures / "ssv2-mini"
    checkpoint = extracted_run("ssv2", root, tmp_path)
    cached = tmp_path / "cached.jsonl"
    assert run("fuse-eval", "--checkpoint", checkpoint, "--cache", tmp_path / "validation", "--predictions",
               cached).exit_code == 0  # fmt: skip
    out = tmp_path / "p.jsonl"
    assert run("predict", "--checkpoint", checkpoint, "--dataset", "ssv2", "--data-root", root, "--workers", 0,
               "--out", out).exit_code == 0  # fmt: skip
    for clip_id, record in records(out).items():
        assert [item["id"] for item in record["top5"]] == records(cached)[clip_id]["label_top5"]
    odd = tmp_path / "odd"
    shutil.copytree(real_fixtures / "videos" / "edge_cases", odd)
    result = run("predict", "--checkpoint", checkpoint, odd, "--workers", 0, "--out", tmp_path / "odd.jsonl")
    assert result.exit_code == 0, result.output
    assert all(r["status"] == "ok" for r in records(tmp_path / "odd.jsonl").values())
