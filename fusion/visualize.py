"""`cli visualize`: one clip's attention as PNG files — the semantic graph over the 14x14 patches (drawn over
the clip's centre frame when the video is reachable), the motion graph over the segments, and each fusion
layer's patch -> segment attention."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion.checkpoint import load_checkpoint
from fusion.data import CacheData
from fusion.evaluate import model_from_checkpoint
from pipeline.errors import UserError

log = logging.getLogger(__name__)


def _centre_frame(attrs: dict[str, Any], clip_id: str, data_root: Path | None) -> np.ndarray | None:
    """The clip's centre frame, cropped as the features saw it, or None when the video cannot be reached."""
    from pipeline.datasets import read_dataset
    from pipeline.video.decode import count_frames, read_positions

    source = (attrs.get("config") or {}).get("source") or {}
    root = data_root or source.get("data_root")
    if not root or "dataset" not in source:
        return None
    try:
        clips = {
            c.clip_id: c
            for c in read_dataset(source["dataset"], root, source["split"], classes=source.get("classes")).clips
        }
        clip = clips[clip_id]
        middle = count_frames(clip) // 2
        return read_positions(clip, np.array([middle]), 224)[middle]
    except Exception as exc:  # noqa: BLE001 - the heat-map alone is still worth drawing
        log.warning("centre frame of %s not available (%s): drawing the heat-map alone", clip_id, exc)
        return None


def visualize_clip(
    checkpoint: Path, cache: Path, out: Path, clip: str | None = None, data_root: Path | None = None
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    state = load_checkpoint(checkpoint)
    data = CacheData(cache, require_labels=False)
    model = model_from_checkpoint(state, data).eval()
    clip_ids = data.group["clip_id"][:]
    row = int(data.rows[0]) if clip is None else next((int(r) for r in data.rows if str(clip_ids[r]) == clip), None)
    if row is None:
        raise UserError(f"clip '{clip}' is not a usable clip of {cache}")
    batch = {
        name: data.normalise(name, torch.from_numpy(data.group[name][row : row + 1].astype(np.float32)))
        for name in ("semantic", "motion")
    }
    with torch.inference_mode():
        attention = model(batch, return_attention=True)["attention"]
    out.mkdir(parents=True, exist_ok=True)
    clip_id, written = str(clip_ids[row]), []
    if "semantic_graph" in attention:
        received = attention["semantic_graph"][0].mean(dim=0).mean(dim=0)  # attention each patch receives
        side = math.isqrt(received.numel())
        fig, ax = plt.subplots(figsize=(5, 5))
        frame = _centre_frame(dict(data.group.attrs), clip_id, data_root)
        if frame is not None:
            ax.imshow(frame)
            ax.imshow(
                received.reshape(side, side).numpy(),
                cmap="inferno",
                alpha=0.55,
                extent=(0, 224, 224, 0),
                interpolation="nearest",
            )
        else:
            ax.imshow(received.reshape(side, side).numpy(), cmap="inferno")
        ax.set(title=f"{clip_id}: semantic graph attention received", xticks=[], yticks=[])
        written.append(_save(fig, out / "semantic_graph.png"))
    if "motion_graph" in attention:
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(attention["motion_graph"][0].mean(dim=0).numpy(), cmap="viridis")
        ax.set(title=f"{clip_id}: motion graph", xlabel="attended segment", ylabel="segment")
        written.append(_save(fig, out / "motion_graph.png"))
    layers = [k for k in attention if k.startswith("fusion_")]
    if layers:
        segments = attention[layers[0]]["sem_to_mot"].shape[-1]
        side = math.isqrt(attention[layers[0]]["sem_to_mot"].shape[-2])
        fig, axes = plt.subplots(len(layers), segments, figsize=(1.6 * segments, 1.8 * len(layers)), squeeze=False)
        for i, layer in enumerate(layers):
            weights = attention[layer]["sem_to_mot"][0].mean(dim=0)  # [patches, segments]
            for t in range(segments):
                axes[i, t].imshow(
                    weights[:, t].reshape(side, side).numpy(), cmap="magma", vmin=0, vmax=float(weights.max())
                )
                axes[i, t].set(
                    xticks=[],
                    yticks=[],
                    title=f"segment {t}" if i == 0 else "",
                    ylabel=f"layer {i + 1}" if t == 0 else "",
                )
        fig.suptitle(f"{clip_id}: patch -> segment attention per fusion layer")
        written.append(_save(fig, out / "fusion_layers.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
