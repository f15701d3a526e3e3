"""Training and evaluation never report a number from partial or poisoned data, and say what they used."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner
from conftest import ROOT, small_caches

from cli import main


def strict(text: str):
    """json.loads that refuses NaN/Infinity, as every other language's parser does."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return small_caches(tmp_path_factory.mktemp("caches"), 96, 48, failed_rows=(5,))


@pytest.fixture(scope="module")
def trained(caches, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    result = CliRunner().invoke(main, train_args(caches, out, "--epochs", 1))
    assert result.exit_code == 0, result.output
    return out


def train_args(caches, out, *extra) -> list[str]:
    args = ["fuse-train", "--cache", caches[0], "--val-cache", caches[1], "--out", out, "--model", "late_fusion",
            "--batch-size", 16, "--device", "cpu", "--no-progress", *extra]  # fmt: skip
    return [str(a) for a in args]


def copy_of(cache: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(cache, tmp_path / cache.name))


def error_line(result, words: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    last = result.output.strip().splitlines()[-1]  # after any log lines of the work done before the error
    assert last.startswith("error: ") and words in last, result.output


def test_partial_cache_is_refused_unless_allowed_and_then_counted(caches, tmp_path):
    partial = copy_of(caches[0], tmp_path)
    zarr.open_group(str(partial), mode="r+")["done"][16:48] = False
    runner = CliRunner()
    args = train_args((partial, caches[1]), tmp_path / "r", "--epochs", 1)
    words = f"32 of 96 clips are not extracted yet; finish the extraction (`cli cache verify {partial}`"
    error_line(runner.invoke(main, args), words)
    assert not (tmp_path / "r").exists()
    result = runner.invoke(main, [*args, "--allow-partial"])
    assert result.exit_code == 0, result.output
    counts = strict((tmp_path / "r" / "metrics.json").read_text())["data"]["train"]
    assert counts == {"clips": 96, "not_done": 32, "failed": 1, "unlabelled": 0, "usable": 63}
    assert torch.load(tmp_path / "r" / "best.pt", weights_only=True)["data"]["train"]["not_done"] == 32
    error_line(runner.invoke(main, ["fuse-eval", "--checkpoint", tmp_path / "r" / "best.pt", "--cache", partial]),
               "are not extracted yet")  # fmt: skip


def test_non_finite_rows_are_refused_by_clip_id(caches, tmp_path):
    poisoned = copy_of(caches[0], tmp_path)
    group = zarr.open_group(str(poisoned), mode="r+")
    block = group["motion"][32:48]
    block[3, 1, 2] = np.inf
    group["motion"][32:48] = block
    result = CliRunner().invoke(main, train_args((poisoned, caches[1]), tmp_path / "r", "--epochs", 1))
    error_line(result, "1 clip(s) hold NaN or Inf features: train-000035 (row 35)")
    from fusion.data.cache_data import CacheData
    from pipeline.core.errors import UserError

    streamed = CacheData(poisoned, mode="streamed")  # read by a background thread: the error still arrives
    with pytest.raises(UserError, match="train-000035"):
        list(streamed.batches(16))


def test_nan_loss_stops_at_once_keeping_best_and_last(caches, trained, tmp_path, monkeypatch):
    import shutil

    import fusion.training.objective

    run = Path(shutil.copytree(trained, tmp_path / "run"))
    before = {name: (run / name).read_bytes() for name in ("best.pt", "last.pt")}
    real = fusion.training.objective.task_loss  # the training loss (mixed_loss) goes through it
    calls = []

    def diverging(outputs, targets, criterion):
        calls.append(1)
        return real(outputs, targets, criterion) * (float("nan") if len(calls) == 3 else 1.0)

    monkeypatch.setattr(fusion.training.objective, "task_loss", diverging)
    result = CliRunner().invoke(main, train_args(caches, run, "--epochs", 2, "--resume"))
    error_line(result, "the training loss is nan at epoch 2, step 3: stopped", code=1)
    assert {name: (run / name).read_bytes() for name in before} == before


def test_resume_needs_a_run_and_extends_one_to_more_epochs(caches, trained, tmp_path):
    import shutil

    runner = CliRunner()
    error_line(runner.invoke(main, train_args(caches, tmp_path / "none", "--resume")), "holds no run to resume")
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    error_line(runner.invoke(main, train_args(caches, run, "--epochs", 1, "--resume", "--lr", 0.1)),
               "config.optim.lr: 0.0003 -> 0.1")  # fmt: skip
    # a run written before a setting existed resumes: the setting's default is what the code did then
    from fusion.models.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(run / "last.pt")
    del state["config"]["data"]["order_seed"]
    save_checkpoint(run / "last.pt", state)
    result = runner.invoke(main, train_args(caches, run, "--epochs", 2, "--resume"))
    assert result.exit_code == 0, result.output
    assert [row["epoch"] for row in torch.load(run / "last.pt", weights_only=True)["history"]] == [1, 2]
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
    error_line(runner.invoke(main, train_args(caches, run, "--epochs", 1, "--resume")), "already trained 2 epochs")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--epochs", 0], "--epochs: expected >= 1, got 0"),
        (["--lr", -1], "--lr: expected > 0, got -1.0"),
        (["--batch-size", 0], "--batch-size: expected >= 1, got 0"),
        (["--config", "dropout.yaml"], "model.dropout: expected in [0, 1), got 1.5"),
        (["--config", "heads.yaml"], "bottleneck_dim 256 is not divisible by heads 7"),
        (["--preset", "fast"], "'--preset': 'fast' is not one of 'default', 'seed_recipe'"),
    ],
)
def test_bad_training_settings_exit_2_before_work(caches, tmp_path, monkeypatch, extra, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dropout.yaml").write_text("model:\n  dropout: 1.5\n")
    (tmp_path / "heads.yaml").write_text("model:\n  heads: 7\n")
    error_line(CliRunner().invoke(main, train_args(caches, tmp_path / "r", *extra)), words)
    assert not (tmp_path / "r").exists()


def test_unwritable_and_wrong_paths_are_one_line(caches, trained, tmp_path):
    runner = CliRunner()
    (tmp_path / "file").write_text("x")
    error_line(runner.invoke(main, train_args(caches, tmp_path / "file")), "--out")
    error_line(runner.invoke(main, ["fuse-eval", "--checkpoint", trained, "--cache", caches[1]]), "is a folder")
    (tmp_path / "empty.pt").write_bytes(b"")
    error_line(runner.invoke(main, ["fuse-eval", "--checkpoint", tmp_path / "empty.pt", "--cache", caches[1]]),
               "is empty")  # fmt: skip
    args = ["fuse-eval", "--checkpoint", trained / "best.pt", "--cache", caches[1], "--predictions", tmp_path]
    error_line(runner.invoke(main, args), "--predictions")


def test_unlabelled_clips_are_predicted_and_left_out_of_the_metrics(caches, trained, tmp_path):
    partly = copy_of(caches[1], tmp_path)
    zarr.open_group(str(partly), mode="r+")["label"][:8] = -1
    predictions = tmp_path / "p.jsonl"
    result = CliRunner().invoke(main, ["fuse-eval", "--checkpoint", str(trained / "best.pt"), "--cache", str(partly),
                                       "--predictions", str(predictions)])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = strict(result.stdout)
    assert report["clips"] == 40 and report["data"]["unlabelled"] == 8 and report["data"]["evaluated"] == 40
    assert len(predictions.read_text().splitlines()) == 48


def test_logs_go_to_stderr_results_to_stdout_and_every_epoch_is_logged_without_a_terminal(caches, tmp_path):
    out = tmp_path / "r"
    train = subprocess.run([sys.executable, str(ROOT / "cli.py"), *train_args(caches, out, "--epochs", 3)],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert strict(train.stdout)["epoch"] in (1, 2, 3)
    for epoch in (1, 2, 3):
        assert f"epoch {epoch}/3: train_loss " in train.stderr
    command = [sys.executable, str(ROOT / "cli.py"), "-v", "fuse-eval", "--checkpoint", str(out / "best.pt"),
               "--cache", str(caches[1])]  # fmt: skip
    evaluate = subprocess.run(command, capture_output=True, text=True)
    assert evaluate.returncode == 0 and "INFO" in evaluate.stderr
    assert strict(evaluate.stdout)["data"]["evaluated"] == 48


def test_models_table_never_cuts_a_name_and_has_json():
    from fusion.models.registry import MODELS

    args = ["models", "--semantic-shape", "16x32", "--motion-shape", "4x16", "--classes", 5, "--verbs", 3]
    narrow = CliRunner(env={"COLUMNS": "40"}).invoke(main, [str(a) for a in args])
    assert narrow.exit_code == 0, narrow.output
    for name in MODELS:
        assert name in narrow.output
    listed = strict(CliRunner().invoke(main, ["models", "--json", "--semantic-shape", "16x32"]).stdout)
    assert [m["model"] for m in listed["models"]] == list(MODELS) and all(m["under_budget"] for m in listed["models"])


def test_every_cache_is_standardised_with_the_training_caches_statistics(caches, tmp_path):
    from pipeline.cache.stats import compute_stats

    train, val = copy_of(caches[0], tmp_path), copy_of(caches[1], tmp_path)
    compute_stats(train)
    compute_stats(val)  # other clips, other statistics: a model must not see them through its eyes
    result = CliRunner().invoke(main, train_args((train, val), tmp_path / "r", "--epochs", 1))
    assert result.exit_code == 0, result.output
    scores = []
    for cache in (val, caches[1]):  # with and without statistics of their own
        report = CliRunner().invoke(main, ["fuse-eval", "--checkpoint", str(tmp_path / "r" / "best.pt"), "--cache",
                                           str(cache)])  # fmt: skip
        scores.append(strict(report.stdout)["metrics"])
    assert scores[0] == scores[1]
    best = strict((tmp_path / "r" / "metrics.json").read_text())["best"]
    assert best["val_top1"] == scores[0]["top1"]  # validation during training used the same standardisation
