"""Commands that make caches: extract, submit extract, synth, bench extract."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pipeline.cli_base import EPILOG, user_errors
from pipeline.extract_config import ExtractConfig

DEFAULTS = ExtractConfig()

EXTRACT_OPTIONS = [
    click.option(
        "--dataset", type=click.Choice(["ssv2", "epic100", "manifest"]), required=True, help="Dataset layout to read."
    ),
    click.option(
        "--data-root", type=click.Path(path_type=Path), required=True, help="Dataset root (or the manifest CSV)."
    ),
    click.option("--split", default="train", help="train / validation / test (manifest: the CSV's name)."),
    click.option(
        "--cache", type=click.Path(path_type=Path), required=True, help="Cache directory to create or resume."
    ),
    click.option(
        "--config", "config_file", type=click.Path(path_type=Path), help="YAML file of overrides to the defaults."
    ),
    click.option("--shard-size", type=int, help=f"Clips per Zarr shard.  [default: {DEFAULTS.run.shard_size}]"),
    click.option("--batch-size", type=int, help=f"Clips per model batch.  [default: {DEFAULTS.run.batch_size}]"),
    click.option("--workers", type=int, help=f"Decoder processes.  [default: {DEFAULTS.run.workers}]"),
    click.option("--device", help=f"auto, cpu, cuda or cuda:N.  [default: {DEFAULTS.run.device}]"),
    click.option(
        "--precision",
        type=click.Choice(["auto", "fp32", "fp16", "bf16"]),
        help="Autocast dtype (auto: bf16 on GPU, fp32 on CPU).  [default: auto]",
    ),
    click.option("--semantic", help=f"Semantic backbone variant.  [default: {DEFAULTS.backbones.semantic}]"),
    click.option("--motion", help=f"Motion backbone variant.  [default: {DEFAULTS.backbones.motion}]"),
    click.option("--semantic-weights", help="DINOv3 weights: local directory, or a hub id on an online machine."),
    click.option("--motion-weights", help="I3D weights: local checkpoint file, or 'pretrained' to download."),
    click.option(
        "--motion-layer",
        type=click.Choice(["res2", "res3", "res4", "res5"]),
        help=f"I3D stage to tap.  [default: {DEFAULTS.backbones.motion_layer}]",
    ),
    click.option(
        "--random-init", is_flag=True, default=None, help="Seeded random weights, same architectures (no download)."
    ),
    click.option("--seed", type=int, help=f"Seed for --random-init.  [default: {DEFAULTS.backbones.seed}]"),
    click.option("--limit", type=int, help="Only the first N clips of the split."),
]


def extract_options(command: Callable) -> Callable:
    """The options `extract` and `submit extract` share."""
    for option in reversed(EXTRACT_OPTIONS):
        command = option(command)
    return command


@click.command(epilog=EPILOG)
@extract_options
@click.option(
    "--shard",
    envvar="GASM_SHARD",
    help="K/N: this job owns shards j with j mod N == K. "
    "[default: from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, else 0/1]",
)
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@user_errors
def extract(
    config_file: Path | None,
    shard: str | None,
    limit: int | None,
    progress: bool,
    dataset: str,
    data_root: Path,
    split: str,
    cache: Path,
    **options: Any,
) -> None:
    """Decode, sample, run both frozen backbones and write the cache. Resumable: re-run the same command."""
    from pipeline.cli_support import extraction_config, run_extract_command
    from pipeline.sharding import parse_shard

    cfg = extraction_config(config_file, options)
    run_extract_command(dataset, data_root, split, cache, cfg, parse_shard(shard), limit, progress)


@click.group()
def submit() -> None:
    """Submit work to a cluster as a job array (SLURM through submitit, or local processes)."""


@submit.command("extract", epilog=EPILOG)
@extract_options
@click.option("--tasks", type=int, default=8, help="Array tasks; pending shards are bin-packed onto them by cost.")
@click.option(
    "--executor", type=click.Choice(["auto", "slurm", "local"]), default="auto", help="auto: SLURM where available."
)
@click.option("--partition", envvar="SLURM_PARTITION", help="SLURM partition.")
@click.option("--gpus", type=int, default=1, help="GPUs per task.")
@click.option("--cpus", type=int, default=10, help="CPUs per task (decoders need them).")
@click.option("--mem-gb", type=float, help="Memory per task.")
@click.option("--time-min", type=int, default=240, help="Time limit per task in minutes.")
@click.option("--parallelism", type=int, default=64, help="Array tasks running at once.")
@click.option("--wait", is_flag=True, help="Wait for the tasks and report (always for --executor local).")
@user_errors
def submit_extract(
    config_file: Path | None,
    limit: int | None,
    dataset: str,
    data_root: Path,
    split: str,
    cache: Path,
    tasks: int,
    executor: str,
    partition: str | None,
    gpus: int,
    cpus: int,
    mem_gb: float | None,
    time_min: int,
    parallelism: int,
    wait: bool,
    **options: Any,
) -> None:
    """Run `extract` as a job array; re-submit the same command to finish whatever is not done."""
    from pipeline.cli_support import extraction_config
    from pipeline.cluster.submit import ArraySettings, jobs_folder
    from pipeline.cluster.submit import submit_extract as submit_array

    cfg = extraction_config(config_file, options)
    array = ArraySettings(tasks, executor, partition, gpus, cpus, mem_gb, time_min, parallelism)
    jobs, plan = submit_array(dataset, data_root, split, cache, cfg, array, limit)
    if not jobs:
        click.echo(f"{cache}: all {plan['done_shards']} shards are done; nothing to submit")
        return
    click.echo(
        f"submitted {len(jobs)} tasks for {plan['pending_shards']} pending shards: {jobs[0].job_id.split('_')[0]} "
        f"(scripts, logs and plan in {jobs_folder(cache)})"
    )
    if wait or jobs[0].__class__.__name__ == "LocalJob":
        failed = 0
        for job in jobs:
            try:
                result = job.result()
                click.echo(f"task {job.job_id}: extracted {result['extracted']}, failed {result['failed']}")
            except Exception as exc:  # noqa: BLE001 - report every task, then exit non-zero
                failed += 1
                click.echo(f"task {job.job_id} did not finish: {str(exc).splitlines()[0][:200]}", err=True)
        if failed:
            click.echo(f"{failed} task(s) did not finish: re-submit the same command to complete the cache", err=True)
            sys.exit(1)


@click.command(epilog=EPILOG)
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


@click.command("extract")
@click.option("--semantic", default=DEFAULTS.backbones.semantic, help="Semantic backbone variant.")
@click.option("--motion", default=DEFAULTS.backbones.motion, help="Motion backbone variant.")
@click.option("--batch-size", type=int, default=DEFAULTS.run.batch_size, help="Clips per model batch.")
@click.option("--workers", type=int, default=DEFAULTS.run.workers, help="Decoder processes.")
@click.option("--clips", type=int, default=32, help="Synthetic SSv2 clips to extract.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path),
    help="Where to put the generated data and caches. [default: a temporary folder]",
)
@user_errors
def bench_extract(**options: Any) -> None:
    """Decode-only, model-only and end-to-end clips/s: is a run bound by decoding or by compute?"""
    from pipeline.bench import bench_extract as run

    run(**options)
