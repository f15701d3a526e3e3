"""Commands that make caches: extract, submit extract, synth, bench extract."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pipeline.cluster.array_config import ArraySettings
from pipeline.core.cli_base import EPILOG, parse_shape, shape_options, user_errors
from pipeline.core.config_loading import apply_overrides, load_yaml_overrides, validate
from pipeline.core.config_options import ConfigOptions, LazyChoice
from pipeline.core.defaults import DATASETS, SYNTH_DATASETS
from pipeline.extract_config import ExtractConfig, with_backbone_defaults

# The one mapping of extraction options to config fields; their help, choices and defaults come from the fields.
CONFIG_OPTIONS = ConfigOptions(
    ExtractConfig,
    {
        "--shard-size": "run.shard_size",
        "--batch-size": "run.batch_size",
        "--workers": "run.workers",
        "--device": "run.device",
        "--precision": "run.precision",
        "--semantic": "backbones.semantic",
        "--motion": "backbones.motion",
        "--semantic-weights": "backbones.semantic_weights",
        "--motion-weights": "backbones.motion_weights",
        "--motion-layer": "backbones.motion_layer",
        "--random-init": "backbones.random_init",
        "--seed": "backbones.seed",
    },
)
ARRAY_OPTIONS = ConfigOptions(
    ArraySettings,
    {f"--{name.replace('_', '-')}": name for name in ArraySettings.__dataclass_fields__},
    envvars={"--partition": "SLURM_PARTITION"},
)

DATASET_OPTIONS = [
    click.option("--dataset", type=click.Choice(DATASETS), required=True, help="Dataset layout to read."),
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
    click.option("--limit", type=click.IntRange(min=1), help="Only the first N clips of the split."),
    click.option(
        "--classes",
        type=click.Path(path_type=Path),
        help="Manifests: the class list (one name per line, line order = class id), shared by every split.",
    ),
    click.option(
        "--retry-failed",
        is_flag=True,
        help="Also redo finished shards that list failed clips (after the files were fixed); each is redone whole.",
    ),
]


def extract_options(command: Callable) -> Callable:
    """The options `extract` and `submit extract` share."""
    command = CONFIG_OPTIONS(command)
    for option in reversed(DATASET_OPTIONS):
        command = option(command)
    return command


def extraction_config(config_file: Path | None, options: dict[str, Any]) -> ExtractConfig:
    """Defaults, then the YAML file's overrides, then the options given on the command line; checked."""
    cfg = ExtractConfig()
    if config_file is not None:
        cfg = apply_overrides(cfg, load_yaml_overrides(config_file), where=str(config_file))
    return with_backbone_defaults(validate(CONFIG_OPTIONS.apply(cfg, options)))


