"""Batches of decoded clips from DataLoader workers that survive a worker crashing or hanging.

Workers catch ordinary decode errors and time-outs per clip. A worker that dies (a segfault in a codec) or
stops answering (stuck inside native code) takes the DataLoader down with it; then the batch it held is
decoded again one clip per fresh process, so the culprit is recorded as a failure, and a new DataLoader
resumes from the next batch.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from pipeline.video.clip_dataset import ClipFrames, collate_clips

log = logging.getLogger(__name__)


def _loader(dataset: ClipFrames, batches: list[list[int]], workers: int, timeout: float, pin: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate_clips,
        pin_memory=pin,
        timeout=timeout if workers else 0,
        prefetch_factor=2 if workers else None,
        worker_init_fn=_quiet_on_signals if workers else None,
    )


def _quiet_on_signals(worker: int) -> None:
    """Ctrl-C and SIGTERM reach the whole process group: a decoder worker ignores Ctrl-C (the main process,
    which gets it too, stops the job and shuts the workers down) and dies at once on SIGTERM (what shutting
    down a hung worker sends, and what the main process answers with its one line)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.excepthook = _quiet_on_abandoned_handover


def _quiet_on_abandoned_handover(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    """A worker hands each batch's shared memory to the main process through multiprocessing's resource
    sharer, whose server thread reports its errors through sys.excepthook. When the main process stops (a
    signal) in the middle of a handover the connection resets: the batch was abandoned on purpose, and a
    traceback would only bury the command's one line. Anything else is reported as usual."""
    if not issubclass(kind, (ConnectionError, EOFError)):
        sys.__excepthook__(kind, exc, tb)


def _isolated(dataset: ClipFrames, batch: list[int], timeout: float) -> dict[str, Any]:
    items = []
    for row in batch:
        try:
            items.append(next(iter(_loader(dataset, [[row]], 1, timeout, False))))
        except RuntimeError as exc:
            clip = dataset.clips[row]
            log.warning("clip %s (%s) killed or hung its decoder: %s", clip.clip_id, clip.source, exc)
            items.append(
                {
                    "rows": [],
                    "semantic": None,
                    "motion": None,
                    "failures": [{"row": row, "stage": "crash", "error": f"decoder process died or hung: {exc}"}],
                }
            )
    good = [item for item in items if item["rows"]]
    return {
        "rows": [row for item in good for row in item["rows"]],
        "semantic": _cat([item["semantic"] for item in good]),
        "motion": _cat([item["motion"] for item in good]),
        "failures": [failure for item in items for failure in item["failures"]],
    }


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor | None:
    return torch.cat(tensors) if tensors else None


def decoded_batches(dataset: ClipFrames, batches: list[list[int]], workers: int, pin: bool) -> Iterator[dict[str, Any]]:
    """Yield one collated batch per entry of `batches`, in order, whatever happens to the workers."""
    # A batch is decoded clip after clip by one worker, each clip under its own soft deadline; two more
    # deadlines' grace covers worker start-up and the batch queued ahead of it.
    hard_timeout = dataset.timeout * (max(len(b) for b in batches) + 2) if batches else 0
    start = 0
    while start < len(batches):
        iterator = iter(_loader(dataset, batches[start:], workers, hard_timeout, pin))
        try:
            for _ in range(start, len(batches)):
                batch = next(iterator)
                start += 1
                yield batch
        except RuntimeError as exc:
            if workers == 0:
                raise
            log.warning("decoder worker failed (%s); decoding that batch clip by clip", exc)
            yield _isolated(dataset, batches[start], hard_timeout)
            start += 1
