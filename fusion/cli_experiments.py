"""Commands that run and compare experiments: `cli sweep`, `cli compare`, `cli bench sweep`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fusion.data.config import DATA_MODES, SELECT_ON
from fusion.experiments.presets import PHASE_MODELS, PRUNE_BENCH_GRID, SWEEP_BASELINES, SWEEP_PRESETS
from fusion.experiments.spec import PRUNE_KINDS, prune_help
from pipeline.core import strict_json
from pipeline.core.cli_base import EPILOG, device_option, user_errors

SWEEP_EXECUTORS = ("inline", "local", "slurm")  # where members run; extraction arrays have their own set


def report(paths: list[Path], baseline: str | None, out: Path | None, stage1: dict[str, Any] | None = None) -> None:
    """Collect the runs, measure each configuration's cost, print the table, write the files if `out`;
    `stage1`: a phase2-phase3 sweep's stage-1 record, for its headline lines."""
    from fusion.experiments.report import collect, holdout_warnings, measure_costs, pruned_rows, summarize
    from fusion.experiments.report_files import print_table, pruned_lines, write_report
    from pipeline.core.progress import table_console

    every = collect(paths)
    runs = [run for run in every if run.pruned_at is None]  # the table compares finished runs only
    measure_costs(runs, paths, out)
    rows = summarize(runs, baseline)
    extra = (phase_lines(stage1, rows) if stage1 is not None else []) + holdout_warnings(runs, rows)
    extra += pruned_lines(pruned_rows(every))
    print_table(rows, runs, table_console(180))
    for line in extra:
        click.echo(line)
    if out is not None:
        for path in write_report(rows, runs, out, extra, [run for run in every if run.pruned_at is not None]):
            click.echo(f"wrote {path}", err=True)


