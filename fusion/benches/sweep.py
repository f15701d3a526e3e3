"""`cli bench sweep`: K members trained in one inline pass (caches read once) against the same K as separate
`fuse-train` processes (each starting Python and reading the caches itself)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fusion.experiments.runner import SweepRun, execute
from fusion.experiments.spec import parse_spec
from pipeline.core.paths import CLI_SCRIPT


def bench_sweep(cache: Path, val_cache: Path, members: int, epochs: int, model: str, batch_size: int) -> Table:
    lrs = [1e-4 * 2**i for i in range(members)]
    spec = parse_spec(
        {
            "base": {"model": model, "overrides": {"data": {"batch_size": batch_size}, "device": "cpu"}},
            "axes": {"optim.lr": lrs},
        },
        "bench sweep",
    )
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        execute(spec, SweepRun(cache, val_cache, Path(tmp) / "inline", epochs), "inline", False)
        inline = time.perf_counter() - started
        started = time.perf_counter()
        for i, lr in enumerate(lrs):
            subprocess.run(
                [
                    sys.executable,
                    str(CLI_SCRIPT),
                    "fuse-train",
                    "--cache",
                    str(cache),
                    "--val-cache",
                    str(val_cache),
                    "--model",
                    model,
                    "--epochs",
                    str(epochs),
                    "--lr",
                    str(lr),
                    "--batch-size",
                    str(batch_size),
                    "--device",
                    "cpu",
                    "--no-progress",
                    "--out",
                    str(Path(tmp) / f"separate-{i}"),
                ],
                check=True,
                capture_output=True,
            )
        separate = time.perf_counter() - started
    from fusion.data.cache_data import CacheData

    clips = len(CacheData(cache)) * epochs
    table = Table(title=f"bench sweep: {members} x {model}, {epochs} epochs, batch {batch_size}, {clips} clips each")
    for column in ("mode", "wall s", "training clips/s per member", "x separate"):
        table.add_column(column, justify="right")
    for name, seconds in (("inline (caches read once)", inline), ("separate fuse-train processes", separate)):
        table.add_row(name, f"{seconds:.1f}", f"{clips * members / seconds / members:.0f}", f"{separate / seconds:.2f}")
    Console(width=max(Console().width, 110)).print(table)
    return table
