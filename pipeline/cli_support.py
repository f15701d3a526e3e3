"""What the extraction commands do beyond parsing: merge options into the config, show progress and summaries."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from pipeline.config_loading import apply_overrides, load_yaml_overrides
from pipeline.extract_config import ExtractConfig

# Command-line option -> (config section, field)
OPTION_FIELDS = {
    "shard_size": ("run", "shard_size"),
    "batch_size": ("run", "batch_size"),
    "workers": ("run", "workers"),
    "device": ("run", "device"),
    "precision": ("run", "precision"),
    "semantic": ("backbones", "semantic"),
    "motion": ("backbones", "motion"),
    "semantic_weights": ("backbones", "semantic_weights"),
    "motion_weights": ("backbones", "motion_weights"),
    "motion_layer": ("backbones", "motion_layer"),
    "random_init": ("backbones", "random_init"),
    "seed": ("backbones", "seed"),
}


def extraction_config(config_file: Path | None, options: dict[str, Any]) -> ExtractConfig:
    """Defaults, then the YAML file's overrides, then the options given on the command line."""
    cfg = ExtractConfig()
    if config_file is not None:
        cfg = apply_overrides(cfg, load_yaml_overrides(config_file), where=str(config_file))
    overrides: dict[str, dict[str, Any]] = {}
    for option, value in options.items():
        if value is not None:
            section, field = OPTION_FIELDS[option]
            overrides.setdefault(section, {})[field] = value
    return apply_overrides(cfg, overrides, where="command line")


def run_extract_command(
    dataset: str,
    data_root: Path,
    split: str,
    cache: Path,
    cfg: ExtractConfig,
    shard: tuple[int, int],
    limit: int | None,
    progress: bool,
) -> None:
    from pipeline.extract import run_extraction

    console = Console(stderr=True)
    columns = [
        TextColumn("extract"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    # Started on the first batch, so set-up errors print alone and a finished cache shows no empty bar.
    bar = Progress(*columns, console=console, disable=not progress)
    task = bar.add_task("extract", total=None, rate="", start=False)

    first: list[int] = []

    def on_progress(handled: int, total: int) -> None:
        if not first:  # the rate counts from the first batch, not from model loading
            first.append(handled)
            bar.start()
            bar.start_task(task)
        elapsed = bar.tasks[0].elapsed or 0.0
        rate = f"{(handled - first[0]) / elapsed:.2f} clips/s" if elapsed and handled > first[0] else ""
        bar.update(task, completed=handled, total=total, rate=rate)

    try:
        summary = run_extraction(dataset, data_root, split, cache, cfg, shard, limit, on_progress)
    finally:
        bar.stop()
    table = Table(title=f"extract {dataset}/{split} -> {cache} (shard {shard[0]}/{shard[1]})")
    for column in (
        "clips in cache",
        "owned by this job",
        "extracted",
        "failed",
        "skipped (done)",
        "seconds",
        "clips/s",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        str(summary.clips),
        str(summary.owned),
        str(summary.extracted),
        str(summary.failed),
        str(summary.skipped),
        f"{summary.seconds:.1f}",
        f"{summary.clips_per_second:.2f}",
    )
    Console().print(table)
    if summary.failed:
        console.print(
            f"{summary.failed} clip(s) failed: listed in {cache}/failures/; `cli cache verify {cache}` names them"
        )


def print_info(info: dict[str, Any]) -> None:
    table = Table(title=f"cache {info['path']}", show_header=False)
    for key in ("dataset", "split", "num_clips", "done", "failed", "shard_size", "shards_done"):
        table.add_row(key, str(info[key]))
    for name, array in info["arrays"].items():
        table.add_row(f"array {name}", f"{array['dtype']} {tuple(array['shape'])}")
    for kind, spec in (info["backbones"] or {}).items():
        weights = spec.get("weights_sha256") or (
            f"random seed {spec['random_seed']}" if "random_seed" in spec else spec.get("weights")
        )
        table.add_row(
            f"{kind} backbone",
            escape(f"{spec['name']} {spec['layer']} [{spec['tokens']}, {spec['dim']}] weights: {weights}"),
        )
    table.add_row("created with", " ".join(f"{k}={v}" for k, v in (info["created_with"] or {}).items()))
    Console(file=sys.stdout).print(table)
