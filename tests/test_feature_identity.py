"""Numbers are never mixed across features or clips: a validation or evaluation cache of other features is refused
naming the difference (or allowed and recorded), the training cache is never its own validation or test set,
compare refuses runs over different caches, and benchmark files answer every clip or say they do not."""

import json
import zipfile

import pytest
from click.testing import CliRunner
from conftest import SMALL_DIMS, small_caches

from cli import main
from pipeline.synth.features import make_feature_cache


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("caches")
    train, val = small_caches(root, 48, 16)
    return {
        "train": train,
        "val": val,
        "other": make_feature_cache(
            root / "other", 16, "ssv2", **SMALL_DIMS, split="validation", shard_size=16, seed=1
        ),
        "test": make_feature_cache(root / "test", 12, "ssv2", **SMALL_DIMS, split="test", shard_size=16),
    }


def _train(train, val, out, *extra):
    args = ["fuse-train", "--cache", train, "--val-cache", val, "--out", out, "--model", "late_fusion",
            "--batch-size", 16, "--device", "cpu", "--no-progress", "--epochs", 1, *extra]  # fmt: skip
    return CliRunner().invoke(main, [str(a) for a in args])


def _last_line(result) -> str:
    return result.output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def trained(caches, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert _train(caches["train"], caches["val"], out).exit_code == 0
    return out


def test_a_validation_cache_of_other_features_is_refused_naming_the_difference(caches, tmp_path):
    result = _train(caches["train"], caches["other"], tmp_path / "run")
    assert result.exit_code == 2, result.output
    line = _last_line(result)
    assert f"error: --val-cache {caches['other']} holds other features than --cache {caches['train']}" in line
    assert "motion.random_seed: 0 -> 1" in line and "--allow-other-features" in line
    assert "(motion: synthetic motion -> synthetic motion; semantic: synthetic semantic -> synthetic semantic; " in line
    assert not (tmp_path / "run").exists()
    result = _train(caches["train"], caches["other"], tmp_path / "run", "--allow-other-features")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "semantic.random_seed: 0 -> 1" in summary["feature_override"]


def test_the_training_cache_is_not_its_own_validation_or_test_set(caches, trained, tmp_path):
    result = _train(caches["train"], caches["train"], tmp_path / "run")
    assert result.exit_code == 2 and "holds the same clips as --cache" in _last_line(result)
    args = ["fuse-eval", "--checkpoint", str(trained / "best.pt"), "--cache", str(caches["train"])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "is the model's training cache" in _last_line(result)


def test_evaluation_on_other_features_is_refused_or_recorded(caches, trained):
    args = ["fuse-eval", "--checkpoint", str(trained / "best.pt"), "--cache", str(caches["other"])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "holds other features than the model's training cache" in _last_line(result)
    result = CliRunner().invoke(main, [*args, "--allow-other-features"])
    assert result.exit_code == 0, result.output
    assert "semantic.random_seed: 0 -> 1" in json.loads(result.stdout)["feature_override"]


def test_compare_refuses_runs_over_other_features_or_other_validation_clips(caches, trained, tmp_path):
    assert _train(caches["train"], caches["other"], tmp_path / "mixed", "--allow-other-features").exit_code == 0
    result = CliRunner().invoke(main, ["compare", str(trained), str(tmp_path / "mixed")])
    assert result.exit_code == 2 and "was validated on other features or clips than" in _last_line(result), (
        result.output
    )
    other_train = make_feature_cache(tmp_path / "train1", 48, "ssv2", **SMALL_DIMS, shard_size=16, seed=1)
    assert _train(other_train, caches["other"], tmp_path / "seed1").exit_code == 0
    result = CliRunner().invoke(main, ["compare", str(trained), str(tmp_path / "seed1")])
    assert result.exit_code == 2 and "was trained on other features or clips than" in _last_line(result), result.output


def test_ssv2_answers_for_the_test_split(caches, trained, tmp_path):
    out = tmp_path / "answers.csv"
    args = ["fuse-eval", "--checkpoint", str(trained / "best.pt"), "--cache", str(caches["test"]), "--answers-out",
            str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 12 and lines[0].startswith("test-000000;object ")


def test_a_submission_from_a_cache_with_a_failed_clip_is_refused_unless_allowed(tmp_path):
    train = make_feature_cache(tmp_path / "train", 48, "epic100", **SMALL_DIMS, shard_size=16)
    val = make_feature_cache(tmp_path / "val", 16, "epic100", **SMALL_DIMS, split="validation", shard_size=16)
    test = make_feature_cache(tmp_path / "test", 12, "epic100", **SMALL_DIMS, split="test", shard_size=16,
                              failed_rows=(3,))  # fmt: skip
    assert _train(train, val, tmp_path / "run").exit_code == 0
    args = ["fuse-eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--cache", str(test), "--submission",
            str(tmp_path / "test.zip")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "--submission: cache" in _last_line(result) and "is missing 1 of 12 clips" in _last_line(result)
    assert not (tmp_path / "test.zip").exists()
    result = CliRunner().invoke(main, [*args, "--allow-partial"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["benchmark_file_missing_clips"] == 1
    assert "1 of 12 clips are missing from it" in result.stderr
    with zipfile.ZipFile(tmp_path / "test.zip") as archive:
        assert len(json.loads(archive.read("test.json"))["results"]) == 11
