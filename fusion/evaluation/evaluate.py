"""`cli fuse-eval`: a checkpoint's metrics on a cache, and optionally every clip's top-5 predictions."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusion.data.cache_data import CacheData
from fusion.data.feature_identity import check_same_features, same_clips
from fusion.data.views import average_views
from fusion.evaluation.analysis import write_analysis
from fusion.evaluation.metrics import epic_breakdowns, metrics_for, top_actions
from fusion.evaluation.submission import SUPERVISION_LEVELS, epic_submission, ssv2_answers, write_submission
from fusion.models.checkpoint import load_checkpoint
from fusion.models.rebuild import rebuild_model
from fusion.models.registry import FusionModel
from pipeline.cache.layout import subset_limit
from pipeline.core import atomic, strict_json
from pipeline.core.defaults import DEVICE
from pipeline.core.devices import autocast, resolve_device, resolve_precision
from pipeline.core.errors import UserError
from pipeline.core.paths import output_file, output_folder

log = logging.getLogger(__name__)


@dataclass
class Outputs:
    """A model's class scores over a cache's clips: averaged over each clip's views (the clip's only one in a
    one-view cache), and of the first view alone (None for a one-view cache)."""

    scores: dict[str, torch.Tensor]  # "logits" or "verb", "noun": [N, C] float, CPU
    targets: dict[str, torch.Tensor]  # the label fields and "row": [N]
    loss: float  # the mean of the loss function over the clips (on the averaged scores), 0 without one
    first_view: dict[str, torch.Tensor] | None = None


def outputs_over(
    model: nn.Module, data: CacheData, batch_size: int, device: torch.device, precision: str, loss_fn: Any = None
) -> Outputs:
    """Every usable clip's scores, with every view of a multi-view cache run and their softmax averaged."""
    return members_outputs_over(model, data, batch_size, device, precision, [loss_fn])[0]


@torch.inference_mode()
def members_outputs_over(
    model: nn.Module, data: CacheData, batch_size: int, device: torch.device, precision: str, loss_fns: list[Any]
) -> list[Outputs]:
    """`outputs_over` for each of K = len(loss_fns) members of a stacked model (fusion/models/stacking.py): one
    forward a batch, on the batch laid K times end to end; K = 1 is a model alone."""
    was_training, k = model.training, len(loss_fns)
    model.eval()
    scores: list[dict[str, list[torch.Tensor]]] = [{} for _ in loss_fns]
    first: list[dict[str, list[torch.Tensor]]] = [{} for _ in loss_fns]
    targets: dict[str, list[torch.Tensor]] = {}
    loss_sums = [0.0] * k
    for batch in data.batches(batch_size, views="all"):
        inputs = data.model_inputs(batch, device)
        with autocast(device, precision):
            out = model(inputs if k == 1 else {name: torch.cat([x] * k) for name, x in inputs.items()})
        parts = {name: value.chunk(k) for name, value in out.items()}
        labels = {f: batch[f].to(device) for f in data.spec.label_fields} if any(loss_fns) else {}
        for i, loss_fn in enumerate(loss_fns):
            averaged, first_view = average_views({name: part[i] for name, part in parts.items()}, batch["views"])
            if loss_fn is not None:
                loss_sums[i] += float(loss_fn(averaged, labels)) * len(batch["row"])
            for key in averaged:
                scores[i].setdefault(key, []).append(averaged[key].cpu())
                if batch["views"] > 1:  # a one-view batch's first view is its scores: not copied twice
                    first[i].setdefault(key, []).append(first_view[key].cpu())
        for key in (*data.spec.label_fields, "row"):
            targets.setdefault(key, []).append(batch[key])
    model.train(was_training)
    rows = {key: torch.cat(v) for key, v in targets.items()}
    return [
        Outputs({key: torch.cat(v) for key, v in own.items()}, rows, loss_sum / len(data),
                {key: torch.cat(v) for key, v in views.items()} if views else None)
        for own, views, loss_sum in zip(scores, first, loss_sums)
    ]  # fmt: skip


