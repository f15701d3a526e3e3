"""fuse-train / fuse-eval on synthetic feature caches whose labels need both streams."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner
from conftest import ROOT, signal_mid_epoch, small_caches

from cli import main
from fusion.data.cache_data import CacheData
from fusion.training.command import run_training
from fusion.training.config import training_config
from fusion.training.request import TrainingRequest
from pipeline.synth.features import make_feature_cache

DIMS = {"semantic": (49, 384), "motion": (4, 256)}  # not the default 196x768 / 8x512: nothing is hard-coded


@pytest.fixture(scope="module")
def ssv2_caches(tmp_path_factory):
    return small_caches(tmp_path_factory.mktemp("features"), 360, 120, dims=DIMS, shard_size=32)


@pytest.fixture(scope="module")
def resume_caches(tmp_path_factory):
    """For the exact-resume tests: 23 steps of 16 clips an epoch (so a signal lands mid-epoch), at small widths
    (what resuming restores does not depend on them)."""
    dims = {"semantic": (16, 64), "motion": (4, 32)}
    return small_caches(tmp_path_factory.mktemp("resume"), 368, 32, dims=dims, shard_size=32)


@pytest.fixture(scope="module")
def epic_caches(tmp_path_factory):
    # a weak signal, so that neither head type saturates and the comparison can go either way
    root = tmp_path_factory.mktemp("epic-features")
    return small_caches(root, 360, 120, "epic100", dims=DIMS, shard_size=32, signal=0.7)


def train(caches, model, out, epochs=5, **overrides):
    cfg = training_config("default", None, {"epochs": epochs, "data": {"batch_size": 32}, "device": "cpu", **overrides})
    return run_training(TrainingRequest(caches[0], caches[1], model, out, cfg), live=False)


def test_gasm_cast_needs_and_uses_both_streams(ssv2_caches, tmp_path):
    scores = {
        m: train(ssv2_caches, m, tmp_path / m)["best"]["value"] for m in ("gasm_cast", "semantic_only", "motion_only")
    }
    chance = 1 / 12
    assert scores["gasm_cast"] > 0.8 > 6 * chance
    assert scores["gasm_cast"] > scores["semantic_only"] + 0.3 and scores["gasm_cast"] > scores["motion_only"] + 0.3
    run = tmp_path / "gasm_cast"
    for name in ("best.pt", "last.pt", "metrics.csv", "metrics.json", "curves.png"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,lr,train_loss,val_loss,val_top1") and len(rows) == 6
    state = torch.load(run / "best.pt", weights_only=True)
    assert state["model_name"] == "gasm_cast" and state["cache"]["num_clips"] == 360
    assert state["spec"]["shapes"] == {"semantic": [49, 384], "motion": [4, 256]} and "created_with" in state


@pytest.mark.slow
def test_epic_metrics_and_cross_task_vs_independent(epic_caches, tmp_path):
    cross = train(epic_caches, "gasm_cast", tmp_path / "cross")
    independent = train(epic_caches, "gasm_cast_independent", tmp_path / "independent")
    assert cross["best"]["metric"] == "action_top1"
    assert cross["best"]["value"] >= independent["best"]["value"]
    metrics = _epic_eval(epic_caches[1], tmp_path / "cross", tmp_path / "pred.jsonl", 120)
    assert metrics["action_top1"] > 0.5


def test_epic_metrics_score_an_action_as_its_verb_and_noun_both_right(tmp_path):
    """The default tier's sibling of the comparison above, at small size: a cross-task model's fuse-eval
    metrics, every action counted right exactly when its verb and noun both are."""
    caches = small_caches(tmp_path / "c", 96, 40, "epic100", dims={"semantic": (16, 64), "motion": (4, 32)},
                          shard_size=32)  # fmt: skip
    assert train(caches, "gasm_cast", tmp_path / "cross", epochs=2)["best"]["metric"] == "action_top1"
    _epic_eval(caches[1], tmp_path / "cross", tmp_path / "pred.jsonl", 40)


def _epic_eval(cache, run, predictions, clips):
    """fuse-eval's metrics of `run` on `cache`; checks them against its own predictions file."""
    result = CliRunner().invoke(
        main,
        ["fuse-eval", "--checkpoint", str(run / "best.pt"), "--cache", str(cache), "--predictions", str(predictions)],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)["metrics"]
    for key in ("verb_top1", "verb_top5", "noun_top1", "noun_top5", "action_top1", "action_top5"):
        assert 0 <= metrics[key] <= 1
    records = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(records) == clips
    both = np.mean([r["verb_top5"][0] == r["verb"] and r["noun_top5"][0] == r["noun"] for r in records])
    assert metrics["action_top1"] == pytest.approx(both)
    return metrics


