"""The report's outputs: the terminal table, results.csv (one row per run), report.md and the PNGs."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from fusion.experiments.report import Run, headline_keys, selected_on
from pipeline.core import atomic

SELECTED_TEXT = {
    "holdout": "its holdout (a fixed, class-stratified part of the training cache it never trained on)",
    "validation": "the validation clips themselves (optimistic: the numbers are reported on the clips that chose)",
}


def cell(row: dict[str, Any], key: str) -> str:
    """mean ± sample std over seeds; one seed has no spread to show ("n=1"), and a difference to the baseline
    has a standard error only when both sides have two seeds or more."""
    if row["seeds"] < 2:
        text = f"{row[f'{key}_mean']:.4f} (n=1)"
    else:
        text = f"{row[f'{key}_mean']:.4f} ± {row[f'{key}_std']:.4f}"
    if f"{key}_vs_baseline" in row:
        se = row[f"{key}_vs_baseline_se"]
        text += f" ({row[f'{key}_vs_baseline']:+.4f}" + (f" ± {se:.4f})" if se is not None else ", no SE: n=1)")
    return text


def columns(runs: list[Run]) -> list[tuple[str, str]]:
    keys = headline_keys(runs)
    return [
        ("configuration", "configuration"),
        ("changes", "changes"),
        ("seeds", "seeds"),
        ("parameters", "trainable parameters"),
        ("gflops_per_clip", "GFLOPs / clip (train step)"),
        ("memory_mb", "step memory MB (batch 8)"),
        ("seconds_per_epoch", "s / epoch"),
        *((key, key.removeprefix("val_") + " (mean ± std)") for key in keys),
    ]


def _format(row: dict[str, Any], key: str) -> str:
    if f"{key}_mean" in row:
        return cell(row, key)
    value = row.get(key, "")
    if isinstance(value, float):
        return f"{value:.3f}" if key != "seconds_per_epoch" else f"{value:.1f}"
    return f"{value:,}" if isinstance(value, int) and key == "parameters" else str(value)


def print_table(rows: list[dict[str, Any]], runs: list[Run], console: Console) -> None:
    table = Table(title=f"{len(runs)} runs, {len(rows)} configurations (each run's best epoch, selected on "
                        f"{selected_on(runs)}; validation metrics of that epoch)")  # fmt: skip
    for key, title in columns(runs):
        if key == "configuration":  # copied into --baseline and scripts: never wrapped or cut
            table.add_column(title, no_wrap=True, min_width=max(len(r["configuration"]) for r in rows))
        else:
            table.add_column(title, overflow="fold", justify="left" if key == "changes" else "right")
    for row in rows:
        table.add_row(*(_format(row, key) for key, _ in columns(runs)))
    console.print(table)


def pruned_lines(pruned: list[dict[str, Any]]) -> list[str]:
    """The configurations a pruned sweep stopped, apart from the table (which compares finished ones only)."""
    if not pruned:
        return []
    lines = [f"{len(pruned)} configuration(s) stopped at a rung (--prune; ranked on the holdout, not in the table):"]
    lines += [f"- {row['configuration']}: stopped at epoch {row['pruned_at']}, {row['metric']} {row['value']:.4f} "
              f"({row['seeds']} seed{'s' if row['seeds'] > 1 else ''})" for row in pruned]  # fmt: skip
    return lines


def write_pruned_csv(pruned: list[Run], path: Path) -> Path:
    """One row per run a pruned sweep stopped: its configuration, seed, rung and the holdout headline it had."""
    with atomic.atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["configuration", "model", "changes", "seed", "folder", "pruned_at", "metric", "value"])
        for run in pruned:
            changes = "; ".join(f"{k}={v}" for k, v in run.changes.items())
            writer.writerow([run.configuration, run.model, changes, run.seed, str(run.folder), run.pruned_at,
                             f"holdout_{run.metric}", run.best["value"]])  # fmt: skip
    return path


def write_results_csv(runs: list[Run], path: Path) -> Path:
    """One row per run: its configuration, seed, costs and every best-epoch validation metric."""
    metric_keys = sorted({k for run in runs for k in run.best if k.startswith("val_")})
    with atomic.atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "configuration",
                "model",
                "changes",
                "seed",
                "folder",
                "parameters",
                "gflops_per_clip",
                "memory_mb",
                "seconds_per_epoch",
                "best_epoch",
                *metric_keys,
            ]
        )
        for run in runs:
            seconds = float(np.mean(run.epoch_seconds)) if run.epoch_seconds else ""
            writer.writerow(
                [
                    run.configuration,
                    run.model,
                    "; ".join(f"{k}={v}" for k, v in run.changes.items()),
                    run.seed,
                    str(run.folder),
                    run.parameters,
                    run.costs.get("gflops_per_clip", ""),
                    run.costs.get("memory_mb", ""),
                    seconds,
                    run.best["epoch"],
                    *(run.best.get(k, "") for k in metric_keys),
                ]
            )
    return path


def write_markdown(rows: list[dict[str, Any]], runs: list[Run], path: Path, extra: list[str]) -> Path:
    cols = columns(runs)
    lines = [
        f"# Comparison of {len(runs)} runs ({len(rows)} configurations)",
        "",
        f"Each run's best epoch, chosen on {SELECTED_TEXT[selected_on(runs)]}; its validation metrics, mean ± std "
        "over seeds (sample std; n=1: one seed, no spread), and "
        "where a baseline is given, the difference of means ± its standard error. Ties between configurations "
        "go to the one listed first in the sweep.",
        "",
        *extra,
        *([""] if extra else []),
        "| " + " | ".join(title for _, title in cols) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += ["| " + " | ".join(_format(row, key) for key, _ in cols) + " |" for row in rows]
    keys = headline_keys(runs)
    key, by = keys[0], keys[-1] if keys[-1].startswith("holdout_") else keys[0]
    lines += ["", "## Best configuration of each model", "", f"Chosen by the mean {by} (ties: the configuration "
              "listed first); its validation numbers are reported.", "", f"| model | configuration | {key} |",
              "|---|---|---|"]  # fmt: skip
    for model in dict.fromkeys(row["model"] for row in rows):
        best = max((r for r in rows if r["model"] == model), key=lambda r: r[f"{by}_mean"])
        lines.append(f"| {model} | {best['configuration']} | {cell(best, key)} |")
    lines += [
        "",
        "![accuracy vs parameters](accuracy_vs_parameters.png)",
        "![accuracy vs FLOPs](accuracy_vs_flops.png)",
        "![validation curves](validation_curves.png)",
        "",
    ]
    atomic.write_text(path, "\n".join(lines))
    return path


def _label_offsets(rows: list[dict[str, Any]], x_key: str, y_key: str) -> list[float]:
    """Vertical label offsets (points): configurations with nearly the same x (one model's variants share their
    parameter count) get labels stacked in the order of their y, 11 points apart, never on top of each other."""
    x = np.log10(np.maximum([float(r.get(x_key) or 1e-9) for r in rows], 1e-9))
    y = np.array([r[y_key] for r in rows])
    offsets = []
    for i in range(len(rows)):
        near = np.flatnonzero(np.abs(x - x[i]) < 0.45)  # labels are wide: a neighbourhood of ~3x in x
        order = sorted(near, key=lambda j: (y[j], j))
        offsets.append(11.0 * (order.index(i) - (len(near) - 1) / 2))
    return offsets


def write_plots(rows: list[dict[str, Any]], runs: list[Run], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = headline_keys(runs)[0]
    written = []
    for x_key, label, name in (
        ("parameters", "trainable parameters", "accuracy_vs_parameters.png"),
        ("gflops_per_clip", "GFLOPs per clip (training step)", "accuracy_vs_flops.png"),
    ):
        fig, ax = plt.subplots(figsize=(8, 5.5))
        for row, offset in zip(rows, _label_offsets(rows, x_key, f"{key}_mean")):
            ax.errorbar(row.get(x_key, np.nan), row[f"{key}_mean"], yerr=row[f"{key}_std"] or 0.0, fmt="o", capsize=3)
            ax.annotate(
                row["configuration"],
                (row.get(x_key, np.nan), row[f"{key}_mean"]),
                fontsize=7,
                xytext=(6, offset),
                textcoords="offset points",
                arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"},
            )
        ax.set(xlabel=label, ylabel=f"{key} (mean ± std over seeds)", xscale="log")
        fig.tight_layout()
        with atomic.atomic_path(folder / name) as staging:
            fig.savefig(staging, dpi=100)
        plt.close(fig)
        written.append(folder / name)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for row in rows:
        members = [r for r in runs if r.configuration == row["configuration"]]
        epochs = min(len(r.history) for r in members)  # every epoch each seed trained (metrics.csv)
        curve = np.mean([[h[key] for h in r.history[:epochs]] for r in members], axis=0)
        style = ("-", "--", ":")[len(ax.lines) // 10 % 3]  # the colour cycle has 10 colours
        ax.plot(range(1, epochs + 1), curve, style, label=row["configuration"])
    ax.set(xlabel="epoch", ylabel=f"{key} (mean over seeds)", title="validation curves")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    with atomic.atomic_path(folder / "validation_curves.png") as staging:
        fig.savefig(staging, dpi=100)
    plt.close(fig)
    return [*written, folder / "validation_curves.png"]


def write_report(
    rows: list[dict[str, Any]], runs: list[Run], folder: Path, extra: list[str], pruned: list[Run]
) -> list[Path]:
    """`runs`: the finished runs `rows` summarise; `pruned`: those a pruned sweep stopped (pruned.csv)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_results_csv(runs, folder / "results.csv"),
        *([write_pruned_csv(pruned, folder / "pruned.csv")] if pruned else []),
        write_markdown(rows, runs, folder / "report.md", extra),
        *write_plots(rows, runs, folder),
    ]
