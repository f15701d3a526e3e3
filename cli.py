"""gasm-cast command line: one thin Click group; every command imports its heavy modules lazily."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fusion.benches.gpu_check import CheckSettings
from fusion.cli_experiments import bench_sweep, compare, sweep
from fusion.cli_fusion import bench_fusion, bench_loader, fuse_eval, fuse_train, models, visualize
from fusion.cli_predict import export, predict
from fusion.demo.config import DEMO_TIME, REAL_SHAPES, REAL_SHAPES_TIME, DemoConfig
from pipeline.cli_cache import cache
from pipeline.cli_extract import bench_extract, extract, submit, synth
from pipeline.core.cli_base import EPILOG, OneLineErrors, setup_logging, user_errors
from pipeline.core.config_options import ConfigOptions


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


DEMO_OPTIONS = ConfigOptions(
    DemoConfig, {"--train": "train", "--validation": "validation", "--epochs": "epochs", "--seed": "seed"}
)


@main.command(
    epilog=EPILOG,
    help=f"A first run that shows learning ({DEMO_TIME}): clips that differ only in the direction a square moves, "
    "extracted twice (per-frame tokens and their frame mean), GASM-CAST and three baselines trained on each in one "
    "sweep and evaluated; one table on stdout, DIR/results.json, DIR/frames_vs_mean.png and GASM-CAST's attention "
    "across frames. Ctrl-C keeps every finished stage: the same command goes on.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo-run"),
    help="Folder for the demo's data, caches, runs, results.json and pictures.",
)
@DEMO_OPTIONS
@click.option(
    "--real-shapes",
    is_flag=True,
    help=f"The chain at the default backbones' real shapes instead (DINOv3-B 196 x 768, I3D-R50 8 x 512, random "
    f"init: plumbing at full size, no learning): {REAL_SHAPES.train} + {REAL_SHAPES.validation} clips, "
    f"{REAL_SHAPES.epochs} epochs unless given; {REAL_SHAPES_TIME}.",
)
@click.option("--progress/--no-progress", default=None, help="Progress bars.  [default: on a terminal; else log lines]")
@user_errors
def demo(out: Path, real_shapes: bool, progress: bool | None, **options: object) -> None:
    if real_shapes:
        from fusion.demo.real_shapes import run_real_shapes

        run_real_shapes(out, DEMO_OPTIONS.apply(REAL_SHAPES, options))
        return
    from fusion.demo.learning import run_demo

    run_demo(out, DEMO_OPTIONS.apply(DemoConfig(), options), progress)


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
