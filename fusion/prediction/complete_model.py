"""The complete model of design note 002: video frames in, class scores out.

`TemporalCrossAttentionModel` = the frozen backbones exactly as the training cache was extracted (variant,
tapped layer, frames, reduction, precision, weights checked by sha256 or rebuilt from their random seed), the
cache's float16 storage, the training cache's standardisation, and the trained fusion model. Frames come from
the extraction's own decoding and sampling code, so a prediction on a raw video equals the model's output on
that video's cached features.

A *model package* is what this needs, as plain containers (`torch.load(..., weights_only=True)` reads it):
`cli export` writes one; a checkpoint is turned into one in memory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusion.data.cache_spec import with_time_axis
from fusion.data.views import average_views, fold_views
from fusion.models.heads import action_scores
from fusion.models.rebuild import as_trained, rebuild_model
from pipeline.core.config_loading import apply_overrides
from pipeline.core.devices import autocast, resolve_precision
from pipeline.core.errors import UserError
from pipeline.core.provenance import created_with, sha256_of
from pipeline.extract import backbone_specs, build_backbones
from pipeline.extract_config import ExtractConfig, with_backbone_defaults
from pipeline.video.frames import FRAME_RESIZE

log = logging.getLogger(__name__)

PACKAGE_FORMAT = "gasm-cast-model"
PACKAGE_VERSION = 1


def package_from_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """Everything a prediction needs from a training checkpoint, and nothing of its optimizer or run."""
    backbones = (state.get("cache") or {}).get("backbones") or {}
    if not all(backbones.get(kind, {}).get("name") in _registered(kind) for kind in ("semantic", "motion")):
        names = {kind: backbones.get(kind, {}).get("name") for kind in ("semantic", "motion")}
        raise UserError(
            f"this model was trained on features of no registered backbone ({names}): it can only be "
            "evaluated on caches (cli fuse-eval), not run on videos"
        )
    return {
        "format": PACKAGE_FORMAT,
        "version": PACKAGE_VERSION,
        "model_name": state["model_name"],
        "fusion_config": as_trained(state["config"]["model"]),
        "weights": state["model"],
        "spec": state["spec"],
        "normalisation": state.get("normalisation", {}),
        "backbones": backbones,
        "created_with": created_with(),
        "trained_with": state.get("created_with"),
        "trained_on": {"cache": state.get("cache"), "validation": state.get("val_cache"), "best": state.get("best")},
    }


def check_package(package: Any, path: Path) -> dict[str, Any]:
    if not isinstance(package, dict) or package.get("format") != PACKAGE_FORMAT:
        raise UserError(f"{path} is not a gasm-cast model file (write one with `cli export`)")
    if package.get("version") != PACKAGE_VERSION:
        raise UserError(
            f"{path} is a model file of version {package.get('version')}; this gasm-cast reads version "
            f"{PACKAGE_VERSION}: use the gasm-cast that wrote it, or export it again with this one"
        )
    return package


def _registered(kind: str) -> list[str]:
    from pipeline.backbones import names

    return names(kind)


def extraction_config(backbones: dict[str, Any]) -> ExtractConfig:
    """The extraction settings that made the training cache, from its recorded backbones."""
    semantic, motion = backbones["semantic"], backbones["motion"]
    if semantic.get("frame_resize") != FRAME_RESIZE:
        log.warning(
            "the training cache converted frames as %r, this version as %r: predictions on videos can differ "
            "slightly from the model's validated numbers",
            semantic.get("frame_resize"),
            FRAME_RESIZE,
        )
    cfg = ExtractConfig()
    overrides = {
        "sampling": {"motion_frames": motion["frames"], "semantic_reduce": semantic["reduce"]},
        "backbones": {"semantic": semantic["name"], "motion": motion["name"], "motion_layer": motion["layer"]},
        "run": {"precision": semantic.get("precision", "fp32")},
    }
    views = semantic.get("views") or {"spatial": 1, "temporal": 1}
    overrides["sampling"].update(spatial_views=views["spatial"], temporal_views=views["temporal"])
    if semantic["reduce"] in ("mean", "frames"):
        overrides["sampling"]["semantic_frames"] = semantic["frames"]
    overrides["sampling"]["semantic_pool"] = semantic.get("pool", 1)
    if "random_seed" in semantic:
        overrides["backbones"].update(random_init=True, seed=semantic["random_seed"])
    return with_backbone_defaults(apply_overrides(cfg, overrides, where="the model's recorded extraction"))


def resolve_weights(recorded: dict[str, Any], given: str | None, option: str, allow_other: bool) -> str | None:
    """The weights to load for one backbone: the ones given (checked against the recorded sha256), else the
    recorded path or hub id. Random-init backbones need none."""
    if "random_seed" in recorded:
        if given is not None:
            raise UserError(
                f"{option}: this model's cache was made with random-init backbones (seed "
                f"{recorded['random_seed']}); they are rebuilt from the seed, no weights are loaded"
            )
        return None
    source = given or recorded.get("weights")
    expected = recorded.get("weights_sha256")
    if expected is None:
        log.warning(
            "%s: the training cache recorded no checksum for %s; its weights cannot be verified", option, source
        )
        return source
    if source is None or not Path(source).exists():
        raise UserError(
            f"{option}: pass the weights the training cache was made with (sha256 {expected}); {source!r} is not there"
        )
    found = sha256_of(source)
    if found != expected and not allow_other:
        raise UserError(
            f"{option} {source} has sha256 {found}, but the training cache was made with {expected}: "
            "predictions would not be the validated model's (--allow-other-weights to use them anyway)"
        )
    return source


class TemporalCrossAttentionModel(nn.Module):
    """uint8 frames {"semantic": [B, V, Fs, S, S, 3], "motion": [B, V, Fm, S, S, 3]} -> the fusion model's outputs,
    averaged over the V views the training cache held, as `cli fuse-eval` averages them."""

    def __init__(
        self, package: dict[str, Any], weights: dict[str, str | None] | None = None, allow_other: bool = False
    ):
        super().__init__()
        weights = weights or {}
        self.package = package
        self.extraction = extraction_config(package["backbones"])
        recorded = package["backbones"]
        sources = {
            kind: resolve_weights(recorded[kind], weights.get(kind), f"--{kind}-weights", allow_other)
            for kind in ("semantic", "motion")
        }
        specs = backbone_specs(self.extraction, sources)  # the architecture of the weights loaded
        self.backbones = nn.ModuleDict(build_backbones(self.extraction, specs, sources))
        spec = package["spec"]
        self.fusion = rebuild_model(
            package["model_name"], package["fusion_config"], spec["shapes"], spec["label_sizes"], package["weights"],
            where="the model's fusion config",
        ).eval()  # fmt: skip
        for name, stats in package["normalisation"].items():
            self.register_buffer(f"{name}_mean", torch.tensor(stats["mean"]), persistent=False)
            self.register_buffer(f"{name}_std", torch.tensor(stats["std"]).clamp_min(1e-6), persistent=False)
        self.precision = self.extraction.run.precision

    @property
    def input_size(self) -> int:
        return max(backbone.spec.input_size for backbone in self.backbones.values())

    @property
    def views(self) -> int:
        return self.extraction.sampling.views

    def features(self, frames: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """uint8 frames [B, V, F, S, S, 3] -> [B * V, tokens, dim] float features as the cache holds them (float16,
        view by view as extraction runs them) and the model saw them (standardised with its training cache's
        statistics), each clip's views one after another."""
        device = next(self.parameters()).device
        stored = {}
        with autocast(device, self.precision):
            for kind, model in self.backbones.items():
                stored[kind] = model.views(frames[kind].to(device, non_blocking=True)).to(torch.float16)
        out = {}
        for kind, x in stored.items():
            x = fold_views(x, self.views).float()
            if hasattr(self, f"{kind}_mean"):
                x = (x - getattr(self, f"{kind}_mean")) / getattr(self, f"{kind}_std")
            out[kind] = x
        out["semantic"] = with_time_axis(out["semantic"], self.package["spec"].get("semantic_frames", 1))
        return out

    @torch.inference_mode()
    def forward(self, frames: dict[str, torch.Tensor], return_attention: bool = False) -> dict[str, Any]:
        """frames: semantic [B, V, Fs, S, S, 3], motion [B, V, Fm, S, S, 3] uint8 -> {"logits"} or {"verb", "noun",
        "action"} per clip (and "attention" of its first view when asked). The fusion model runs under the
        precision `cli fuse-eval` uses."""
        features = self.features(frames)
        device = next(self.parameters()).device
        with autocast(device, resolve_precision("auto", device)):
            out = self.fusion(features, return_attention=return_attention)
        if self.views == 1:
            return out
        scores, _ = average_views(out, self.views)
        if "verb" in scores:
            scores["action"] = action_scores(scores["verb"], scores["noun"])
        if return_attention:
            scores["attention"] = _first_view(out["attention"], self.views)
        return scores


def _first_view(value: Any, views: int) -> Any:
    """Attention maps of every view [B * V, ...] (nested dicts of them) -> the first view's [B, ...]."""
    if isinstance(value, dict):
        return {key: _first_view(v, views) for key, v in value.items()}
    return value.unflatten(0, (-1, views))[:, 0]
