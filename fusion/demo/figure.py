"""The demo's picture: each model's validation top-1 on per-frame tokens beside the frame mean, chance marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusion.evaluation.attention_plots import pyplot, save_figure

COLOURS = {"frames": "#1f77b4", "mean": "#bbbbbb"}
LABELS = {"frames": "per-frame tokens (time kept)", "mean": "frame mean (time discarded)"}


def draw_comparison(top1: dict[str, dict[str, float]], chance: float, path: Path, clips: int) -> Path:
    """top1: {model: {"frames": x, "mean": y}} -> a grouped bar chart at `path`."""
    plt = pyplot()
    models = list(top1)
    x = np.arange(len(models))
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for i, cache in enumerate(("frames", "mean")):
        values = [top1[m][cache] for m in models]
        bars = ax.bar(x + (i - 0.5) * 0.38, values, 0.38, color=COLOURS[cache], label=LABELS[cache])
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.axhline(chance, color="#d62728", linestyle="--", linewidth=1, label=f"chance ({chance:.2f})")
    ax.set(xticks=x, xticklabels=models, ylim=(0, 1.1), ylabel=f"validation top-1 ({clips} clips)",
           title="Which way does the square move? Only models that compare frames can tell")  # fmt: skip
    ax.legend(loc="upper right", fontsize=8)
    return save_figure(fig, path)