def model_from_checkpoint(state: dict[str, Any], data: CacheData) -> FusionModel:
    """Rebuild the checkpoint's model, refusing a cache whose dims or labels differ from what it was trained on;
    `data` is then standardised with the training cache's statistics (checkpoints from before they were stored
    keep the cache's own)."""
    spec, found = state["spec"], data.spec.summary()
    # An unlabelled cache without class names (size 0) fits any class count: only predictions are asked of it.
    found["label_sizes"] = {f: n or spec["label_sizes"].get(f) for f, n in found["label_sizes"].items()}
    for key in ("shapes", "label_fields", "label_sizes", "semantic_frames"):
        value = found.get(key)
        if spec.get(key) != value:
            raise UserError(
                f"cache {data.path} does not fit this model: {key} is {value} in the cache but "
                f"{spec[key]} in the checkpoint"
            )
    if "normalisation" in state:
        data.use_normalisation(state["normalisation"])
    return rebuild_model(
        state["model_name"], state["config"]["model"], spec["shapes"], spec["label_sizes"], state["model"],
        where="checkpoint config.model",
    )  # fmt: skip


def write_predictions(
    path: Path, data: CacheData, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
) -> None:
    """One JSON line per clip: clip_id, its labels, and the top-5 class ids with their softmax scores (verb/noun
    caches: and the top-5 action ids, verb * 1000 + noun)."""
    clip_ids = data.group["clip_id"][:]
    columns: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key in ("logits", "verb", "noun"):
        if key in outputs:
            top = outputs[key].softmax(-1).topk(min(5, outputs[key].shape[1]), dim=1)
            columns["label" if key == "logits" else key] = (top.indices, top.values)
    actions = top_actions(outputs["verb"], outputs["noun"], 5)[0] if "verb" in outputs else None
    with atomic.atomic_open(path) as handle:
        for i, row in enumerate(targets["row"].tolist()):
            record: dict[str, Any] = {"clip_id": str(clip_ids[row]), "row": row}
            record.update({f: int(targets[f][i]) for f in data.spec.label_fields})
            for name, (ids, scores) in columns.items():
                record[f"{name}_top5"] = ids[i].tolist()
                record[f"{name}_top5_scores"] = [round(float(s), 6) for s in scores[i]]
            if actions is not None:
                record["action_top5"] = actions[i].tolist()
            handle.write(strict_json.dumps(record) + "\n")


@dataclass
class EvalOptions:
    """What `cli fuse-eval` writes or uses beside the metrics."""

    predictions: Path | None = None
    submission: Path | None = None  # EPIC-KITCHENS-100 challenge JSON (zipped when it ends in .zip)
    sls: dict[str, int] = field(
        default_factory=lambda: {key: default for key, (_, default) in SUPERVISION_LEVELS.items()}
    )
    answers: Path | None = None  # SSv2 test-answers.csv: labels for an unlabelled (test) cache
    answers_out: Path | None = None  # SSv2: the predicted class of every clip, `id;label name` per line
    analysis: Path | None = None  # per-class CSVs and the confusion plot
    allow_other_features: bool = False  # evaluate on features other than the training cache's, recorded
    allow_training_clips: bool = False  # evaluate on the clips the model was trained on, recorded


def benchmark_completeness(data: CacheData, options: EvalOptions, allow_partial: bool) -> int:
    """A benchmark file (EPIC submission, SSv2 answers) must answer every clip of the split: refused when the
    cache has clips not extracted or failed, unless --allow-partial (then the count is returned, to say so);
    a warning when the cache is not of the benchmark's test split."""
    if options.submission is None and options.answers_out is None:
        return 0
    what = "--submission" if options.submission is not None else "--answers-out"
    missing = data.counts.not_done + data.counts.failed
    if missing and not allow_partial:
        raise UserError(f"{what}: cache {data.path} is missing {missing} of {data.counts.clips} clips "
                        f"({data.counts.describe()}): a benchmark file must answer every clip; --allow-partial "
                        "writes it anyway and says how many are missing")  # fmt: skip
    if missing:
        log.warning("%s: %d of %d clips are missing from it (--allow-partial)", what, missing, data.counts.clips)
    split = data.spec.provenance.get("split")
    if split != "test":
        log.warning("%s: cache %s is of the %s split, not the benchmark's test split", what, data.path, split)
    limit = subset_limit(dict(data.group.attrs))
    if limit is not None:
        log.warning("%s: cache %s holds only the first %d clips of its split (--limit)", what, data.path, limit)
    return missing


def write_answers(path: Path, clip_ids: Any, predicted: torch.Tensor, names: list[str]) -> None:
    """SSv2 answers: `id;label name` per clip (the template without brackets, as labels.json names it)."""
    lines = [f"{clip_id};{names[int(c)] if int(c) < len(names) else int(c)}" for clip_id, c in zip(clip_ids, predicted)]
    atomic.write_text(path, "".join(line + "\n" for line in lines))


