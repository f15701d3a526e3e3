"""`cli cache …`: inspect, check, summarise, convert and merge caches."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.core import strict_json
from pipeline.core.cli_base import EPILOG, user_errors


@click.group()
def cache() -> None:
    """Inspect and check a feature cache."""


@cache.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def cache_info(path: Path, as_json: bool) -> None:
    """Summary of a cache: clips, shards done, arrays, backbones, provenance."""
    from pipeline.cache.inspect import cache_info as info
    from pipeline.extract_command import print_info

    summary = info(path)
    click.echo(strict_json.dumps(summary, indent=2)) if as_json else print_info(summary)


@cache.command("verify", epilog=EPILOG)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--deep", is_flag=True, help="Also read shards not marked done, and the clip-id and label arrays.")
@user_errors
def cache_verify(path: Path, deep: bool) -> None:
    """Exit non-zero naming every missing, failed or non-finite clip and every unreadable shard file."""
    from pipeline.cache.inspect import verify_cache

    problems = verify_cache(path, deep)
    for problem in problems:
        click.echo(f"{problem['problem']}\t{problem['clip_id']}\t{problem['detail']}")
    if problems:
        click.echo(f"{path}: {len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo(f"{path}: ok")


@cache.command("repair", epilog=EPILOG)
@click.argument("path", type=click.Path(path_type=Path))
@user_errors
def cache_repair(path: Path) -> None:
    """Mark shards whose files are damaged (truncated, bad checksum) as not done: the next `cli extract` with the
    same settings redoes exactly them. Reads every shard. Nothing is deleted: the damaged files move to the
    cache's quarantine/ folder (named below), which that extract empties; a cache whose metadata disagrees with
    its stored bytes is refused, untouched."""
    from pipeline.cache.repair import repair_cache

    kept = repair_cache(path)
    if not kept:
        click.echo(f"{path}: every shard is readable; nothing to repair")
        return
    click.echo(f"{path}: {len(kept)} damaged shard(s) marked for re-extraction: {', '.join(map(str, kept))}")
    for shard, files in kept.items():
        for file in files:
            click.echo(f"shard {shard}: kept {file}")
    click.echo("re-run the `cli extract` command that made the cache to redo them", err=True)


@cache.command("stats")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--scheduler", envvar="DASK_SCHEDULER_ADDRESS", help="dask-distributed scheduler address.  [default: local threads]"
)
@click.option(
    "--allow-partial",
    is_flag=True,
    help="Compute them on a cache with clips not extracted yet (recorded as partial; training refuses them once "
    "the cache has changed).",
)
@user_errors
def cache_stats(path: Path, scheduler: str | None, allow_partial: bool) -> None:
    """Per-channel mean/std, token norms and NaN counts (out of core, one dask task per shard), saved in the attrs
    with the clips they cover. A cache still being extracted is refused."""
    from pipeline.cache.stats import compute_stats
    from pipeline.core.paths import writing

    writing(path)
    stats = compute_stats(path, scheduler, allow_partial)
    for name, values in stats.items():
        click.echo(
            f"{name}: {len(values['mean'])} channels, mean token norm {values['mean_token_norm']:.3f}, "
            f"non-finite clips {values['non_finite_clips']}"
        )


@cache.command("export")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["hdf5"]), default="hdf5", help="Output format.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="File to write (e.g. features.h5).")
@user_errors
def cache_export(path: Path, fmt: str, out: Path) -> None:
    """Write the cache as one HDF5 file (a dataset per feature, clip ids, labels, done; attrs as JSON)."""
    from pipeline.cache.hdf5 import export_hdf5
    from pipeline.core.paths import output_file

    click.echo(f"wrote {export_hdf5(path, output_file(out, '--out'))}")


@cache.command("import")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--cache", "target", type=click.Path(path_type=Path), required=True, help="New cache directory.")
@user_errors
def cache_import(source: Path, target: Path) -> None:
    """Make a cache from an HDF5 file written by `cache export`."""
    from pipeline.cache.hdf5 import import_hdf5
    from pipeline.core.paths import output_folder

    click.echo(f"wrote {import_hdf5(source, output_folder(target, '--cache'))}")


@cache.command("merge")
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New cache directory.")
@click.option("--shard-size", type=int, help="Clips per shard of the result.  [default: the first cache's]")
@user_errors
def cache_merge(sources: tuple[Path, ...], out: Path, shard_size: int | None) -> None:
    """Concatenate caches made with the same backbones into one (rows in the order given)."""
    from pipeline.cache.merge import merge_caches
    from pipeline.core.paths import output_folder

    click.echo(f"wrote {merge_caches(list(sources), output_folder(out, '--out'), shard_size)}")
