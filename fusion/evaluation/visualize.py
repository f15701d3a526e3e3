"""`cli visualize`: one clip's attention as PNG files — the semantic graph over the 14x14 patches (drawn over
the clip's centre frame when the video is reachable), the motion graph over the segments, and each fusion
layer's patch -> segment attention."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion.data.cache_data import CacheData
from fusion.evaluation.attention_plots import draw_attention
from fusion.evaluation.evaluate import model_from_checkpoint
from fusion.models.checkpoint import load_checkpoint
from pipeline.core.errors import UserError

log = logging.getLogger(__name__)


def _centre_frame(attrs: dict[str, Any], clip_id: str, data_root: Path | None) -> np.ndarray | None:
    """The clip's centre frame, cropped as the features saw it, or None when the video cannot be reached."""
    from pipeline.datasets import DataSource
    from pipeline.video.decode import count_frames, read_positions

    source = (attrs.get("config") or {}).get("source") or {}
    root = data_root or source.get("data_root")
    if not root or "dataset" not in source:
        return None
    try:
        listed = DataSource(source["dataset"], root, source["split"], classes=source.get("classes")).read()
        clips = {c.clip_id: c for c in listed.clips}
        clip = clips[clip_id]
        middle = count_frames(clip) // 2
        return read_positions(clip, np.array([middle]), 224)[middle]
    except Exception as exc:  # noqa: BLE001 - the heat-map alone is still worth drawing
        log.warning("centre frame of %s not available (%s): drawing the heat-map alone", clip_id, exc)
        return None


def visualize_clip(
    checkpoint: Path, cache: Path, out: Path, clip: str | None = None, data_root: Path | None = None
) -> list[Path]:
    state = load_checkpoint(checkpoint)
    data = CacheData(cache, require_labels=False)
    model = model_from_checkpoint(state, data).eval()
    clip_ids = data.group["clip_id"][:]
    row = int(data.rows[0]) if clip is None else next((int(r) for r in data.rows if str(clip_ids[r]) == clip), None)
    if row is None:
        raise UserError(f"clip '{clip}' is not a usable clip of {cache}")
    # the first view (the centre square the figure shows): the first tokens of a multi-view row
    stored = {name: torch.from_numpy(data.shards.read_range(name, row, row + 1))[:, : data.spec.shapes[name][0]]
              for name in ("semantic", "motion")}  # fmt: skip
    batch = data.model_inputs(stored, torch.device("cpu"))
    with torch.inference_mode():
        outputs = model(batch, return_attention=True)
    clip_id = str(clip_ids[row])
    title = f"{clip_id}: {_verdict(outputs, {f: int(data.labels[f][row]) for f in data.labels}, data.spec.label_names)}"
    frame = _centre_frame(dict(data.group.attrs), clip_id, data_root)
    return draw_attention(outputs["attention"], frame, title, out, data.spec.semantic_frames)


def _verdict(outputs: dict[str, Any], labels: dict[str, int], names: dict[str, list[str]]) -> str:
    """'predicted X (true: Y)' with class names."""

    def name(field: str, index: int) -> str:
        values = names.get(field) or []
        return values[index] if 0 <= index < len(values) else str(index)

    if "logits" in outputs:
        predicted, true = name("label", int(outputs["logits"][0].argmax())), labels.get("label", -1)
        return f"predicted {predicted}" + (f" (true: {name('label', true)})" if true >= 0 else "")
    verb, noun = int(outputs["verb"][0].argmax()), int(outputs["noun"][0].argmax())
    text = f"predicted {name('verb', verb)} {name('noun', noun)}"
    if labels.get("verb", -1) >= 0:
        text += f" (true: {name('verb', labels['verb'])} {name('noun', labels['noun'])})"
    return text
