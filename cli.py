"""gasm-cast command line: one thin Click group; every command imports its heavy modules lazily."""
from __future__ import annotations

import functools
import json
import logging
import os
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


EXTRACT_OPTIONS = [
    click.option("--dataset", type=click.Choice(["ssv2", "epic100", "manifest"]), required=True, help="Dataset layout to read."),
    click.option("--data-root", type=click.Path(path_type=Path), required=True, help="Dataset root (or the manifest CSV)."),
    click.option("--split", default="train", help="train / validation / test (manifest: the CSV's name)."),
    click.option("--cache", type=click.Path(path_type=Path), required=True, help="Cache directory to create or resume."),
    click.option("--config", "config_file", type=click.Path(path_type=Path), help="YAML file of overrides to the defaults."),
    click.option("--shard-size", type=int, help=f"Clips per Zarr shard.  [default: {DEFAULTS.run.shard_size}]"),
    click.option("--batch-size", type=int, help=f"Clips per model batch.  [default: {DEFAULTS.run.batch_size}]"),
    click.option("--workers", type=int, help=f"Decoder processes.  [default: {DEFAULTS.run.workers}]"),
    click.option("--device", help=f"auto, cpu, cuda or cuda:N.  [default: {DEFAULTS.run.device}]"),
    click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), help="Autocast dtype (auto: bf16 on GPU, fp32 on CPU).  [default: auto]"),
    click.option("--semantic", help=f"Semantic backbone variant.  [default: {DEFAULTS.backbones.semantic}]"),
    click.option("--motion", help=f"Motion backbone variant.  [default: {DEFAULTS.backbones.motion}]"),
    click.option("--semantic-weights", help="DINOv3 weights: local directory, or a hub id on an online machine."),
    click.option("--motion-weights", help="I3D weights: local checkpoint file, or 'pretrained' to download."),
    click.option("--motion-layer", type=click.Choice(["res2", "res3", "res4", "res5"]), help=f"I3D stage to tap.  [default: {DEFAULTS.backbones.motion_layer}]"),
    click.option("--random-init", is_flag=True, default=None, help="Seeded random weights, same architectures (no download)."),
    click.option("--seed", type=int, help=f"Seed for --random-init.  [default: {DEFAULTS.backbones.seed}]"),
    click.option("--limit", type=int, help="Only the first N clips of the split."),
]


def extract_options(command: Callable) -> Callable:
    """The options `extract` and `submit extract` share."""
    for option in reversed(EXTRACT_OPTIONS):
        command = option(command)
    return command


@main.command(epilog=EPILOG)
@extract_options
@click.option("--shard", envvar="GASM_SHARD", help="K/N: this job owns shards j with j mod N == K. "
              "[default: from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, else 0/1]")
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
def submit() -> None:
    """Submit work to a cluster as a job array (SLURM through submitit, or local processes)."""


@submit.command("extract", epilog=EPILOG)
@extract_options
@click.option("--tasks", type=int, default=8, help="Array tasks; pending shards are bin-packed onto them by cost.")
@click.option("--executor", type=click.Choice(["auto", "slurm", "local"]), default="auto", help="auto: SLURM where available.")
@click.option("--partition", envvar="SLURM_PARTITION", help="SLURM partition.")
@click.option("--gpus", type=int, default=1, help="GPUs per task.")
@click.option("--cpus", type=int, default=10, help="CPUs per task (decoders need them).")
@click.option("--mem-gb", type=float, help="Memory per task.")
@click.option("--time-min", type=int, default=240, help="Time limit per task in minutes.")
@click.option("--parallelism", type=int, default=64, help="Array tasks running at once.")
@click.option("--wait", is_flag=True, help="Wait for the tasks and report (always for --executor local).")
@user_errors
def submit_extract(config_file: Path | None, limit: int | None, dataset: str, data_root: Path, split: str, cache: Path,
                   tasks: int, executor: str, partition: str | None, gpus: int, cpus: int, mem_gb: float | None,
                   time_min: int, parallelism: int, wait: bool, **options: Any) -> None:
    """Run `extract` as a job array; re-submit the same command to finish whatever is not done."""
    from pipeline.cli_support import extraction_config
    from pipeline.cluster.submit import ArraySettings, jobs_folder, submit_extract as submit_array

    cfg = extraction_config(config_file, options)
    array = ArraySettings(tasks, executor, partition, gpus, cpus, mem_gb, time_min, parallelism)
    jobs, plan = submit_array(dataset, data_root, split, cache, cfg, array, limit)
    if not jobs:
        click.echo(f"{cache}: all {plan['done_shards']} shards are done; nothing to submit")
        return
    click.echo(f"submitted {len(jobs)} tasks for {plan['pending_shards']} pending shards: {jobs[0].job_id.split('_')[0]} "
               f"(scripts, logs and plan in {jobs_folder(cache)})")
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


