"""Decoder workers that crash or hang become recorded failures; the other clips still arrive, in order."""

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.extract_config import IMAGE_FRAMES, SamplingConfig
from pipeline.video.clip_dataset import ClipFrames
from pipeline.video.loader import decoded_batches

IMAGE_SAMPLING = SamplingConfig(semantic_frames=IMAGE_FRAMES)  # the defaults, as an image backbone resolves them


class Misbehaving(ClipFrames):
    """Clip 3 kills its worker (like a segfault in a codec); clip 6 hangs where no signal can stop it."""

    def __getitem__(self, row):
        if row == 3:
            os.kill(os.getpid(), signal.SIGSEGV)
        if row == 6:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(3600)
        return super().__getitem__(row)


def clips(ssv2_root, n):
    from pipeline.datasets import read_dataset

    return read_dataset("ssv2", ssv2_root, "train").clips[:n]


def test_crash_and_hard_hang_become_failures(ssv2_root):
    dataset = Misbehaving(clips(ssv2_root, 8), IMAGE_SAMPLING, 32, timeout=1.0)
    batches = [[0, 1], [2, 3], [4, 5], [6, 7]]
    out = list(decoded_batches(dataset, batches, workers=2, pin=False))
    assert len(out) == 4
    rows = [sorted(b["rows"] + [f["row"] for f in b["failures"]]) for b in out]
    assert rows == batches
    failures = {f["row"]: f for b in out for f in b["failures"]}
    assert set(failures) == {3, 6} and all(f["stage"] == "crash" for f in failures.values())
    assert sorted(r for b in out for r in b["rows"]) == [0, 1, 2, 4, 5, 7]
    assert all(b["motion"].shape[1:] == (1, 16, 32, 32, 3) for b in out if b["rows"])  # one view


def test_slow_decode_times_out_softly(ssv2_root, monkeypatch):
    from pipeline.video import clip_dataset

    items = clips(ssv2_root, 3)
    real = clip_dataset.read_clip

    def slow_for_the_second(clip, *args):
        if clip.clip_id == items[1].clip_id:
            time.sleep(3600)
        return real(clip, *args)

    monkeypatch.setattr(clip_dataset, "read_clip", slow_for_the_second)
    dataset = ClipFrames(items, IMAGE_SAMPLING, 32, timeout=0.5)
    for workers in (0, 1):
        out = list(decoded_batches(dataset, [[0, 1, 2]], workers=workers, pin=False))
        assert out[0]["rows"] == [0, 2]
        assert [(f["row"], f["stage"]) for f in out[0]["failures"]] == [(1, "timeout")]


@pytest.mark.parametrize("workers", [0, 2])
def test_order_is_kept(ssv2_root, workers):
    dataset = ClipFrames(clips(ssv2_root, 6), IMAGE_SAMPLING, 32, timeout=30)
    batches = [[0, 1], [2, 3], [4, 5]]
    assert [b["rows"] for b in decoded_batches(dataset, batches, workers=workers, pin=False)] == batches


def test_a_worker_is_silent_about_a_handover_the_stopping_main_process_abandoned():
    """The resource sharer's server thread reports through sys.excepthook; a reset connection (the main
    process stopped mid-handover) says nothing, any other error still prints its traceback."""
    code = (
        "import sys; from pipeline.video.loader import _quiet_on_signals; _quiet_on_signals(0)\n"
        "for error in (ConnectionResetError(104, 'Connection reset by peer'), EOFError(), ValueError('real')):\n"
        "    try:\n        raise error\n    except BaseException:\n        sys.excepthook(*sys.exc_info())\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ValueError: real" in done.stderr and "Traceback" in done.stderr
    assert "Connection" not in done.stderr and "EOFError" not in done.stderr, done.stderr
