"""`cli fuse-eval`: a checkpoint's metrics on a cache, and optionally every clip's top-5 predictions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusion.checkpoint import load_checkpoint
from fusion.config import FusionConfig
from fusion.data import CacheData
from fusion.metrics import metrics_for, top_actions
from fusion.models import FusionModel, build_model
from pipeline.config_loading import apply_overrides
from pipeline.devices import autocast, resolve_device, resolve_precision
from pipeline.errors import UserError


@torch.inference_mode()
def predict(
    model: nn.Module, data: CacheData, batch_size: int, device: torch.device, precision: str, loss_fn: Any = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], float]:
    """All outputs (float, CPU) and targets (+ "row") over `data`, and the mean of `loss_fn` if given."""
    was_training = model.training
    model.eval()
    outputs: dict[str, list[torch.Tensor]] = {}
    targets: dict[str, list[torch.Tensor]] = {}
    loss_sum = 0.0
    for batch in data.batches(batch_size):
        with autocast(device, precision):
            out = model(data.model_inputs(batch, device))
        if loss_fn is not None:
            loss_sum += float(loss_fn(out, {f: batch[f].to(device) for f in data.spec.label_fields})) * len(
                batch["row"]
            )
        for key in ("logits", "verb", "noun"):
            if key in out:
                outputs.setdefault(key, []).append(out[key].float().cpu())
        for key in (*data.spec.label_fields, "row"):
            targets.setdefault(key, []).append(batch[key])
    model.train(was_training)
    return (
        {k: torch.cat(v) for k, v in outputs.items()},
        {k: torch.cat(v) for k, v in targets.items()},
        loss_sum / len(data),
    )


def model_from_checkpoint(state: dict[str, Any], data: CacheData) -> FusionModel:
    """Rebuild the checkpoint's model, refusing a cache whose dims or labels differ from what it was trained on."""
    spec, found = state["spec"], data.spec.summary()
    for key in ("shapes", "label_fields", "label_sizes"):
        value = found[key]
        if spec[key] != value:
            raise UserError(
                f"cache {data.path} does not fit this model: {key} is {value} in the cache but "
                f"{spec[key]} in the checkpoint"
            )
    cfg = apply_overrides(FusionConfig(), state["config"]["model"], where="checkpoint config.model")
    model = build_model(
        state["model_name"], spec["shapes"]["semantic"][1], spec["shapes"]["motion"][1], spec["label_sizes"], cfg
    )
    model.load_state_dict(state["model"])
    return model


def write_predictions(
    path: Path, data: CacheData, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
) -> None:
    """One JSON line per clip: clip_id, its labels, and the top-5 class ids with their scores."""
    clip_ids = data.group["clip_id"][:]
    columns: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key in ("logits", "verb", "noun"):
        if key in outputs:
            top = outputs[key].softmax(-1).topk(min(5, outputs[key].shape[1]), dim=1)
            columns["label" if key == "logits" else key] = (top.indices, top.values)
    actions = top_actions(outputs["verb"], outputs["noun"], 5) if "verb" in outputs else None
    with path.open("w") as handle:
        for i, row in enumerate(targets["row"].tolist()):
            record: dict[str, Any] = {"clip_id": str(clip_ids[row]), "row": row}
            record.update({f: int(targets[f][i]) for f in data.spec.label_fields})
            for name, (ids, scores) in columns.items():
                record[f"{name}_top5"] = ids[i].tolist()
                record[f"{name}_top5_scores"] = [round(float(s), 6) for s in scores[i]]
            if actions is not None:
                record["action_top5"] = actions[i].tolist()
            handle.write(json.dumps(record) + "\n")


def evaluate_checkpoint(
    checkpoint: Path, cache: Path, batch_size: int = 256, device: str = "auto", predictions: Path | None = None
) -> dict[str, Any]:
    state = load_checkpoint(checkpoint)
    data = CacheData(cache)
    model = model_from_checkpoint(state, data)
    dev = resolve_device(device)
    outputs, targets, _ = predict(model.to(dev), data, batch_size, dev, resolve_precision("auto", dev))
    if predictions is not None:
        write_predictions(predictions, data, outputs, targets)
    return {
        "checkpoint": str(checkpoint),
        "cache": str(cache),
        "model": state["model_name"],
        "clips": len(data),
        "metrics": metrics_for(outputs, targets),
    }
