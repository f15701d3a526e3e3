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


def pyplot() -> Any:
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


def save_figure(fig: Any, path: Path) -> Path:
    plt = pyplot()
    if fig.get_layout_engine() is None:  # figures that lay themselves out (a colorbar over panels) keep theirs
        fig.tight_layout()
    with atomic.atomic_path(path) as staging:
        fig.savefig(staging, dpi=100)
    plt.close(fig)
    return path


def _grids(values: np.ndarray, frames: int) -> np.ndarray:
    """[..., F * P] per-patch values, frame-major -> [..., F, side, side]."""
    side = math.isqrt(values.shape[-1] // frames)
    return values.reshape(*values.shape[:-1], frames, side, side)


def draw_attention(
    attention: dict[str, Any], frame: np.ndarray | None, title: str, out: Path, frames: int = 1
) -> list[Path]:
    """attention: the model's {"semantic_graph": [1, H, N, N], "motion_graph": ..., "fusion_i": {...}} for one
    clip; frame: [S, S, 3] uint8 as the semantic backbone saw it, or None; `frames` > 1: the N patches are that
    many frames' grids (the graph is drawn frame by frame, the fusion layers' maps averaged over frames)."""
    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "semantic_graph" in attention:
        received = _grids(attention["semantic_graph"][0].float().mean(dim=0).mean(dim=0).numpy(), frames)
        size = (5.5 if frames == 1 else 2.2 * frames + 1, 5)
        fig, axes = plt.subplots(1, frames, figsize=size, squeeze=False, layout="constrained")
        for f in range(frames):
            image = _over_frame(axes[0, f], received[f], frame, received.min(), received.max(), "inferno")
            axes[0, f].set(xticks=[], yticks=[], title=f"frame {f}" if frames > 1 else "")
        fig.colorbar(
            image, ax=axes[0, :].tolist(), fraction=0.046, label="attention received (mean over heads, patches)"
        )
        fig.suptitle(f"{title}\nsemantic graph attention")
        written.append(save_figure(fig, out / "semantic_graph.png"))
    if "motion_graph" in attention:
        weights = attention["motion_graph"][0].float().mean(dim=0).numpy()
        fig, ax = plt.subplots(figsize=(5, 4.5))
        image = ax.imshow(weights, cmap="viridis", vmin=0)
        fig.colorbar(image, ax=ax, fraction=0.046, label="attention")
        ax.set(title=f"{title}\nmotion graph", xlabel="attended segment", ylabel="segment")
        written.append(save_figure(fig, out / "motion_graph.png"))
    layers = [k for k in attention if k.startswith("fusion_")]
    if layers:
        maps = [_grids(attention[layer]["mot_to_sem"][0].float().mean(dim=0).numpy(), frames).mean(axis=1)
                for layer in layers]  # [Nm, side, side] each  # fmt: skip
        segments = maps[0].shape[0]
        fig, axes = plt.subplots(len(layers), segments, figsize=(1.7 * segments + 1, 1.9 * len(layers) + 0.8),
                                 squeeze=False)  # fmt: skip
        for i, weights in enumerate(maps):
            for t in range(segments):
                image = _over_frame(axes[i, t], weights[t], frame, weights.min(), weights.max(), "magma")
                axes[i, t].set(xticks=[], yticks=[], title=f"segment {t}" if i == 0 else "",
                               ylabel=f"layer {i + 1}" if t == 0 else "")  # fmt: skip
            fig.colorbar(image, ax=axes[i, :].tolist(), fraction=0.02, pad=0.01)
        fig.suptitle(f"{title}\nsegment -> patch attention per fusion layer")
        with atomic.atomic_path(out / "fusion_layers.png") as staging:
            fig.savefig(staging, dpi=100)
        plt.close(fig)
        written.append(out / "fusion_layers.png")
    return written