@click.command(epilog=EPILOG)
@extract_options
@click.option(
    "--shard",
    envvar="GASM_SHARD",
    help="K/N: this job owns shards j with j mod N == K. "
    "[default: from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, else 0/1]",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar.  [default: on a terminal; else log lines]")
@user_errors
def extract(
    config_file: Path | None,
    shard: str | None,
    limit: int | None,
    retry_failed: bool,
    classes: Path | None,
    progress: bool | None,
    dataset: str,
    data_root: Path,
    split: str,
    cache: Path,
    **options: Any,
) -> None:
    """Decode, sample, run both frozen backbones and write the cache. Resumable: re-run the same command.

    Exits 130 on Ctrl-C: finished shards are kept, the shard in flight is redone by the next run.
    """
    from pipeline.datasets import DataSource
    from pipeline.extract_command import run_extract_command
    from pipeline.sharding import parse_shard

    cfg = extraction_config(config_file, options)
    source = DataSource(dataset, data_root, split, limit, classes)
    run_extract_command(source, cache, cfg, parse_shard(shard), progress, retry_failed)


@click.group()
def submit() -> None:
    """Submit work to a cluster as a job array (SLURM through submitit, or local processes)."""


@submit.command("extract", epilog=EPILOG)
@extract_options
@ARRAY_OPTIONS
@click.option("--wait", is_flag=True, help="Wait for the tasks and report (always for --executor local).")
@user_errors
def submit_extract(
    config_file: Path | None,
    limit: int | None,
    retry_failed: bool,
    classes: Path | None,
    dataset: str,
    data_root: Path,
    split: str,
    cache: Path,
    wait: bool,
    **options: Any,
) -> None:
    """Run `extract` as a job array; re-submit the same command to finish whatever is not done."""
    from pipeline.cluster.submit import jobs_folder
    from pipeline.cluster.submit import submit_extract as submit_array
    from pipeline.datasets import DataSource

    array = validate(ARRAY_OPTIONS.apply(ArraySettings(), options))
    cfg = extraction_config(config_file, options)
    jobs, plan = submit_array(DataSource(dataset, data_root, split, limit, classes), cache, cfg, array, retry_failed)
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


def _synth_codes() -> tuple[str, ...]:
    from pipeline.synth.features import CODES

    return CODES


@click.command(epilog=EPILOG)
@click.option("--dataset", type=click.Choice(SYNTH_DATASETS), required=True, help="Which layout to write.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write the dataset into.")
@click.option("--train", type=click.IntRange(min=1), default=96, help="Training clips.")
@click.option("--validation", type=click.IntRange(min=1), default=48, help="Validation clips.")
@click.option(
    "--test", type=click.IntRange(min=0), default=8, help="Unlabelled test clips (videos; EPIC: the challenge's split)."
)
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Random seed.")
@click.option(
    "--features",
    is_flag=True,
    help="Write feature caches (OUT/train, OUT/validation) instead of videos: for fusion experiments in seconds.",
)
@click.option(
    "--code",
    type=LazyChoice(_synth_codes),
    default="content",
    help="--features: motion classes stated by every segment (content), or only by the segments' order.",
)
@shape_options(before="--features: ")
@click.option(
    "--views",
    type=click.IntRange(min=1),
    default=1,
    help="--features: views a clip (each its signal plus its own noise), as a multi-view cache holds them.",
)
@click.option(
    "--direction-only",
    is_flag=True,
    help="ssv2 videos: one kind of object in 4 directions, so only how it moves tells the classes apart.",
)
@user_errors
def synth(
    dataset: str,
    out: Path,
    train: int,
    validation: int,
    test: int,
    seed: int,
    features: bool,
    code: str,
    semantic_shape: str,
    motion_shape: str,
    views: int,
    direction_only: bool,
) -> None:
    """Write a small synthetic dataset whose labels need both appearance and motion: videos in the dataset's
    real on-disk layout, or (--features) ready feature caches."""
    if views > 1 and not features:
        raise click.BadParameter("is for --features caches (videos: sampling.spatial_views, temporal_views)",
                                 param_hint="--views")  # fmt: skip
    if direction_only and (features or dataset != "ssv2"):
        raise click.BadParameter("is for --dataset ssv2 videos (not --features)", param_hint="--direction-only")
    if features:
        from pipeline.synth.features import make_feature_cache

        shapes = {"semantic": parse_shape(semantic_shape), "motion": parse_shape(motion_shape)}
        for split, clips in (("train", train), ("validation", validation)):
            make_feature_cache(out / split, clips, dataset, **shapes, seed=seed, split=split, code=code, views=views)
        click.echo(f"wrote synthetic {dataset} feature caches ({code}-coded motion) to {out}/train, {out}/validation")
        return
    if dataset == "ssv2":
        from pipeline.synth.ssv2 import DIRECTION_ONLY, SHAPES, make_ssv2

        shapes = DIRECTION_ONLY if direction_only else tuple(SHAPES)
        make_ssv2(out, train=train, validation=validation, test=test, seed=seed, shapes=shapes)
    else:
        from pipeline.synth.epic100 import make_epic100

        make_epic100(out, train=train, validation=validation, test=test, seed=seed)
    click.echo(f"wrote a synthetic {dataset} dataset to {out}")


BENCHED = ("--semantic", "--motion", "--batch-size", "--workers", "--device")
BENCH_OPTIONS = ConfigOptions(
    ExtractConfig,
    {flag: CONFIG_OPTIONS.options[flag] for flag in BENCHED},
)


@click.command("extract")
@BENCH_OPTIONS
@click.option("--clips", type=click.IntRange(min=2), default=32, help="Clips to time (real ones are repeated to this).")
@click.option(
    "--random-init",
    is_flag=True,
    default=True,
    help="Seeded random weights: always, the bench times the architectures at their real shapes and downloads "
    "nothing (the flag is accepted so an extract command line runs here as it is).",
)
@click.option("--dataset", type=click.Choice(DATASETS), help="Time real clips: this dataset's layout.")
@click.option("--data-root", type=click.Path(path_type=Path), help="--dataset: its root (or the manifest CSV).")
@click.option("--split", default="train", help="--dataset: the split whose clips are timed.")
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path),
    help="Where to put the generated data and caches. [default: a temporary folder]",
)
@user_errors
def bench_extract(
    clips: int,
    random_init: bool,
    work_dir: Path | None,
    dataset: str | None,
    data_root: Path | None,
    split: str,
    **options: Any,
) -> None:
    """Decode-only, model-only and end-to-end clips/s, decode per worker and per core: is a run bound by
    decoding or by compute, and how many cores does a GPU need? Generated clips by default; real ones with
    --dataset/--data-root/--split."""
    from pipeline.datasets import DataSource
    from pipeline.extract_bench import bench_extract as run

    del random_init  # always on: see the option's help
    if (dataset is None) != (data_root is None):
        raise click.BadParameter("give --dataset and --data-root together", param_hint="--dataset")
    real = DataSource(dataset, data_root, split) if dataset else None
    run(validate(BENCH_OPTIONS.apply(ExtractConfig(), options)), clips, work_dir, real)
