"""The adapter contract every frozen backbone follows, and the registry of named variants.

An adapter takes uint8 frames `[B, T, H, W, 3]` on its device and returns `[B, tokens, dim]` features. Image
(semantic) adapters give every frame's patch tokens, which the cache keeps as configured: their mean over frames,
or every frame's (time kept), optionally averaged over k x k blocks of the grid. Preprocessing constants (input
size, mean, std) live in the variant's BackboneSpec, beside its registration.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from pipeline.core.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    kind: str  # "semantic" (image model, one patch map per clip) or "motion" (video model, per-segment)
    model: str  # architecture / hub id for provenance
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dim: int
    tokens: int
    layer: str
    arch: dict[str, Any] = field(default_factory=dict)  # constructor arguments of the architecture
    # Frames a token step spans (a video transformer's tubelet): a per-frame cache keeps one grid a step.
    tubelet: int = 1
    # Frames the variant is evaluated with in the image slot (None: sampling's default for image backbones).
    eval_frames: int | None = None

    def describe(self) -> dict[str, Any]:
        """What a cache records of the backbone; fields at their defaults are left out, so that caches made
        before those fields existed describe themselves as they did."""
        out = dataclasses.asdict(self)
        out.update(mean=list(self.mean), std=list(self.std))
        for name in ("tubelet", "eval_frames"):
            if out[name] == BackboneSpec.__dataclass_fields__[name].default:
                del out[name]
        return out


class FrozenBackbone(nn.Module):
    """Frozen, eval-mode, inference-only; subclasses implement `features` on normalised float input."""

    def __init__(self, spec: BackboneSpec):
        super().__init__()
        self.spec = spec
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    @property
    def dim(self) -> int:
        return self.spec.dim

    def freeze(self) -> FrozenBackbone:
        self.eval()
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: [B, T, H, W, 3] uint8 -> [B*T, 3, S, S] float, resized on the device when H != S."""
        x = rearrange(frames, "b t h w c -> (b t) c h w").float().div_(255.0)
        size = self.spec.input_size
        if x.shape[-2:] != (size, size):
            x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return (x - self.mean) / self.std

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: [B, T, H, W, 3] uint8 -> [B, tokens, dim]."""
        return self.features(self.normalise(frames), frames.shape[0])

    def views(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: [B, V, T, H, W, 3] uint8, V views a clip -> [B, V * tokens, dim], view-major as the cache keeps
        them. View by view, each in the batch shape of a one-view run, so that view 0 equals that run bit for bit."""
        return torch.cat([self(frames[:, v]) for v in range(frames.shape[1])], dim=1)

    def features(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        raise NotImplementedError


def reduce_frames(x: torch.Tensor, reduce: str, pool: int) -> torch.Tensor:
    """Every frame's patch tokens [B, F, P, D] -> what the cache keeps: [B, P', D] (the mean over frames; "center"
    gives one frame) or [B, F * P', D] frame-major ("frames"); P' = P / pool^2 after averaging pool x pool blocks
    of each frame's square grid."""
    if pool > 1:
        batch, side = x.shape[0], math.isqrt(x.shape[2])
        grid = rearrange(x, "b f (h w) d -> (b f) d h w", h=side)
        x = rearrange(F.avg_pool2d(grid, pool), "(b f) d h w -> b f (h w) d", b=batch)
    return x.flatten(1, 2) if reduce == "frames" else x.mean(dim=1)


class SemanticBackbone(FrozenBackbone):
    """An image backbone: subclasses give every frame's patch tokens (`frame_tokens`); `features` reduces them as
    `keep_frames` set (by default, the mean over frames)."""

    reduce, pool = "mean", 1

    def keep_frames(self, reduce: str, pool: int) -> SemanticBackbone:
        self.reduce, self.pool = reduce, pool
        return self

    def features(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """x: [B*F, 3, S, S] -> [B, tokens, D]."""
        return reduce_frames(self.frame_tokens(x, batch), self.reduce, self.pool)

    def frame_tokens(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """x: [B*F, 3, S, S] -> [B, F, P, D]."""
        raise NotImplementedError


def semantic_spec(spec: BackboneSpec, frames: int, reduce: str, pool: int) -> BackboneSpec:
    """The spec of a semantic backbone's output as the cache keeps it: its token count after pooling and, for
    "frames", times the steps (frames, or frames / tubelet for a video transformer)."""
    side = math.isqrt(spec.tokens)
    if pool > 1 and side % pool:
        raise UserError(f"sampling.semantic_pool: {pool} does not divide the {side}x{side} patch grid of {spec.name}")
    if reduce != "center" and frames % spec.tubelet:
        raise UserError(f"sampling.semantic_frames: {spec.name} groups frames in tubelets of {spec.tubelet}, "
                        f"got {frames} frames (expected a multiple of {spec.tubelet})")  # fmt: skip
    per_frame = (side // pool) ** 2
    return dataclasses.replace(spec, tokens=per_frame * (frames // spec.tubelet if reduce == "frames" else 1))


Factory = Callable[[BackboneSpec, str | None, bool, int], FrozenBackbone]
# Specialises a variant's spec to its weights' architecture, a tapped layer and a frame count:
# (spec, weights, layer, frames) -> spec; `weights` None for the variant's published architecture.
Adapt = Callable[[BackboneSpec, str | None, str | None, int], BackboneSpec]


@dataclass(frozen=True)
class Variant:
    spec: BackboneSpec  # kind "video": usable in both slots (the slot asked for becomes its kind)
    factory: Factory
    adapt: Adapt | None
    hub: bool  # its weights may be a Hugging Face hub id (else only a local file)


REGISTRY: dict[str, Variant] = {}


def register(spec: BackboneSpec, factory: Factory, adapt: Adapt | None = None, hub: bool = False) -> None:
    REGISTRY[spec.name] = Variant(spec, factory, adapt, hub)


def names(kind: str) -> list[str]:
    return [name for name, variant in REGISTRY.items() if variant.spec.kind in (kind, "video")]


def get_spec(
    name: str, kind: str, layer: str | None = None, frames: int = 1, weights: str | None = None
) -> BackboneSpec:
    """The spec of a registered variant in slot `kind`, with the output shape for the architecture of `weights`
    (where the variant reads it from them), the tapped `layer` and `frames` input frames."""
    if name not in names(kind):
        raise UserError(f"unknown {kind} backbone '{name}' (expected one of {', '.join(names(kind))})")
    variant = REGISTRY[name]
    spec = dataclasses.replace(variant.spec, kind=kind)
    return variant.adapt(spec, weights, layer, frames) if variant.adapt else spec


def build_backbone(
    spec: BackboneSpec, weights: str | None, random_init: bool, seed: int, reduce: str = "mean", pool: int = 1
) -> FrozenBackbone:
    """Build a registered variant: real weights from `weights`, or seeded random weights if `random_init`; an
    image backbone keeps its frames as `reduce` and `pool` say (sampling.semantic_reduce, semantic_pool)."""
    model = REGISTRY[spec.name].factory(spec, weights, random_init, seed).freeze()
    return model.keep_frames(reduce, pool) if isinstance(model, SemanticBackbone) else model
