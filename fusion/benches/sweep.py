"""`cli bench sweep`: K members (seeds of one model) trained in one inline sweep, stacked into one model (where the
model stacks), stepping side by side on each batch read (lockstep) and one after another (caches read once),
against the same K as separate `fuse-train` processes (each starting Python and reading the caches itself)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.table import Table

from fusion.experiments.runner import SweepRun, execute, selecting
from fusion.experiments.spec import parse_spec
from pipeline.core.errors import UserError
from pipeline.core.paths import CLI_SCRIPT
from pipeline.core.progress import table_console

# (row, lockstep, stack): the inline ways to train a sweep's members
INLINE = (("stacked", True, True), ("lockstep", True, False), ("one after another", False, False))


def _warm_up() -> None:
    """What the first training in a process imports (the optimizer's compiler hooks, the plotting library), before
    any clock starts: else the first row timed pays it."""
    import matplotlib.pyplot  # noqa: F401
    import torch

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])


def _separate(cache: Path, val_cache: Path, seeds: list[int], epochs: int, model: str, batch_size: int,
              data_mode: str, device: str, out: Path) -> None:  # fmt: skip
    for seed in seeds:
        options = {"--cache": cache, "--val-cache": val_cache, "--model": model, "--epochs": epochs, "--seed": seed,
                   "--batch-size": batch_size, "--data-mode": data_mode, "--device": device,
                   "--out": out / f"separate-{seed}"}  # fmt: skip
        command = [sys.executable, str(CLI_SCRIPT), "fuse-train", "--no-progress"]
        command += [str(x) for pair in options.items() for x in pair]
        # the sweep's members read batches in one order (data.order_seed 0): so does each process here
        config = out / "order.yaml"
        config.write_text("data: {order_seed: 0}\n")
        done = subprocess.run([*command, "--config", str(config)], capture_output=True, text=True)
        if done.returncode:
            lines = done.stderr.strip().splitlines() or ["(no output)"]
            raise UserError(f"bench sweep: the separate fuse-train of seed {seed} failed: {lines[-1]}")


def bench_sweep(
    cache: Path, val_cache: Path, members: int, epochs: int, model: str, batch_size: int, data_mode: str, device: str
) -> Table:
    seeds = list(range(members))
    # validation chooses the epoch, as the separate runs do by default: a holdout would need enough clips a class
    overrides = {"data": {"batch_size": batch_size, "mode": data_mode}, "device": device}
    spec = parse_spec({"base": {"model": model, "overrides": overrides}, "members": [{}], "seeds": seeds},
                      "bench sweep")  # fmt: skip
    spec = selecting(spec, "validation")  # as `cli sweep` has it: one data order, so the members step together
    _warm_up()
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, lockstep, stack in INLINE:
            started = time.perf_counter()
            run = SweepRun(cache, val_cache, Path(tmp) / name, epochs, lockstep=lockstep, stack=stack)
            execute(spec, run, "inline", False)
            seconds[name] = time.perf_counter() - started
        started = time.perf_counter()
        _separate(cache, val_cache, seeds, epochs, model, batch_size, data_mode, device, Path(tmp))
        seconds["separate fuse-train processes"] = time.perf_counter() - started
    from fusion.data.cache_data import CacheData

    clips = len(CacheData(cache)) * epochs
    table = Table(title=f"bench sweep: {members} seeds of {model}, {epochs} epochs, batch {batch_size}, data mode "
                        f"{data_mode}, {clips} clips each, device {device}")  # fmt: skip
    for column in ("members trained", "wall s", "training clips/s per member", "time / one after another",
                   "time / separate"):  # fmt: skip
        table.add_column(column, justify="right")
    for name, wall in seconds.items():
        table.add_row(name, f"{wall:.1f}", f"{clips / wall:.0f}", f"{wall / seconds['one after another']:.2f}",
                      f"{wall / seconds['separate fuse-train processes']:.2f}")  # fmt: skip
    table_console(120).print(table)
    return table
