"""`cli predict` and `cli export`: a trained model on raw videos, frame folders, manifests or dataset splits.

Clips are decoded in worker processes by the extraction's own code, run through `TemporalCrossAttentionModel`
in batches, and reported one record per clip: the top-5 classes with names and probabilities (verb/noun models:
verb, noun and action top-5), the true label(s) when known, or the reason a clip failed.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion.evaluation.metrics import ACTION_MULTIPLIER, top_actions
from fusion.models.checkpoint import load_checkpoint
from fusion.prediction.complete_model import TemporalCrossAttentionModel, check_package, package_from_checkpoint
from pipeline.core import atomic
from pipeline.core.devices import resolve_device
from pipeline.core.errors import UserError
from pipeline.datasets import Clip, ClipList, DataSource
from pipeline.datasets.manifest import read_manifest
from pipeline.extract_config import decoder_threads
from pipeline.video.clip_dataset import ClipFrames
from pipeline.video.loader import decoded_batches

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg"}


@dataclass
class Inputs:
    """What to predict: paths (video files, folders of videos, CSV manifests) or a dataset split."""

    paths: list[Path] = field(default_factory=list)
    dataset: str | None = None
    data_root: Path | None = None
    split: str = "validation"
    limit: int | None = None


def load_package(checkpoint: Path | None, model_file: Path | None) -> dict[str, Any]:
    if (checkpoint is None) == (model_file is None):
        raise UserError("pass exactly one of --checkpoint RUN/best.pt and --model model.pt")
    if checkpoint is not None:
        return package_from_checkpoint(load_checkpoint(checkpoint))
    if model_file.is_dir() or not model_file.is_file():
        raise UserError(f"--model {model_file} is not a file (expected a model.pt written by `cli export`)")
    try:
        package = torch.load(model_file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear line
        raise UserError(f"--model {model_file} is not a readable model file: {str(exc).splitlines()[0]}") from None
    return check_package(package, model_file)


def export_model(checkpoint: Path, out: Path) -> Path:
    """One self-contained file: fusion weights, backbone identities and sampling, class names, code version,
    and what the model was trained and validated on."""
    package = package_from_checkpoint(load_checkpoint(checkpoint))
    with atomic.atomic_path(out) as staging:
        torch.save(package, staging)
    return out


def clip_list(inputs: Inputs, label_fields: list[str]) -> ClipList:
    """The clips to predict, in order; labels only where a dataset split or manifest states them."""
    if inputs.dataset is not None:
        if inputs.paths:
            raise UserError("pass video paths or --dataset/--data-root/--split, not both")
        if inputs.data_root is None:
            raise UserError("--dataset needs --data-root")
        return DataSource(inputs.dataset, inputs.data_root, inputs.split, inputs.limit).read()
    if not inputs.paths:
        raise UserError("nothing to predict: pass video files or folders, a CSV manifest, or --dataset/--data-root")
    clips: list[Clip] = []
    for path in inputs.paths:
        if path.suffix.lower() == ".csv":
            clips += read_manifest(path, path.stem).clips
        elif path.is_dir():
            videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if not videos:
                raise UserError(f"{path} holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
            clips += [Clip(str(v), str(v)) for v in videos]
        else:
            clips.append(Clip(str(path), str(path)))  # a missing file becomes that clip's failure, not the run's
    clips = clips[: inputs.limit] if inputs.limit else clips
    return ClipList("videos", "predict", clips, tuple(label_fields), {})


def _top(probs: torch.Tensor, names: list[str], k: int = 5) -> list[dict[str, Any]]:
    values, ids = probs.topk(min(k, probs.shape[-1]))
    return [{"id": int(i), "name": names[i] if i < len(names) else "", "prob": round(float(p), 6)}
            for p, i in zip(values.tolist(), ids.tolist())]  # fmt: skip


def clip_record(clip: Clip, outputs: dict[str, torch.Tensor], i: int, names: dict[str, list[str]]) -> dict[str, Any]:
    """One clip's prediction record (the contract of `cli predict --out`)."""
    record: dict[str, Any] = {"clip_id": clip.clip_id, "source": clip.source, "status": "ok"}
    if "logits" in outputs:
        record["top5"] = _top(outputs["logits"][i].float().softmax(-1), names.get("label", []))
        truth = clip.labels.get("label", -1)
        if truth >= 0:
            record.update(
                label=truth, label_name=_name(names, "label", truth), correct=record["top5"][0]["id"] == truth
            )
        return record
    verb, noun = outputs["verb"][i : i + 1].float(), outputs["noun"][i : i + 1].float()
    record["verb_top5"] = _top(verb[0].softmax(-1), names.get("verb", []))
    record["noun_top5"] = _top(noun[0].softmax(-1), names.get("noun", []))
    ids, scores = top_actions(verb, noun, 5)
    record["action_top5"] = []
    for a, s in zip(ids[0].tolist(), scores[0].tolist()):
        verb_id, noun_id = divmod(int(a), ACTION_MULTIPLIER)
        name = f"{_name(names, 'verb', verb_id)} {_name(names, 'noun', noun_id)}"
        record["action_top5"].append(
            {"verb": verb_id, "noun": noun_id, "id": int(a), "name": name, "prob": round(float(np.exp(s)), 6)}
        )
    v, n = clip.labels.get("verb", -1), clip.labels.get("noun", -1)
    if v >= 0 and n >= 0:
        action_name = f"{_name(names, 'verb', v)} {_name(names, 'noun', n)}"
        correct = record["action_top5"][0]["id"] == v * ACTION_MULTIPLIER + n
        record.update(verb=v, noun=n, action=v * ACTION_MULTIPLIER + n, action_name=action_name, correct=correct)
    return record


