"""The DataLoader side of extraction: one item per clip, decoded in worker processes under a deadline."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.datasets.base import Clip
from pipeline.extract_config import SamplingConfig
from pipeline.video.decode import ClipDecodeError, read_frames
from pipeline.video.sampling import semantic_positions, temporal_offsets, uniform_indices


class DecodeTimeout(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise DecodeTimeout after `seconds` (SIGALRM; only where signals can be delivered: a main thread)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expired(signum: int, frame: Any) -> None:
        raise DecodeTimeout(f"decode took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_clip(clip: Clip, sampling: SamplingConfig, size: int, threads: int = 0) -> dict[str, np.ndarray]:
    """-> {"semantic": [V, Fs, size, size, 3], "motion": [V, Fm, size, size, 3]} uint8, from one open of the clip:
    its views (sampling.spatial_views squares x sampling.temporal_views grids, spatial-major; view 0 the centre
    square on the centred grid)."""
    offsets = temporal_offsets(sampling.temporal_views)
    chosen: dict[str, list[np.ndarray]] = {}

    def positions(available: int) -> np.ndarray:
        chosen["motion"] = [uniform_indices(available, sampling.motion_frames, o) for o in offsets]
        chosen["semantic"] = [semantic_positions(available, sampling.semantic_frames, sampling.semantic_reduce, o)
                              for o in offsets]  # fmt: skip
        return np.concatenate(chosen["motion"] + chosen["semantic"])

    frames = read_frames(clip, positions, size, threads, sampling.spatial_views)
    return {
        kind: np.stack([np.stack([frames[int(p)][crop] for p in grid])
                        for crop in range(sampling.spatial_views) for grid in chosen[kind]])
        for kind in ("semantic", "motion")
    }  # fmt: skip


class ClipFrames(Dataset):
    """Item `row` -> {"row", "semantic", "motion"} tensors, or {"row", "stage", "error"} for a bad clip."""

    def __init__(self, clips: list[Clip], sampling: SamplingConfig, size: int, timeout: float, threads: int = 0):
        """`threads` per video decoder (0: the library's choice)."""
        if sampling.semantic_frames is None:  # a programming error: every entry point resolves the backbone's
            raise ValueError("sampling.semantic_frames is unresolved: pass the config through with_backbone_defaults")
        self.clips, self.sampling, self.size, self.timeout, self.threads = clips, sampling, size, timeout, threads

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, row: int) -> dict[str, Any]:
        clip = self.clips[row]
        try:
            with deadline(self.timeout):
                frames = read_clip(clip, self.sampling, self.size, self.threads)
        except ClipDecodeError as exc:
            return {"row": row, "stage": exc.stage, "error": str(exc)}
        except DecodeTimeout as exc:
            return {"row": row, "stage": "timeout", "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - any library failure on one clip must not stop the job
            return {"row": row, "stage": "decode", "error": f"{type(exc).__name__}: {exc}"}
        return {"row": row, **{k: torch.from_numpy(v) for k, v in frames.items()}}


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the good clips (semantic: [B, V, Fs, S, S, 3], motion: [B, V, Fm, S, S, 3]); list the failures."""
    good = [item for item in items if "error" not in item]
    return {
        "rows": [item["row"] for item in good],
        "semantic": torch.stack([item["semantic"] for item in good]) if good else None,
        "motion": torch.stack([item["motion"] for item in good]) if good else None,
        "failures": [{"row": i["row"], "stage": i["stage"], "error": i["error"]} for i in items if "error" in i],
    }
