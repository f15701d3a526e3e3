"""Outputs appear whole or not at all; a cut-short JSON file is one line, never finished work; a full disk is one
line and exit status 1 with nothing half-written left behind."""

import errno
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import small_caches

from cli import main
from fusion.experiments import runner
from fusion.experiments.spec import parse_spec
from pipeline.core import atomic


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return small_caches(tmp_path_factory.mktemp("caches"), 48, 16)


def _train(caches, out, *extra):
    args = ["fuse-train", "--cache", caches[0], "--val-cache", caches[1], "--out", out, "--model", "late_fusion",
            "--batch-size", 16, "--device", "cpu", "--no-progress", "--epochs", 1, *extra]  # fmt: skip
    return [str(a) for a in args]


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path):
    path = tmp_path / "pred.jsonl"
    path.write_text("the previous, complete output\n")
    with pytest.raises(RuntimeError), atomic.atomic_open(path) as handle:
        handle.write('{"clip_id": "1"}\n')
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "the previous, complete output\n"
    assert os.listdir(tmp_path) == ["pred.jsonl"]
    with pytest.raises(RuntimeError), atomic.atomic_path(tmp_path / "new.png") as staging:
        staging.write_bytes(b"half a figure")
        raise RuntimeError("killed mid-write")
    assert os.listdir(tmp_path) == ["pred.jsonl"]


def test_predictions_are_whole_or_absent(caches, tmp_path, monkeypatch):
    assert CliRunner().invoke(main, _train(caches, tmp_path / "run")).exit_code == 0
    from pipeline.core import strict_json

    written = []

    def dumps_until_killed(obj, **kwargs):
        if len(written) == 5:
            raise KeyboardInterrupt  # as Ctrl-C would, after five of sixteen lines
        written.append(obj)
        return json.dumps(obj)

    monkeypatch.setattr(strict_json, "dumps", dumps_until_killed)
    args = ["fuse-eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--cache", str(caches[1]),
            "--predictions", str(tmp_path / "pred.jsonl")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and len(written) == 5
    assert not [name for name in os.listdir(tmp_path) if "pred" in name]


def test_a_cut_short_metrics_json_is_not_a_finished_member_and_compare_says_so(caches, tmp_path):
    spec = parse_spec({"axes": {"model": ["late_fusion"]}, "seeds": [0]}, "test")
    member = spec.members()[0]
    folder = runner.member_dir(tmp_path, member)
    assert CliRunner().invoke(main, _train(caches, folder)).exit_code == 0
    assert runner.finished(tmp_path, member)
    text = (folder / "metrics.json").read_text()
    (folder / "metrics.json").write_text(text[: len(text) // 2])
    assert not runner.finished(tmp_path, member)
    result = CliRunner().invoke(main, ["compare", str(folder)])
    assert result.exit_code == 2, result.output
    assert f"error: run summary {folder / 'metrics.json'} is not valid JSON (cut short?)" in result.output


def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_no_temporary_file(caches, tmp_path, monkeypatch):
    import torch

    from fusion.models import checkpoint

    def full_disk_save(obj, path):
        Path(path).write_bytes(b"PK partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 128 vs 96")

    monkeypatch.setattr(torch, "save", full_disk_save)
    monkeypatch.setattr(checkpoint, "free_mb", lambda path: 0.0)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, _train(caches, out))
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"error: disk full writing {out}/") and last.endswith(" MB free on its file system)"), (
        result.output
    )
    assert "Traceback" not in result.output
    assert not [name for name in os.listdir(out) if name.endswith(".tmp") or ".partial" in name]


def test_an_out_of_space_error_anywhere_in_a_command_is_one_line(tmp_path, monkeypatch):
    from pipeline.synth import features

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "c" / "train" / "semantic"))

    monkeypatch.setattr(features, "make_feature_cache", no_space)
    result = CliRunner().invoke(main, ["synth", "--dataset", "ssv2", "--features", "--out", str(tmp_path / "c")])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: disk full writing {tmp_path / 'c' / 'train' / 'semantic'} (")


def test_a_merge_killed_midway_leaves_no_cache_and_running_it_again_completes(caches, tmp_path, monkeypatch):
    from pipeline.cache import merge

    out = tmp_path / "merged"
    calls = {"n": 0}
    original = merge.write_failures_by_row

    def killed(*args, **kwargs):
        calls["n"] += 1
        raise KeyboardInterrupt  # after every feature shard was written, before the failures and done

    monkeypatch.setattr(merge, "write_failures_by_row", killed)
    result = CliRunner().invoke(main, ["cache", "merge", str(caches[0]), str(caches[1]), "--out", str(out)])
    assert result.exit_code != 0 and calls["n"] == 1
    assert sorted(os.listdir(tmp_path)) == []
    # A builder killed harder (SIGKILL) leaves its hidden staging folder: the next run starts it again.
    (tmp_path / ".merged.partial" / "semantic").mkdir(parents=True)
    (tmp_path / ".merged.partial" / "semantic" / "junk").write_bytes(b"half a shard")
    monkeypatch.setattr(merge, "write_failures_by_row", original)
    result = CliRunner().invoke(main, ["cache", "merge", str(caches[0]), str(caches[1]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == ["merged"]
    verify = CliRunner().invoke(main, ["cache", "verify", str(out)])
    assert verify.exit_code == 0, verify.output


def test_outputs_into_folders_not_made_yet_are_written_after_the_work(caches, tmp_path):
    assert CliRunner().invoke(main, _train(caches, tmp_path / "run")).exit_code == 0
    checkpoint = str(tmp_path / "run" / "best.pt")
    predictions = tmp_path / "new" / "deeper" / "pred.jsonl"
    args = ["fuse-eval", "--checkpoint", checkpoint, "--cache", str(caches[1]), "--predictions", str(predictions)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert len(predictions.read_text().splitlines()) == 16
    exported = tmp_path / "exports" / "val.h5"
    result = CliRunner().invoke(main, ["cache", "export", str(caches[1]), "--out", str(exported)])
    assert result.exit_code == 0 and exported.is_file(), result.output
    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(main, [*args[:-1], str(tmp_path / "a-file" / "pred.jsonl")])
    assert result.exit_code == 2 and "is a file, expected a folder" in result.output  # refused before the work


def test_an_hdf5_export_that_cannot_fit_is_refused_before_writing(caches, tmp_path, monkeypatch):
    from pipeline.core import paths

    monkeypatch.setattr(paths, "free_mb", lambda path: 0.01)
    out = tmp_path / "val.h5"
    result = CliRunner().invoke(main, ["cache", "export", str(caches[1]), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {out}: needs up to ") and "MB free there" in result.output
    assert os.listdir(tmp_path) == []


def test_an_interrupted_demo_is_one_line_with_the_signals_exit_status(monkeypatch, tmp_path):
    import signal

    from fusion.demo import learning
    from fusion.training.trainer import Preempted

    def stopped(*args):
        raise Preempted(tmp_path / "run" / "last.pt", signal.SIGINT)

    monkeypatch.setattr(learning, "run_demo", stopped)
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 130
    assert result.output.strip().splitlines() == [
        "interrupted (signal 2); finished work is kept: run the same command to go on"
    ]


def test_a_damaged_checkpoint_in_a_compared_folder_is_one_line(caches, tmp_path):
    assert CliRunner().invoke(main, _train(caches, tmp_path / "run")).exit_code == 0
    best = tmp_path / "run" / "best.pt"
    best.write_bytes(best.read_bytes()[:100])
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "run")])
    assert result.exit_code == 2 and f"error: checkpoint {best} is corrupt" in result.output, result.output