def _name(names: dict[str, list[str]], field_name: str, index: int) -> str:
    values = names.get(field_name, [])
    return values[index] if 0 <= index < len(values) else str(index)


def predict_clips(
    model: TemporalCrossAttentionModel,
    clips: ClipList,
    batch_size: int,
    workers: int,
    on_batch: Any = None,
    return_attention: bool = False,
) -> list[dict[str, Any]]:
    """Records in clip order; `on_batch(done, total, batch, outputs)` after each batch (progress, attention)."""
    names = model.package["spec"]["label_names"]
    run = dataclasses.replace(model.extraction.run, workers=workers)
    frames = ClipFrames(
        clips.clips, model.extraction.sampling, model.input_size, run.decode_timeout, decoder_threads(run)
    )
    order = list(range(len(clips)))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    device = next(model.parameters()).device
    records: dict[int, dict[str, Any]] = {}
    for batch in decoded_batches(frames, batches, workers, pin=device.type == "cuda"):
        frames = {"semantic": batch["semantic"], "motion": batch["motion"]}
        outputs = model(frames, return_attention=return_attention) if batch["rows"] else {}
        for i, row in enumerate(batch["rows"]):
            records[row] = clip_record(clips.clips[row], outputs, i, names)
        for failure in batch["failures"]:
            clip = clips.clips[failure["row"]]
            log.warning("failed %s (%s) at %s: %s", clip.clip_id, clip.source, failure["stage"], failure["error"])
            records[failure["row"]] = {"clip_id": clip.clip_id, "source": clip.source, "status": "failed",
                                       "error": f"{failure['stage']}: {failure['error']}"}  # fmt: skip
        if on_batch:
            on_batch(len(records), len(clips), batch, outputs)
    return [records[row] for row in order]


def load_complete_model(
    package: dict[str, Any], device: str, weights: dict[str, str | None], allow_other: bool
) -> TemporalCrossAttentionModel:
    """The package's backbones and fusion model on `device`, ready to predict."""
    dev = resolve_device(device)
    return TemporalCrossAttentionModel(package, weights, allow_other).to(dev).eval()