def evaluate_checkpoint(
    checkpoint: Path,
    cache: Path,
    batch_size: int = 256,
    device: str = DEVICE,
    options: EvalOptions | None = None,
    allow_partial: bool = False,
) -> dict[str, Any]:
    """Metrics over the cache's labelled clips (or the --answers' labels); predictions and a submission (if
    asked) for every usable clip. The result says how many clips were evaluated and why any were left out."""
    options = options or EvalOptions()
    written = ((options.predictions, "--predictions"), (options.submission, "--submission"),
               (options.answers_out, "--answers-out"))  # fmt: skip
    for path, what in written:
        if path is not None:
            output_file(path, what)
    if options.analysis is not None:
        output_folder(options.analysis, "--analysis")
    state = load_checkpoint(checkpoint)
    data = CacheData(cache, require_labels=False, allow_partial=allow_partial)
    if options.answers is not None and data.spec.label_fields != ("label",):
        raise UserError("--answers holds SSv2 test answers: it needs a single-label (SSv2) cache")
    if options.submission is not None and "verb" not in data.spec.label_fields:
        raise UserError("--submission writes the EPIC-KITCHENS-100 challenge file: it needs a verb/noun cache")
    if options.answers_out is not None and data.spec.label_fields != ("label",):
        raise UserError("--answers-out writes SSv2 answers: it needs a single-label (SSv2) cache")
    model = model_from_checkpoint(state, data)  # first: a cache of other shapes is told so plainly
    on_training_clips = same_clips(state.get("cache") or {}, data.spec.provenance)
    if on_training_clips and not options.allow_training_clips:
        raise UserError(f"cache {cache} is the model's training cache: evaluate it on clips it was not trained on "
                        "(--allow-training-clips scores it there anyway, recorded in the result)")  # fmt: skip
    override = check_same_features(
        "the model's training cache", state.get("cache") or {}, f"cache {cache}", data.spec.provenance,
        options.allow_other_features,
    )  # fmt: skip
    missing = benchmark_completeness(data, options, allow_partial)
    dev = resolve_device(device)
    over = outputs_over(model.to(dev), data, batch_size, dev, resolve_precision("auto", dev))
    outputs, targets = over.scores, over.targets
    if options.answers is not None:
        clip_ids = data.clip_ids[targets["row"].numpy()]
        targets["label"] = torch.from_numpy(
            ssv2_answers(options.answers, clip_ids, data.spec.label_names.get("label") or [])
        )
    if options.predictions is not None:
        write_predictions(options.predictions, data, outputs, targets)
    if options.submission is not None:
        ids = [str(c) for c in data.clip_ids[targets["row"].numpy()]]
        write_submission(epic_submission(outputs["verb"], outputs["noun"], ids, options.sls), options.submission)
    if options.answers_out is not None:
        write_answers(options.answers_out, data.clip_ids[targets["row"].numpy()], outputs["logits"].argmax(1),
                      data.spec.label_names.get("label") or [])  # fmt: skip
    labelled = torch.ones(len(targets["row"]), dtype=torch.bool)
    for name in data.spec.label_fields:
        labelled &= targets[name] >= 0
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "cache": str(cache),
        "model": state["model_name"],
        "clips": int(labelled.sum()),
        "data": {**data.counts.as_dict(), "unlabelled": int((~labelled).sum()), "evaluated": int(labelled.sum())},
        "metrics": {},
        **({"feature_override": override} if override else {}),
        **({"evaluated_on_training_clips": True} if on_training_clips else {}),
        **({"benchmark_file_missing_clips": missing} if missing else {}),
    }
    if not labelled.any():
        result["notes"] = ["no clip of this cache is labelled: nothing to score (see --predictions, --answers)"]
        return result
    scored = {k: v[labelled] for k, v in outputs.items()}, {k: v[labelled] for k, v in targets.items()}
    result["metrics"] = metrics_for(*scored)
    if over.first_view is not None:
        result["views"] = data.spec.views
        result["single_view_metrics"] = metrics_for({k: v[labelled] for k, v in over.first_view.items()}, scored[1])
    if "verb" in scored[0]:
        participants = data.meta["participant_id"][scored[1]["row"].numpy()] if "participant_id" in data.meta else None
        breakdowns, notes = epic_breakdowns(*scored, participants, data.official_lists)
        result["metrics"].update(breakdowns)
        if notes:
            result["notes"] = notes
    if options.analysis is not None:
        result["analysis"] = [str(p) for p in write_analysis(options.analysis, *scored, data.spec.label_names)]
    return result
