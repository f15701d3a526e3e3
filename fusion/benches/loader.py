"""`cli bench loader`: how fast the cache is read, how fast cached batches arrive, and how fast a training step
consumes them (the loader must not be the bottleneck)."""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import torch
from rich.table import Table

from fusion.data.placement import MODE_TEXT
from fusion.training.config import training_config
from fusion.training.request import TrainingRequest
from fusion.training.trainer import Trainer
from pipeline.core.progress import table_console


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_loader(cache: Path, model: str, batch_size: int, steps: int, device: str, mode: str) -> None:
    """`mode`: data.mode (auto, device, ram, streamed)."""
    cfg = training_config("default", None, {"data": {"batch_size": batch_size, "mode": mode}, "device": device})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(TrainingRequest(cache, cache, model, Path(tmp), cfg))
        data = trainer.train_data

        # The read path alone (shard files read, decompressed, usable rows selected), every shard once and
        # nothing kept: what the device and RAM modes load up front and the streamed mode reads ahead.
        started = time.perf_counter()
        for shard in range(len(data.shards)):
            data._read_shard(shard)
        read = len(data) / (time.perf_counter() - started)

        def take(count: int, keep: bool) -> list:
            batches, seen = [], 0
            while seen < count:
                for batch in data.batches(
                    batch_size, shuffle=True, generator=trainer.order, views=trainer.cfg.data.views
                ):
                    seen += 1
                    batches += [batch] if keep else []
                    if seen == count:
                        break
            return batches

        # Untimed first passes: in training each batch is freed after its step, so the allocator reuses memory;
        # timing the first, page-faulting pass would understate the steady state several-fold.
        batches = take(steps, keep=True)
        take(steps, keep=False)
        started = time.perf_counter()
        take(steps, keep=False)
        delivered = sum(len(b["row"]) for b in batches) / (time.perf_counter() - started)
        data.model_inputs(batches[0], trainer.device)
        started = time.perf_counter()
        for batch in batches:  # what the trainer does to every batch before the model sees it
            data.model_inputs(batch, trainer.device)
        _synchronize(trainer.device)
        inputs = sum(len(b["row"]) for b in batches) / (time.perf_counter() - started)
        trainer._train_step(batches[0], data.model_inputs(batches[0], trainer.device))  # warm-up
        _synchronize(trainer.device)
        started = time.perf_counter()
        for batch in batches:
            trainer._train_step(batch, data.model_inputs(batch, trainer.device))
        _synchronize(trainer.device)
        step = sum(len(b["row"]) for b in batches) / (time.perf_counter() - started)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kilobytes on Linux
    table = Table(
        title=f"bench loader: {cache} ({len(data)} clips; data.mode {data.mode}: {MODE_TEXT[data.mode]}), {model}, "
        f"batch {batch_size}, {trainer.device}; peak resident memory {peak_gb:.2f} GB"
    )
    for column in ("stage", "clips/s", "x training step"):
        table.add_column(column, justify="right")
    loader = 1 / (1 / delivered + 1 / inputs)  # the two run one after the other in the training process
    for stage, rate in (
        ("cache read (shard files -> float16 rows in memory)", read),
        ("batches (shuffled, float16, on the host or device)", delivered),
        ("model inputs (to the device, to float there, normalised)", inputs),
        ("loader (batches, then model inputs)", loader),
    ):
        table.add_row(stage, f"{rate:.0f}", f"{rate / step:.1f}")
    table.add_row("training step (forward, backward, optimizer)", f"{step:.0f}", "1.0")
    table_console(120).print(table)