def phase_lines(stage1: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """phase2-phase3: the stage-1 winner, and Phase 2 vs Phase 3 computed from the table's own rows (the same
    runs, each counted once: n seeds, mean ± sample std)."""
    from fusion.experiments.report import changes_text, headline_keys_of
    from fusion.experiments.report_files import cell

    key = headline_keys_of(rows)[0]
    changes = changes_text(stage1["changes"])
    split, metric = stage1.get("selected_on", "validation"), stage1.get("metric", key.removeprefix("val_"))
    score = stage1.get("scores", {}).get(stage1["best"])
    lines = [f"stage 1 winner: {stage1['best']} (the highest mean {split} {metric} of its runs"
             f"{f', {score:.4f}' if score is not None else ''}"
             f"{'; optimistic: the validation clips chose it' if split == 'validation' else ''})"]  # fmt: skip
    tied = stage1.get("tied", [])
    if len(tied) > 1:
        lines.append(f"warning: {len(tied)} stage-1 configurations tied at {score:.4f} on the {split} "
                     f"({', '.join(tied)}): the first listed won; the {split} cannot tell them apart")  # fmt: skip
    for phase, model in PHASE_MODELS.items():
        row = next((r for r in rows if r["model"] == model and r["changes"] == changes), None)
        if row is not None:
            lines.append(f"{phase} ({model}): {key.removeprefix('val_')} {cell(row, key)} over {row['seeds']} seeds")
    return lines


@click.command(epilog=EPILOG)
@click.option("--preset", type=click.Choice(list(SWEEP_PRESETS)), help="A built-in sweep.")
@click.option("--spec", "spec_file", type=click.Path(path_type=Path), help="A sweep spec (YAML; docs/experiments.md).")
@click.option("--cache", type=click.Path(path_type=Path), required=True, help="Training cache.")
@click.option("--val-cache", type=click.Path(path_type=Path), required=True, help="Validation cache.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Sweep folder: runs/, results, report.")
@click.option("--model", help="The base model (lr-wd sweeps it; a spec's base.model otherwise).")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs of every member.  [default: the preset's 30]")
@click.option(
    "--executor",
    type=click.Choice(SWEEP_EXECUTORS),
    default="inline",
    help="inline: one process, caches read once; local/slurm: one submitit task per member.",
)
@click.option(
    "--lockstep/--one-at-a-time",
    default=True,
    help="Inline: members that read the caches alike (batch size, data order) step together on each batch read, "
    "or train one after another.",
)
@click.option(
    "--stack/--no-stack",
    default=True,
    help="Lockstep: members of one architecture and shapes (seeds, lr / weight-decay / dropout grids) step as one "
    "stacked model where the model has a stacked form (every model with an SSv2 classifier; not the verb/noun "
    "heads), or each takes its own step.",
)
@click.option("--baseline", help="Configuration (or model) the report's differences are taken to.")
@click.option("--allow-partial", is_flag=True, help="Use caches with clips not extracted yet (counted in metrics).")
@click.option(
    "--select-on",
    type=click.Choice(SELECT_ON),
    help="Clips that choose each member's epoch and the best configurations: holdout (a fixed part of the training "
    "cache, never trained on) or validation (optimistic).  [default: the spec's data.select_on, else holdout]",
)
@click.option("--prune", type=click.Choice(PRUNE_KINDS), help=prune_help())
@click.option("--progress/--no-progress", default=None, help="Progress bar.  [default: on a terminal; else log lines]")
@user_errors
def sweep(
    preset: str | None,
    spec_file: Path | None,
    cache: Path,
    val_cache: Path,
    out: Path,
    model: str | None,
    epochs: int | None,
    executor: str,
    lockstep: bool,
    stack: bool,
    baseline: str | None,
    allow_partial: bool,
    select_on: str | None,
    prune: str | None,
    progress: bool | None,
) -> None:
    """Train an ablation set or a grid over one cache, then write DIR/results.csv, DIR/report.md and plots.

    Each member is an ordinary run folder DIR/runs/<member>/. Re-run the same command after an interruption:
    finished members are kept as they are, interrupted ones resume from their last checkpoint. With --prune
    halving, members of hopeless configurations stop at the rungs (metrics.json: pruned_at), and the report lists
    them apart.
    """
    from fusion.cli_fusion import training_exits
    from fusion.experiments.runner import SweepRun, run_sweep

    run = SweepRun(cache, val_cache, out, epochs, allow_partial, lockstep, stack)
    with training_exits("{} holds the member in flight; re-run the same command to go on"):
        run_sweep(preset, spec_file, model, run, executor, progress, select_on, prune)
    report(
        [out],
        baseline or SWEEP_BASELINES.get(preset or ""),
        out,
        strict_json.read(out / "stage1.json", "stage 1 record") if preset == "phase2-phase3" else None,
    )


@click.command(epilog=EPILOG)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--baseline", help="Configuration (or model) the differences are taken to.")
@click.option("--out", type=click.Path(path_type=Path), help="Folder for results.csv, report.md and the PNGs.")
@user_errors
def compare(paths: tuple[Path, ...], baseline: str | None, out: Path | None) -> None:
    """One table of runs (run folders and sweep folders): costs and validation metrics, mean ± std over seeds."""
    from pipeline.core.paths import output_folder

    if out is not None:
        output_folder(out, "--out")
    report(list(paths), baseline, out)


@click.command("sweep")
@click.option("--cache", type=click.Path(path_type=Path), required=True, help="Training cache.")
@click.option("--val-cache", type=click.Path(path_type=Path), required=True, help="Validation cache.")
@click.option("--members", type=click.IntRange(min=1), default=4, help="Members (seeds 0..K-1) to train.")
@click.option("--epochs", type=click.IntRange(min=1), default=2, help="Epochs per member.")
@click.option("--model", default="late_fusion", help="Model of every member.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, help="Clips per step.")
@click.option(
    "--data-mode",
    type=click.Choice(DATA_MODES),
    default="ram",
    show_default=True,
    help="Where the training features live (streamed: read from the cache as training goes).",
)
@click.option(
    "--prune",
    is_flag=True,
    help=f"Instead: a grid of {' x '.join(str(len(v)) for v in PRUNE_BENCH_GRID.values())} configurations "
    f"({' x '.join(PRUNE_BENCH_GRID)}, seed 0) trained to the end and with --prune halving: member-epochs, wall "
    "time and the configuration each "
    "selects (--members is not used).",
)
@click.option("--stack/--no-stack", default=True, help="--prune: the grid's members step as one stacked model.")
@device_option
@user_errors
def bench_sweep(
    cache: Path,
    val_cache: Path,
    members: int,
    epochs: int,
    model: str,
    batch_size: int,
    data_mode: str,
    prune: bool,
    stack: bool,
    device: str,
) -> None:
    """Wall time of K members in one inline sweep (stacked into one model where the model stacks, side by side in
    lockstep, one after another) against K separate fuse-train runs; or (--prune) what pruning saves."""
    if prune:
        from fusion.benches.prune import bench_prune

        bench_prune(cache, val_cache, epochs, model, batch_size, data_mode, device, stack)
        return
    from fusion.benches.sweep import bench_sweep as run

    run(cache, val_cache, members, epochs, model, batch_size, data_mode, device)
