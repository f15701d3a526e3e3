"""What the extraction commands do beyond parsing: show progress and summaries."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.core.progress import Reporter
from pipeline.extract_config import ExtractConfig

if TYPE_CHECKING:
    from pipeline.datasets import DataSource


def run_extract_command(
    source: DataSource,
    cache: Path,
    cfg: ExtractConfig,
    shard: tuple[int, int],
    live: bool | None,
    retry_failed: bool = False,
) -> None:
    """Extract with progress on stderr (a bar on a terminal, else a log line every 30 s) and a summary table."""
    from pipeline.extract import run_extraction

    console = Console(stderr=True)
    with Reporter("extract", "clips", live=live) as reporter:
        summary = run_extraction(source, cache, cfg, shard, reporter.update, retry_failed=retry_failed)
    table = Table(title=f"extract {source.dataset}/{source.split} -> {cache} (shard {shard[0]}/{shard[1]})")
    columns = ("clips in cache", "owned by this job", "extracted", "failed", "skipped (done)", "seconds", "clips/s")
    for column in columns:
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
    Console(file=sys.stdout).print(table)
    if summary.busy:
        console.print(
            f"{summary.busy} clip(s) of this job were being extracted by another running process and were left to it; "
            f"`cli cache verify {cache}` says when the cache is complete"
        )
    if summary.failed:
        console.print(
            f"{summary.failed} clip(s) failed: listed in {cache}/failures/; `cli cache verify {cache}` names them; "
            "after fixing the files, re-run with --retry-failed"
        )


def _layout(spec: dict[str, Any]) -> str:
    """How a backbone's tokens are laid out in the cache: frames (kept or reduced), pooling, grid, views."""
    parts = [f"{spec['frames']} frames" if "frames" in spec else None]
    if spec.get("tubelet", 1) > 1:  # a video transformer: a token step a tubelet of frames
        parts.append(f"a step every {spec['tubelet']} frames")
    if "reduce" in spec:
        parts.append(f"reduce {spec['reduce']}")
    if "pool" in spec:
        parts.append(f"pool {spec['pool']}x{spec['pool']}")
    if "grid" in spec:
        parts.append(f"grid {spec['grid']}x{spec['grid']} a {'step' if 'steps' in spec else 'frame'}")
    views = spec.get("views")
    parts.append(f"views {views['spatial']} spatial x {views['temporal']} temporal" if views else "one view")
    return ", ".join(p for p in parts if p)


def print_info(info: dict[str, Any]) -> None:
    table = Table(title=f"cache {info['path']}", show_header=False)
    for key in ("dataset", "split", "subset", "num_clips", "done", "failed", "shard_size", "shards_done", "views"):
        table.add_row(key, str(info[key]))
    kept = info["quarantined"]
    if kept:
        more = " ..." if len(kept) > 4 else ""
        table.add_row("quarantined", escape(f"{len(kept)} file(s) in quarantine/: {', '.join(kept[:4])}{more}"))
    for name, array in info["arrays"].items():
        table.add_row(f"array {name}", f"{array['dtype']} {tuple(array['shape'])}")
    for kind, spec in (info["backbones"] or {}).items():
        weights = spec.get("weights_sha256") or (
            f"random seed {spec['random_seed']}" if "random_seed" in spec else spec.get("weights")
        )
        layer = f" {spec['layer']}" if "layer" in spec else ""  # synthetic caches have none
        table.add_row(
            f"{kind} backbone",
            escape(f"{spec.get('name')}{layer} [{spec.get('tokens')}, {spec.get('dim')}] weights: {weights}"),
        )
        table.add_row(f"{kind} layout", escape(_layout(spec)))
    table.add_row("created with", " ".join(f"{k}={v}" for k, v in (info["created_with"] or {}).items()))
    Console(file=sys.stdout).print(table)
