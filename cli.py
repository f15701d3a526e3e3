"""gasm-cast command line: one thin Click group; every command imports its heavy modules lazily."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fusion.benches.gpu_check import CheckSettings
from fusion.cli_experiments import bench_sweep, compare, sweep
from fusion.cli_fusion import bench_fusion, bench_loader, fuse_eval, fuse_train, models, visualize
from fusion.cli_predict import export, predict
from pipeline.cli_cache import cache
from pipeline.cli_extract import bench_extract, extract, submit, synth
from pipeline.core.cli_base import OneLineErrors, setup_logging, user_errors


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


@main.command(
    "gpu-check",
    help=f"The GPU tests (make test-gpu) and every bench on the GPU (fusion at batch sizes "
    f"{CheckSettings.fusion_batch_sizes}, the loader in each data mode, extraction with the default backbones at "
    "random init), into one markdown report whose path it prints. Without a CUDA device it says so in one line "
    "and runs nothing.",
    epilog="Exit status: 0 every step passed (or no CUDA device: nothing run), 1 a step failed.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="The markdown report. [default: gpu-check/report-HOST-TIME.md]",
)
@click.option(
    "--real-fixtures",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    envvar="REAL_FIXTURES",
    help="Folder of real public test data: also bench extraction on its SSv2 clips.",
)
@click.option(
    "--work-dir", type=click.Path(path_type=Path), help="For the generated data. [default: a temporary folder]"
)
@user_errors
def gpu_check(out: Path | None, real_fixtures: Path | None, work_dir: Path | None) -> None:
    import torch

    from fusion.benches.gpu_check import default_report_path, run_check
    from pipeline.core.paths import output_file

    out = output_file(out or default_report_path(), "--out")
    gpu, passed = run_check(CheckSettings(real_fixtures=real_fixtures), out, work_dir)
    if gpu is None:
        click.echo(f"gpu-check: no CUDA device here (torch {torch.__version__}): nothing run")
        return
    click.echo(f"gpu-check on {gpu.name}: {'every step passed' if passed else 'a step failed'}; report: {out}")
    if not passed:
        sys.exit(1)


if __name__ == "__main__":
    main()