def _shape(text: str) -> tuple[int, int]:
    try:
        tokens, dim = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected TOKENSxDIM such as 196x768, got {text!r}") from None
    return tokens, dim


@bench.command("fusion")
@click.option("--semantic-shape", default="196x768", help="Semantic tokens x width.")
@click.option("--motion-shape", default="8x512", help="Motion tokens x width.")
@click.option("--batch-sizes", default="1,8,64,256", help="Comma-separated batch sizes.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option("--repeats", type=int, default=3, help="Timed steps per measurement (median).")
@user_errors
def bench_fusion(semantic_shape: str, motion_shape: str, batch_sizes: str, device: str, repeats: int) -> None:
    """FLOPs, training-step memory and time: B-CAST vs full-width cross-attention, GASM-CAST vs vanilla."""
    from fusion.bench import bench_fusion as run

    run(_shape(semantic_shape), _shape(motion_shape), [int(b) for b in batch_sizes.split(",")], device, repeats)


@main.command()
@click.option("--semantic-shape", default="196x768", help="Semantic tokens x width (as in a cache).")
@click.option("--motion-shape", default="8x512", help="Motion tokens x width (as in a cache).")
@click.option("--classes", type=int, default=174, help="Classes of the single-label task (SSv2).")
@click.option("--verbs", type=int, default=97, help="Verb classes (EPIC-KITCHENS-100).")
@click.option("--nouns", type=int, default=300, help="Noun classes (EPIC-KITCHENS-100).")
@user_errors
def models(semantic_shape: str, motion_shape: str, classes: int, verbs: int, nouns: int) -> None:
    """Every registered fusion model with its trainable parameters, checked against the 20M budget."""
    from rich.console import Console
    from rich.table import Table

    from fusion.models import MODELS, PARAMETER_BUDGET, build_model, count_trainable

    (_, ds), (_, dm) = _shape(semantic_shape), _shape(motion_shape)
    table = Table(title=f"fusion models for semantic {semantic_shape}, motion {motion_shape}")
    for column in ("model", f"label ({classes})", f"verb/noun ({verbs}/{nouns})", f"< {PARAMETER_BUDGET / 1e6:.0f}M", "what"):
        table.add_column(column, justify="left" if column in ("model", "what") else "right")
    over = []
    for name, entry in MODELS.items():
        counts = [count_trainable(build_model(name, ds, dm, labels)) for labels in ({"label": classes}, {"verb": verbs, "noun": nouns})]
        ok = max(counts) < PARAMETER_BUDGET
        over += [] if ok else [name]
        table.add_row(name, f"{counts[0]:,}", f"{counts[1]:,}", "yes" if ok else "NO", entry.description)
    Console().print(table)
    if over:
        click.echo(f"over the parameter budget: {', '.join(over)}", err=True)
        sys.exit(1)


@main.command("fuse-train", epilog=EPILOG)
@click.option("--cache", type=click.Path(path_type=Path), required=True, envvar="GASM_CACHE", help="Training cache.")
@click.option("--val-cache", type=click.Path(path_type=Path), required=True, envvar="GASM_VAL_CACHE", help="Validation cache.")
@click.option("--model", default="gasm_cast", help="Registered model (see `cli models`).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder: checkpoints, metrics, curves.")
@click.option("--preset", default="default", help="default (heads on cached features) or seed_recipe (the design notes').")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="YAML overrides of the training config.")
@click.option("--epochs", type=int, help="Epochs.  [default: 30]")
@click.option("--lr", type=float, help="Peak learning rate.  [default: 3e-4]")
@click.option("--batch-size", type=int, help="Clips per step.  [default: 64]")
@click.option("--seed", type=int, help="Seed of weights, data order and augmentation.  [default: 0]")
@click.option("--device", help="auto, cpu, cuda or cuda:N.  [default: auto]")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), help="Autocast dtype.  [default: auto]")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where its last checkpoint left it.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@user_errors
def fuse_train(cache: Path, val_cache: Path, model: str, out: Path, preset: str, config_file: Path | None, resume: bool,
               progress: bool, **options: Any) -> None:
    """Train a fusion model on cached features; SIGTERM writes a checkpoint and exits 143 (resume with --resume)."""
    from fusion.commands import run_training
    from fusion.train import Preempted
    from fusion.train_config import training_config

    fields = {"epochs": ("epochs",), "lr": ("optim", "lr"), "batch_size": ("data", "batch_size"), "seed": ("seed",),
              "device": ("device",), "precision": ("precision",)}
    overrides: dict[str, Any] = {}
    for option, value in options.items():
        if value is not None:
            *sections, key = fields[option]
            target = overrides
            for section in sections:
                target = target.setdefault(section, {})
            target[key] = value
    try:
        summary = run_training(cache, val_cache, model, out, training_config(preset, config_file, overrides), resume, progress)
    except Preempted as exc:
        click.echo(f"pre-empted: checkpoint written to {exc}; continue with the same command and --resume", err=True)
        sys.exit(143)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, process 0 reports
        click.echo(json.dumps(summary["best"], indent=2))