def _train_command(caches, out, *extra):
    return [
        sys.executable,
        str(ROOT / "cli.py"),
        "fuse-train",
        "--cache",
        str(caches[0]),
        "--val-cache",
        str(caches[1]),
        "--out",
        str(out),
        "--epochs",
        "4",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


def _final(out):
    return json.loads((out / "metrics.json").read_text())["last"]


@pytest.fixture(scope="module")
def uninterrupted(resume_caches, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "run"
    subprocess.run(_train_command(resume_caches, out), check=True, timeout=600, capture_output=True)
    return _final(out)


@pytest.mark.xdist_group("uninterrupted")  # one worker trains the uninterrupted run these compare with
def test_sigkill_after_an_epoch_then_resume_equals_uninterrupted(resume_caches, uninterrupted, tmp_path):
    job = subprocess.Popen(
        _train_command(resume_caches, tmp_path / "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    csv = tmp_path / "killed" / "metrics.csv"
    deadline = time.time() + 300
    while time.time() < deadline and not (csv.exists() and len(csv.read_text().splitlines()) >= 3):
        time.sleep(0.05)
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    subprocess.run(
        _train_command(resume_caches, tmp_path / "killed", "--resume"), check=True, timeout=600, capture_output=True
    )
    assert _final(tmp_path / "killed") == uninterrupted
    steps = [tuple(row.split(",")[:2]) for row in (tmp_path / "killed" / "steps.csv").read_text().splitlines()[1:]]
    assert len(steps) == len(set(steps)) == 4 * 23  # the killed epoch's steps are logged once, not twice


# SIGTERM's checkpoint and exact resume stay in the default tier through the streamed test above.
@pytest.mark.parametrize(
    ("signum", "code"), [pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow), (signal.SIGINT, 130)]
)
@pytest.mark.xdist_group("uninterrupted")
def test_signal_mid_epoch_checkpoints_and_resumes_exactly(resume_caches, uninterrupted, tmp_path, signum, code):
    signal_mid_epoch(_train_command(resume_caches, tmp_path / "term"), tmp_path / "term", signum, code)
    subprocess.run(
        _train_command(resume_caches, tmp_path / "term", "--resume"), check=True, timeout=600, capture_output=True
    )
    assert _final(tmp_path / "term") == uninterrupted


def test_streamed_mode_with_grouped_loss_readbacks_resumes_exactly(resume_caches, tmp_path):
    """Shard windows read ahead, losses read back every 5 steps: SIGTERM mid-epoch, resume, same run."""
    extra = ("--data-mode", "streamed", "--log-every", "5")
    subprocess.run(_train_command(resume_caches, tmp_path / "clean", *extra), check=True, timeout=600)
    signal_mid_epoch(_train_command(resume_caches, tmp_path / "term", *extra), tmp_path / "term", signal.SIGTERM, 143)
    subprocess.run(_train_command(resume_caches, tmp_path / "term", "--resume", *extra), check=True, timeout=600)
    assert _final(tmp_path / "term") == _final(tmp_path / "clean")
    steps = [tuple(row.split(",")[:2]) for row in (tmp_path / "term" / "steps.csv").read_text().splitlines()[1:]]
    assert len(steps) == len(set(steps)) == 4 * 23  # every step logged once, read back in groups or not


def test_bad_inputs_exit_2(ssv2_caches, tmp_path):
    runner = CliRunner()
    other = make_feature_cache(tmp_path / "other", 40, "ssv2", semantic=(16, 64), motion=(2, 32), shard_size=16)
    run = tmp_path / "run"
    train(ssv2_caches, "late_fusion", run, epochs=1)
    cases = {
        "does not fit this model": ["fuse-eval", "--checkpoint", run / "best.pt", "--cache", other],
        "corrupt": ["fuse-eval", "--checkpoint", tmp_path / "junk.pt", "--cache", ssv2_caches[1]],
        "unknown config key 'lrate'": [
            "fuse-train",
            "--cache",
            ssv2_caches[0],
            "--val-cache",
            ssv2_caches[1],
            "--out",
            tmp_path / "r",
            "--config",
            tmp_path / "bad.yaml",
        ],
        "already holds a run": ["fuse-train", "--cache", ssv2_caches[0], "--val-cache", ssv2_caches[1], "--out", run],
        "differ in shapes": ["fuse-train", "--cache", ssv2_caches[0], "--val-cache", other, "--out", tmp_path / "r2"],
        "'gasm' is not one of 'gasm_cast'": [
            "fuse-train",
            "--cache",
            ssv2_caches[0],
            "--val-cache",
            ssv2_caches[1],
            "--out",
            tmp_path / "r3",
            "--model",
            "gasm",
        ],
    }
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    (tmp_path / "bad.yaml").write_text("optim:\n  lrate: 0.1\n")
    for words, args in cases.items():
        result = runner.invoke(main, [str(a) for a in args])
        assert result.exit_code == 2, (words, result.output)
        assert words in result.output and result.output.startswith("error: "), result.output


def test_cache_stats_match_numpy_and_skip_failed_clips(tmp_path):
    cache = make_feature_cache(
        tmp_path / "c", 50, "ssv2", semantic=(9, 16), motion=(2, 8), shard_size=8, failed_rows=(3, 17)
    )
    result = CliRunner().invoke(main, ["cache", "stats", str(cache)])
    assert result.exit_code == 0, result.output
    stats = zarr.open_group(str(cache), mode="r").attrs["stats"]
    data = zarr.open_group(str(cache), mode="r")["semantic"][:].astype(np.float64)
    good = np.delete(data, [3, 17], axis=0)
    assert np.allclose(stats["semantic"]["mean"], good.mean(axis=(0, 1)))
    assert np.allclose(stats["semantic"]["std"], good.std(axis=(0, 1)))
    assert stats["semantic"]["non_finite_clips"] == 2
    loaded = CacheData(cache)
    assert len(loaded) == 48 and 3 not in loaded.rows.tolist()
    batch = next(loaded.batches(48))
    normalised = loaded.normalise("semantic", batch["semantic"].float())
    assert abs(float(normalised.mean())) < 0.05


def test_streaming_reads_every_usable_row_once_per_epoch(tmp_path):
    cache = make_feature_cache(
        tmp_path / "c", 100, "ssv2", semantic=(4, 8), motion=(2, 4), shard_size=8, failed_rows=(5,)
    )
    streamed = CacheData(cache, ram_limit_gb=0)
    assert not streamed.in_ram
    generator = torch.Generator().manual_seed(0)
    rows = torch.cat([b["row"] for b in streamed.batches(7, shuffle=True, generator=generator, shuffle_shards=3)])
    assert sorted(rows.tolist()) == [r for r in range(100) if r != 5] and rows.tolist() != sorted(rows.tolist())
    in_ram = CacheData(cache)
    batch = next(in_ram.batches(100))
    by_row = {int(r): i for i, r in enumerate(batch["row"])}
    for b in streamed.batches(10):
        for i, r in enumerate(b["row"].tolist()):
            assert torch.equal(b["semantic"][i], batch["semantic"][by_row[r]])


def count_decoded_rows(monkeypatch) -> list[int]:
    """The semantic rows each shard read decodes, appended as they are read."""
    from pipeline.cache.shards import CacheShards

    decoded: list[int] = []
    read = CacheShards.read

    def counting(self, name, shard, picks=None):
        block = read(self, name, shard, picks)
        decoded.extend([len(block)] if name == "semantic" else [])
        return block

    monkeypatch.setattr(CacheShards, "read", counting)
    return decoded


def test_each_process_streams_only_its_share_of_every_global_batch(tmp_path, monkeypatch):
    """Under DDP a streamed window is read only for the rows of this process's parts: together the processes
    read each row once, and their batches are the single-process global batches split, with the same features."""
    cache = make_feature_cache(
        tmp_path / "c", 100, "ssv2", semantic=(4, 8), motion=(2, 4), shard_size=8, failed_rows=(5,)
    )
    decoded = count_decoded_rows(monkeypatch)

    def epoch(rank: int, world: int) -> list[dict]:
        data = CacheData(cache, mode="streamed")
        generator = torch.Generator().manual_seed(4)
        return list(data.batches(10, shuffle=True, generator=generator, shuffle_shards=3, rank=rank, world=world))

    alone = epoch(0, 1)
    decoded.clear()
    ranks = []
    for rank in range(3):
        ranks.append(epoch(rank, 3))
        assert sum(decoded) == len({r for b in ranks[-1] for r in b["row"].tolist()}) < 99 / 2
        decoded.clear()
    in_ram = next(CacheData(cache).batches(100))
    by_row = {int(r): i for i, r in enumerate(in_ram["row"])}
    for step, whole in enumerate(alone):
        assert torch.cat([part[step]["row"] for part in ranks]).tolist() == whole["row"].tolist()
        for part in ranks:
            rows = [by_row[r] for r in part[step]["row"].tolist()]
            assert torch.equal(part[step]["semantic"], in_ram["semantic"][rows])


def test_resuming_mid_epoch_skips_batches_without_reading_their_windows(tmp_path, monkeypatch):
    cache = make_feature_cache(tmp_path / "c", 96, "ssv2", semantic=(4, 8), motion=(2, 4), shard_size=8)
    decoded = count_decoded_rows(monkeypatch)
    for mode in ("streamed", "ram"):
        data = CacheData(cache, mode=mode)
        generators = [torch.Generator().manual_seed(2) for _ in range(2)]
        whole = list(data.batches(8, shuffle=True, generator=generators[0], shuffle_shards=3))
        decoded.clear()
        resumed = list(data.batches(8, shuffle=True, generator=generators[1], shuffle_shards=3, skip=7))
        assert [b["row"].tolist() for b in resumed] == [b["row"].tolist() for b in whole[7:]]
        assert torch.equal(generators[0].get_state(), generators[1].get_state())  # the same draws were made
        # 3-shard windows of 24 rows = 3 batches: the first two windows are not read, the third only in part
        assert sum(decoded) == (96 - 7 * 8 if mode == "streamed" else 0)


def test_augmentation_drops_whole_tokens_and_mixes_inputs_with_their_targets(ssv2_caches, tmp_path):
    from fusion.data.config import DataConfig
    from fusion.training.objective import augment

    torch.manual_seed(0)
    inputs = {"semantic": torch.rand(256, 49, 8) + 1, "motion": torch.rand(256, 4, 8) + 1}  # no zero by chance
    labels = {"label": torch.arange(256)}
    dropped, parts = augment(inputs, labels, DataConfig(token_dropout=0.3))
    zeroed = (dropped["semantic"] == 0).all(-1)
    kept = (dropped["semantic"] == inputs["semantic"]).all(-1)
    assert bool((zeroed | kept).all()) and 0.25 < zeroed.float().mean() < 0.35  # whole tokens, at the rate asked
    assert parts == [(1.0, labels)]
    mixed, parts = augment(inputs, labels, DataConfig(mixup_alpha=0.4))
    (lam, first), (rest, second) = parts
    assert 0 < lam < 1 and lam + rest == pytest.approx(1.0) and torch.equal(first["label"], labels["label"])
    perm = second["label"]  # the labels are row numbers: the second targets name the rows mixed in
    assert sorted(perm.tolist()) == list(range(256)) and not torch.equal(perm, labels["label"])
    for name, x in inputs.items():
        assert torch.allclose(mixed[name], lam * x + rest * x[perm])
    data = {"batch_size": 32, "token_dropout": 0.3, "mixup_alpha": 0.4}
    summary = train(ssv2_caches, "late_fusion", tmp_path / "aug", epochs=1, data=data)
    plain = train(ssv2_caches, "late_fusion", tmp_path / "plain", epochs=1, data={"batch_size": 32})
    assert np.isfinite(summary["last"]["train_loss"]) and summary["last"]["train_loss"] != plain["last"]["train_loss"]


def test_visualize_draws_over_the_centre_frame_of_an_extracted_clip(ssv2_root, tmp_path, tiny):
    from fusion.evaluation.visualize import _centre_frame
    from pipeline.datasets import DataSource
    from pipeline.extract import run_extraction

    cache = tmp_path / "cache"
    run_extraction(DataSource("ssv2", ssv2_root, "validation"), cache, tiny)
    group = zarr.open_group(str(cache), mode="r")
    frame = _centre_frame(dict(group.attrs), str(group["clip_id"][0]), None)
    assert frame is not None and frame.shape == (224, 224, 3) and frame.std() > 0
    run = tmp_path / "run"
    cfg = training_config("default", None, {"epochs": 1, "device": "cpu"})
    run_training(TrainingRequest(cache, cache, "gasm_cast", run, cfg, allow_same_clips=True), False)
    result = CliRunner().invoke(
        main, ["visualize", "--checkpoint", str(run / "best.pt"), "--cache", str(cache), "--out", str(tmp_path / "png")]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "png").glob("*.png")) == [
        "fusion_layers.png",
        "motion_graph.png",
        "semantic_graph.png",
    ]


def test_device_and_ram_modes_train_identically_and_streaming_reads_ahead(ssv2_caches, tmp_path):
    """The device mode (tested with the CPU as the device) gathers batches from tensors, the RAM mode from arrays:
    the same seed gives the same training. Streamed windows are read by a background thread: every row once."""
    runs = {
        mode: train(ssv2_caches, "late_fusion", tmp_path / mode, epochs=2, data={"batch_size": 32, "mode": mode})
        for mode in ("device", "ram")
    }
    assert runs["device"]["last"] == runs["ram"]["last"]
    streamed = CacheData(ssv2_caches[0], mode="streamed")
    rows = torch.cat([b["row"] for b in streamed.batches(32, shuffle=True, generator=torch.Generator().manual_seed(1))])
    assert streamed.mode == "streamed" and sorted(rows.tolist()) == streamed.rows.tolist()
    assert streamed.features is None  # nothing held: windows are read as batches need them
    on_device, in_ram = CacheData(ssv2_caches[0], mode="device"), CacheData(ssv2_caches[0], mode="ram")
    assert all(isinstance(x, torch.Tensor) for x in on_device.features.values())
    assert all(isinstance(x, np.ndarray) for x in in_ram.features.values())
