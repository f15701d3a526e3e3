"""gasm-cast command line: one thin Click group; every command imports its heavy modules lazily."""

from __future__ import annotations

from pathlib import Path

import click

from fusion.cli_experiments import bench_sweep, compare, sweep
from fusion.cli_fusion import bench_fusion, bench_loader, fuse_eval, fuse_train, models, visualize
from fusion.cli_predict import export, predict
from pipeline.cli_base import OneLineErrors, setup_logging, user_errors
from pipeline.cli_cache import cache
from pipeline.cli_extract import bench_extract, extract, submit, synth


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug); all of it on stderr.")
def main(verbose: int) -> None:
    """Frozen DINOv3 + I3D features into a sharded Zarr cache, and fusion models trained on it."""
    setup_logging(verbose)


@main.group()
def bench() -> None:
    """Benchmarks that print a table (never part of the test suite's pass/fail)."""


for command in (
    extract,
    submit,
    cache,
    synth,
    models,
    fuse_train,
    fuse_eval,
    visualize,
    predict,
    export,
    sweep,
    compare,
):
    main.add_command(command)
for name, command in (
    ("extract", bench_extract),
    ("fusion", bench_fusion),
    ("loader", bench_loader),
    ("sweep", bench_sweep),
):
    bench.add_command(command, name)


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo-run"),
    help="Folder for the demo's data, caches and runs.",
)
@click.option(
    "--clips", type=click.IntRange(min=4), default=48, help="Synthetic training clips (validation gets half)."
)
@click.option("--epochs", type=click.IntRange(min=1), default=15, help="Training epochs per model.")
@user_errors
def demo(out: Path, clips: int, epochs: int) -> None:
    """The whole chain on a generated dataset, on CPU.

    synth -> extract -> fuse-train (3 models) -> fuse-eval -> visualize.
    """
    from fusion.demo import run_demo

    run_demo(out, clips, epochs)


if __name__ == "__main__":
    main()
