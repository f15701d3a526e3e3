"""Selection on a held-out part of the training cache: the validation labels never choose an epoch or a
configuration, every metrics file and report names the clips that chose, and the holdout is the same for
every run on a cache."""

import json
import shutil

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from conftest import SMALL_DIMS

from cli import main
from fusion.data.holdout import stratified_holdout
from pipeline.synth.features import make_feature_cache


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("caches")
    train = make_feature_cache(root / "train", 96, "ssv2", **SMALL_DIMS, shard_size=32)
    val = make_feature_cache(root / "val", 48, "ssv2", **SMALL_DIMS, split="validation", shard_size=16)
    shuffled = shutil.copytree(val, root / "val-shuffled")
    labels = zarr.open_group(str(shuffled), mode="r+")["label"]
    labels[:] = np.random.default_rng(1).permutation(labels[:])
    return train, val, shuffled


def _train(train, val, out, *extra):
    args = ["fuse-train", "--cache", train, "--val-cache", val, "--out", out, "--model", "late_fusion",
            "--batch-size", 16, "--device", "cpu", "--no-progress", "--epochs", 5, "--lr", "3e-3", *extra]  # fmt: skip
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


def test_the_holdout_is_fixed_stratified_and_leaves_single_clip_classes_to_training():
    rows = np.arange(40)
    labels = np.repeat([0, 1, 2, 3], [20, 10, 9, 1])
    held = stratified_holdout(rows, labels, 0.1)
    assert np.array_equal(held, stratified_holdout(rows, labels, 0.1))
    assert np.bincount(labels[held], minlength=4).tolist() == [2, 1, 1, 0]


def test_shuffling_the_validation_labels_changes_no_selected_epoch(caches, tmp_path):
    train, val, shuffled = caches
    runs = [_train(train, v, tmp_path / name, "--select-on", "holdout") for name, v in (("a", val), ("b", shuffled))]
    assert runs[0]["selected_on"] == runs[0]["best"]["selected_on"] == "holdout"
    labels = zarr.open_group(str(train), mode="r")["label"][:]
    assert runs[0]["data"]["train"]["held_out"] == len(stratified_holdout(np.arange(96), labels, 0.1)) > 0
    assert runs[0]["best"]["epoch"] == runs[1]["best"]["epoch"]
    assert runs[0]["best"]["value"] == runs[1]["best"]["value"] == runs[0]["best"]["holdout_top1"]
    assert runs[0]["best"]["val_top1"] != runs[1]["best"]["val_top1"]  # the labels did change what is reported
    plain = _train(train, val, tmp_path / "c")
    assert plain["selected_on"] == "validation" and "holdout_top1" not in plain["best"]


def test_a_sweep_chooses_configurations_on_the_holdout_and_says_so(caches, tmp_path):
    train, val, shuffled = caches
    spec = tmp_path / "grid.yaml"
    spec.write_text("base: {model: late_fusion, overrides: {data: {batch_size: 16}}}\n"
                    "axes: {optim.lr: [1.0e-4, 3.0e-3]}\nseeds: [0]\n")  # fmt: skip
    chosen = []
    for name, v in (("a", val), ("b", shuffled)):
        args = ["sweep", "--spec", str(spec), "--cache", str(train), "--val-cache", str(v), "--out",
                str(tmp_path / name), "--epochs", "3", "--no-progress"]  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        report = (tmp_path / name / "report.md").read_text()
        assert "chosen on its holdout (a fixed, class-stratified part of the training cache" in report
        best = report.split("## Best configuration of each model")[1]
        assert "Chosen by the mean holdout_top1" in best
        chosen.append([line.split("|")[2].strip() for line in best.splitlines() if line.startswith("| late_fusion")])
    assert chosen[0] == chosen[1] and len(chosen[0]) == 1


def test_every_class_of_two_clips_or_more_is_in_the_holdout():
    """round(0.1 * n) is 0 for a class of 2 to 4 clips: such classes still hold out one, so rare classes count
    in the choice; a class of one clip keeps it for training."""
    sizes = {0: 1, 1: 2, 2: 3, 3: 5, 4: 20}
    labels = np.concatenate([np.full(n, c) for c, n in sizes.items()])
    rows = np.arange(len(labels))
    held = stratified_holdout(rows, labels, 0.1)
    counts = {c: int((labels[held] == c).sum()) for c in sizes}
    assert counts == {0: 0, 1: 1, 2: 1, 3: 1, 4: 2}
    assert np.array_equal(held, np.sort(held)) and np.array_equal(held, stratified_holdout(rows, labels, 0.1))
