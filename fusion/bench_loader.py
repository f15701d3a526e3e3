"""`cli bench loader`: how fast cached batches arrive versus how fast a training step consumes them."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fusion.data import MODE_TEXT
from fusion.train import Trainer
from fusion.train_config import training_config


def bench_loader(cache: Path, model: str, batch_size: int, steps: int, device: str, mode: str = "auto") -> None:
    """`mode`: data.mode (auto, device, ram, streamed)."""
    cfg = training_config("default", None, {"data": {"batch_size": batch_size, "mode": mode}, "device": device})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cache, cache, model, Path(tmp), cfg)
        data = trainer.train_data

        def take(count: int) -> list:
            batches = []
            while len(batches) < count:
                for batch in data.batches(batch_size, shuffle=True, generator=trainer.order):
                    # what the trainer does to every batch before the model sees it
                    data.model_inputs(batch, trainer.device)
                    batches.append(batch)
                    if len(batches) == count:
                        break
            return batches

        started = time.perf_counter()
        batches = take(steps)
        loader = sum(len(b["row"]) for b in batches) / (time.perf_counter() - started)
        trainer._train_step(batches[0], 0, 0)  # warm-up
        started = time.perf_counter()
        for i, batch in enumerate(batches, start=1):
            trainer._train_step(batch, 0, i)
        step = sum(len(b["row"]) for b in batches) / (time.perf_counter() - started)
    table = Table(
        title=f"bench loader: {cache} (data.mode {data.mode}: {MODE_TEXT[data.mode]}), {model}, batch {batch_size}, "
        f"{trainer.device}"
    )
    for column in ("stage", "clips/s", "x training step"):
        table.add_column(column, justify="right")
    table.add_row("loader (read, shuffle, to float, normalise)", f"{loader:.0f}", f"{loader / step:.1f}")
    table.add_row("training step (forward, backward, optimizer)", f"{step:.0f}", "1.0")
    Console(width=max(Console().width, 120)).print(table)
