"""One clip's attention as PNG files, for `cli visualize` and `cli predict --attention`:

- `semantic_graph.png`: the graph attention each patch receives, over the clip's frame, with a colour bar;
- `motion_graph.png`: segment-to-segment graph attention, with a colour bar;
- `fusion_layers.png`: for each fusion layer (rows) and segment (columns), where that segment looks among the
  patches (segment -> patch attention, a softmax over the patches), over the frame, one colour scale per layer.
  (Patch -> segment attention is a softmax over only a few segments, nearly uniform to the eye.)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core import atomic


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _over_frame(ax: Any, grid: np.ndarray, frame: np.ndarray | None, vmin: float, vmax: float, cmap: str) -> Any:
    if frame is None:
        return ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    size = frame.shape[0]
    ax.imshow(frame)
    return ax.imshow(
        grid, cmap=cmap, alpha=0.55, vmin=vmin, vmax=vmax, extent=(0, size, size, 0), interpolation="nearest"
    )


def _save(fig: Any, path: Path) -> Path:
    plt = _plt()
    fig.tight_layout()
    with atomic.atomic_path(path) as staging:
        fig.savefig(staging, dpi=100)
    plt.close(fig)
    return path


def draw_attention(attention: dict[str, Any], frame: np.ndarray | None, title: str, out: Path) -> list[Path]:
    """attention: the model's {"semantic_graph": [1, H, N, N], "motion_graph": ..., "fusion_i": {...}} for one
    clip; frame: [S, S, 3] uint8 as the semantic backbone saw it, or None."""
    plt = _plt()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "semantic_graph" in attention:
        received = attention["semantic_graph"][0].float().mean(dim=0).mean(dim=0).numpy()
        side = math.isqrt(received.size)
        fig, ax = plt.subplots(figsize=(5.5, 5))
        image = _over_frame(ax, received.reshape(side, side), frame, received.min(), received.max(), "inferno")
        fig.colorbar(image, ax=ax, fraction=0.046, label="attention received (mean over heads and patches)")
        ax.set(title=f"{title}\nsemantic graph attention", xticks=[], yticks=[])
        written.append(_save(fig, out / "semantic_graph.png"))
    if "motion_graph" in attention:
        weights = attention["motion_graph"][0].float().mean(dim=0).numpy()
        fig, ax = plt.subplots(figsize=(5, 4.5))
        image = ax.imshow(weights, cmap="viridis", vmin=0)
        fig.colorbar(image, ax=ax, fraction=0.046, label="attention")
        ax.set(title=f"{title}\nmotion graph", xlabel="attended segment", ylabel="segment")
        written.append(_save(fig, out / "motion_graph.png"))
    layers = [k for k in attention if k.startswith("fusion_")]
    if layers:
        maps = [attention[layer]["mot_to_sem"][0].float().mean(dim=0).numpy() for layer in layers]  # [Nm, Ns] each
        segments, side = maps[0].shape[0], math.isqrt(maps[0].shape[1])
        fig, axes = plt.subplots(len(layers), segments, figsize=(1.7 * segments + 1, 1.9 * len(layers) + 0.8),
                                 squeeze=False)  # fmt: skip
        for i, weights in enumerate(maps):
            for t in range(segments):
                image = _over_frame(axes[i, t], weights[t].reshape(side, side), frame, weights.min(), weights.max(),
                                    "magma")  # fmt: skip
                axes[i, t].set(xticks=[], yticks=[], title=f"segment {t}" if i == 0 else "",
                               ylabel=f"layer {i + 1}" if t == 0 else "")  # fmt: skip
            fig.colorbar(image, ax=axes[i, :].tolist(), fraction=0.02, pad=0.01)
        fig.suptitle(f"{title}\nsegment -> patch attention per fusion layer")
        with atomic.atomic_path(out / "fusion_layers.png") as staging:
            fig.savefig(staging, dpi=100)
        plt.close(fig)
        written.append(out / "fusion_layers.png")
    return written