@main.command("fuse-eval", epilog=EPILOG)
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="A run's best.pt or last.pt.")
@click.option("--cache", type=click.Path(path_type=Path), required=True, help="Cache to evaluate on.")
@click.option("--predictions", type=click.Path(path_type=Path), help="Write each clip's top-5 predictions and labels (JSON lines).")
@click.option("--batch-size", type=int, default=256, help="Clips per forward pass.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@user_errors
def fuse_eval(checkpoint: Path, cache: Path, predictions: Path | None, batch_size: int, device: str) -> None:
    """Metrics of a trained model on a cache, as JSON."""
    from fusion.evaluate import evaluate_checkpoint

    click.echo(json.dumps(evaluate_checkpoint(checkpoint, cache, batch_size, device, predictions), indent=2))


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="A run's best.pt or last.pt.")
@click.option("--cache", type=click.Path(path_type=Path), required=True, help="Cache holding the clip.")
@click.option("--clip", help="Clip id.  [default: the first usable clip]")
@click.option("--out", type=click.Path(path_type=Path), default=Path("attention"), help="Folder for the PNG files.")
@click.option("--data-root", type=click.Path(path_type=Path), help="Dataset root, if it moved since extraction (for the frame).")
@user_errors
def visualize(checkpoint: Path, cache: Path, clip: str | None, out: Path, data_root: Path | None) -> None:
    """Attention maps of one clip as PNG: semantic graph, motion graph, each fusion layer."""
    from fusion.visualize import visualize_clip

    for path in visualize_clip(checkpoint, cache, out, clip, data_root):
        click.echo(str(path))


@cache.command("stats")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--scheduler", envvar="DASK_SCHEDULER_ADDRESS", help="dask-distributed scheduler address.  [default: local threads]")
@user_errors
def cache_stats(path: Path, scheduler: str | None) -> None:
    """Per-channel mean/std, token norms and NaN counts (out of core, one dask task per shard), saved in the attrs."""
    from pipeline.cache.stats import compute_stats

    stats = compute_stats(path, scheduler)
    for name, values in stats.items():
        click.echo(f"{name}: {len(values['mean'])} channels, mean token norm {values['mean_token_norm']:.3f}, "
                   f"non-finite clips {values['non_finite_clips']}")


@cache.command("export")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["hdf5"]), default="hdf5", help="Output format.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="File to write (e.g. features.h5).")
@user_errors
def cache_export(path: Path, fmt: str, out: Path) -> None:
    """Write the cache as one HDF5 file (a dataset per feature, clip ids, labels, done; attrs as JSON)."""
    from pipeline.cache.hdf5 import export_hdf5

    click.echo(f"wrote {export_hdf5(path, out)}")


@cache.command("import")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--cache", "target", type=click.Path(path_type=Path), required=True, help="New cache directory.")
@user_errors
def cache_import(source: Path, target: Path) -> None:
    """Make a cache from an HDF5 file written by `cache export`."""
    from pipeline.cache.hdf5 import import_hdf5

    click.echo(f"wrote {import_hdf5(source, target)}")


@cache.command("merge")
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New cache directory.")
@click.option("--shard-size", type=int, help="Clips per shard of the result.  [default: the first cache's]")
@user_errors
def cache_merge(sources: tuple[Path, ...], out: Path, shard_size: int | None) -> None:
    """Concatenate caches made with the same backbones into one (rows in the order given)."""
    from pipeline.cache.merge import merge_caches

    click.echo(f"wrote {merge_caches(list(sources), out, shard_size)}")


@bench.command("loader")
@click.option("--cache", type=click.Path(path_type=Path), required=True, help="Training cache.")
@click.option("--model", default="gasm_cast", help="Model whose training step the loader must keep up with.")
@click.option("--batch-size", type=int, default=64, help="Clips per step.")
@click.option("--steps", type=int, default=10, help="Batches to time.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@user_errors
def bench_loader(cache: Path, model: str, batch_size: int, steps: int, device: str) -> None:
    """Loader clips/s beside the clips/s a training step consumes: the loader must not be the bottleneck."""
    from fusion.bench_loader import bench_loader as run

    run(cache, model, batch_size, steps, device)


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-run"), help="Folder for the demo's data, caches and runs.")
@click.option("--clips", type=int, default=48, help="Synthetic training clips (validation gets half).")
@click.option("--epochs", type=int, default=15, help="Training epochs per model.")
@user_errors
def demo(out: Path, clips: int, epochs: int) -> None:
    """The whole chain on a generated dataset, on CPU: synth -> extract -> fuse-train (3 models) -> fuse-eval -> visualize."""
    from fusion.demo import run_demo

    run_demo(out, clips, epochs)


if __name__ == "__main__":
    main()
