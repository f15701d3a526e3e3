"""gasm-cast command line: one thin Click group; every command imports its heavy modules lazily."""
from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import click

from pipeline.errors import UserError
from pipeline.extract_config import ExtractConfig

DEFAULTS = ExtractConfig()
EPILOG = "Exit status: 0 success, 1 problems found (verify), 2 bad input."


def user_errors(command: Callable) -> Callable:
    """Bad input becomes one line on stderr and exit status 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Frozen DINOv3 + I3D features into a sharded Zarr cache, and fusion models trained on it."""
    from rich.logging import RichHandler

    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(show_path=False, show_time=False)])


@main.command(epilog=EPILOG)
@click.option("--dataset", type=click.Choice(["ssv2", "epic100", "manifest"]), required=True, help="Dataset layout to read.")
@click.option("--data-root", type=click.Path(path_type=Path), required=True, help="Dataset root (or the manifest CSV).")
@click.option("--split", default="train", help="train / validation / test (manifest: the CSV's name).")
@click.option("--cache", type=click.Path(path_type=Path), required=True, help="Cache directory to create or resume.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="YAML file of overrides to the defaults.")
@click.option("--shard", envvar="GASM_SHARD", help="K/N: this job owns shards j with j mod N == K. "
              "[default: from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, else 0/1]")
@click.option("--shard-size", type=int, help=f"Clips per Zarr shard.  [default: {DEFAULTS.run.shard_size}]")
@click.option("--batch-size", type=int, help=f"Clips per model batch.  [default: {DEFAULTS.run.batch_size}]")
@click.option("--workers", type=int, help=f"Decoder processes.  [default: {DEFAULTS.run.workers}]")
@click.option("--device", help=f"auto, cpu, cuda or cuda:N.  [default: {DEFAULTS.run.device}]")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), help="Autocast dtype (auto: bf16 on GPU, fp32 on CPU).  [default: auto]")
@click.option("--semantic", help=f"Semantic backbone variant.  [default: {DEFAULTS.backbones.semantic}]")
@click.option("--motion", help=f"Motion backbone variant.  [default: {DEFAULTS.backbones.motion}]")
@click.option("--semantic-weights", help="DINOv3 weights: local directory, or a hub id on an online machine.")
@click.option("--motion-weights", help="I3D weights: local checkpoint file, or 'pretrained' to download.")
@click.option("--motion-layer", type=click.Choice(["res2", "res3", "res4", "res5"]), help=f"I3D stage to tap.  [default: {DEFAULTS.backbones.motion_layer}]")
@click.option("--random-init", is_flag=True, default=None, help="Seeded random weights, same architectures (no download).")
@click.option("--seed", type=int, help=f"Seed for --random-init.  [default: {DEFAULTS.backbones.seed}]")
@click.option("--limit", type=int, help="Only the first N clips of the split.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@user_errors
def extract(config_file: Path | None, shard: str | None, limit: int | None, progress: bool, dataset: str, data_root: Path,
            split: str, cache: Path, **options: Any) -> None:
    """Decode, sample, run both frozen backbones and write the cache. Resumable: re-run the same command."""
    from pipeline.cli_support import extraction_config, run_extract_command
    from pipeline.sharding import parse_shard

    cfg = extraction_config(config_file, options)
    run_extract_command(dataset, data_root, split, cache, cfg, parse_shard(shard), limit, progress)


@main.group()
def cache() -> None:
    """Inspect and check a feature cache."""


@cache.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def cache_info(path: Path, as_json: bool) -> None:
    """Summary of a cache: clips, shards done, arrays, backbones, provenance."""
    from pipeline.cache.inspect import cache_info as info
    from pipeline.cli_support import print_info

    summary = info(path)
    click.echo(json.dumps(summary, indent=2)) if as_json else print_info(summary)


@cache.command("verify", epilog=EPILOG)
@click.argument("path", type=click.Path(path_type=Path))
@user_errors
def cache_verify(path: Path) -> None:
    """Exit non-zero naming every missing, failed or non-finite clip."""
    from pipeline.cache.inspect import verify_cache

    problems = verify_cache(path)
    for problem in problems:
        click.echo(f"{problem['problem']}\t{problem['clip_id']}\t{problem['detail']}")
    if problems:
        click.echo(f"{path}: {len(problems)} problem clip(s)", err=True)
        sys.exit(1)
    click.echo(f"{path}: ok")


@main.command(epilog=EPILOG)
@click.option("--dataset", type=click.Choice(["ssv2", "epic100"]), required=True, help="Which on-disk layout to write.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write the dataset into.")
@click.option("--train", type=int, default=96, help="Training clips.")
@click.option("--validation", type=int, default=48, help="Validation clips.")
@click.option("--seed", type=int, default=0, help="Random seed.")
@user_errors
def synth(dataset: str, out: Path, train: int, validation: int, seed: int) -> None:
    """Write a small synthetic dataset whose labels need both appearance and motion."""
    if dataset == "ssv2":
        from pipeline.synth.ssv2 import make_ssv2

        make_ssv2(out, train=train, validation=validation, seed=seed)
    else:
        from pipeline.synth.epic100 import make_epic100

        make_epic100(out, train=train, validation=validation, seed=seed)
    click.echo(f"wrote a synthetic {dataset} dataset to {out}")


@main.group()
def bench() -> None:
    """Benchmarks that print a table (never part of the test suite's pass/fail)."""


@bench.command("extract")
@click.option("--semantic", default=DEFAULTS.backbones.semantic, help="Semantic backbone variant.")
@click.option("--motion", default=DEFAULTS.backbones.motion, help="Motion backbone variant.")
@click.option("--batch-size", type=int, default=DEFAULTS.run.batch_size, help="Clips per model batch.")
@click.option("--workers", type=int, default=DEFAULTS.run.workers, help="Decoder processes.")
@click.option("--clips", type=int, default=32, help="Synthetic SSv2 clips to extract.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option("--work-dir", type=click.Path(path_type=Path), help="Where to put the generated data and caches. [default: a temporary folder]")
@user_errors
def bench_extract(**options: Any) -> None:
    """Decode-only, model-only and end-to-end clips/s: is a run bound by decoding or by compute?"""
    from pipeline.bench import bench_extract as run

    run(**options)


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-run"), help="Folder for the demo's data and caches.")
@click.option("--clips", type=int, default=24, help="Synthetic clips per split.")
@user_errors
def demo(out: Path, clips: int) -> None:
    """The whole chain on a generated dataset, on CPU: synth -> extract (random init) -> verify."""
    from pipeline.demo import run_demo

    run_demo(out, clips)


if __name__ == "__main__":
    main()
