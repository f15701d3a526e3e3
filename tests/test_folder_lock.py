"""One writer per folder: a second fuse-train or sweep on a folder in use is refused naming the holder, and a
killed holder leaves no stale lock."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT, small_caches

from cli import main
from pipeline.core.errors import UserError
from pipeline.core.folder_lock import LOCK_NAME, folder_lock


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return small_caches(tmp_path_factory.mktemp("caches"), 64, 32)


def _train(caches, out, epochs):
    args = ["fuse-train", "--cache", caches[0], "--val-cache", caches[1], "--out", out, "--model", "late_fusion",
            "--batch-size", 16, "--device", "cpu", "--no-progress", "--epochs", epochs]  # fmt: skip
    return [str(a) for a in args]


def _wait_for_holder(out: Path, pid: int) -> None:
    deadline = time.monotonic() + 120
    while f'"pid": {pid}' not in ((out / LOCK_NAME).read_text() if (out / LOCK_NAME).exists() else ""):
        assert time.monotonic() < deadline, "the first run never took the folder"
        time.sleep(0.2)


def test_two_fuse_train_on_one_out_one_runs_and_a_killed_holder_leaves_no_stale_lock(caches, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *_train(caches, out, 500)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_for_holder(out, first.pid)
        second = CliRunner().invoke(main, _train(caches, out, 1))
        assert second.exit_code == 2, second.output
        line = second.output.strip().splitlines()[-1]
        assert line.startswith(f"error: run folder {out} is in use by pid {first.pid} on ") and "fuse-train" in line
        assert not (out / "metrics.json").exists()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with folder_lock(out, "run folder"):  # the kernel released the killed holder's lock
        pass
    trained = torch.load(out / "last.pt", weights_only=True)["position"]["epoch"] if (out / "last.pt").exists() else 0
    resumed = CliRunner().invoke(main, [*_train(caches, out, trained + 1), *(["--resume"] if trained else [])])
    assert resumed.exit_code == 0, resumed.output


def test_a_sweep_on_a_folder_in_use_is_refused_naming_the_holder(caches, tmp_path):
    out = tmp_path / "sweep"
    code = ("import sys, time; from pipeline.core.folder_lock import folder_lock\n"
            "with folder_lock(sys.argv[1], 'x'):\n    print('held', flush=True); time.sleep(600)")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["sweep", "--preset", "ablations", "--cache", str(caches[0]), "--val-cache", str(caches[1]), "--out",
                str(out), "--epochs", "1"]  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        assert f"error: sweep folder {out} is in use by pid {holder.pid} on " in result.output
        assert sorted(os.listdir(out)) == [LOCK_NAME]  # nothing of the sweep was written
    finally:
        holder.kill()
        holder.wait()


def test_refused_work_leaves_no_folder_behind(tmp_path):
    with pytest.raises(UserError):
        with folder_lock(tmp_path / "new" / "run", "run folder"):
            raise UserError("bad input found before any work")
    assert not (tmp_path / "new" / "run").exists()


def test_a_held_folder_that_moved_or_lost_its_lock_file_stops_its_writer(tmp_path):
    from pipeline.core import atomic
    from pipeline.core.errors import FolderLost

    out = tmp_path / "run"
    with folder_lock(out, "run folder"):
        atomic.write_text(out / "a.txt", "1")  # held and in place: writes go on
        (out / LOCK_NAME).unlink()  # a second writer could now take a new lock file
        with pytest.raises(FolderLost, match="its lock file was deleted"):
            atomic.write_text(out / "b.txt", "2")
    with folder_lock(out, "run folder"):
        out.rename(tmp_path / "moved")
        with pytest.raises(FolderLost, match=f"it now lives at {tmp_path / 'moved'}"):
            atomic.write_text(out / "c.txt", "3")
    assert not out.exists() and sorted(os.listdir(tmp_path / "moved")) == [LOCK_NAME, "a.txt"]


def test_a_run_folder_renamed_under_a_running_trainer_stops_it_in_one_line(caches, tmp_path):
    """The trainer writes by path: after the move it would write into whatever folder is made at the old name. It
    stops at its next write instead (exit 1), its checkpoints kept where the folder now is."""
    out, moved = tmp_path / "run", tmp_path / "moved"
    job = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *_train(caches, out, 500)], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists():
            assert time.monotonic() < deadline and job.poll() is None, "the run never checkpointed"
            time.sleep(0.05)
        out.rename(moved)
        assert job.wait(timeout=120) == 1
    finally:
        job.kill()
    lines = [line for line in job.stderr.read().splitlines() if " INFO " not in line and line.strip()]
    assert len(lines) == 1 and f"it now lives at {moved}" in lines[0], lines
    assert not out.exists() and (moved / "last.pt").exists()
    assert not list(moved.glob(".*.partial*"))


def test_staging_files_a_killed_holder_left_are_removed_by_the_next(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".curves.12345.partial.png").write_bytes(b"half a picture")
    with folder_lock(out, "run folder"):
        assert sorted(os.listdir(out)) == [LOCK_NAME]
