"""`patch_pixels`: a test image backbone that keeps what a frame shows. Each 16x16 patch's mean colour goes
through a fixed seeded projection to 64 channels: no weights, instant, and (unlike the tiny random-init ViT,
whose features of a moving object barely change) where an object is stays in the tokens, so what a model can
learn from per-frame tokens that a frame mean hides is measurable on real pixels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from pipeline.backbones.base import IMAGENET_MEAN, IMAGENET_STD, BackboneSpec, SemanticBackbone, register
from pipeline.core.errors import UserError

PATCH = 16


class PatchPixels(SemanticBackbone):
    def __init__(self, spec: BackboneSpec, seed: int):
        super().__init__(spec)
        generator = torch.Generator().manual_seed(seed)
        projection = torch.randn(3, spec.dim, generator=generator) / math.sqrt(3)
        self.register_buffer("projection", projection, persistent=False)

    def frame_tokens(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """x: [B*F, 3, S, S] -> [B, F, (S/16)^2, D]: each patch's mean colour, projected."""
        colours = rearrange(F.avg_pool2d(x, PATCH), "(b f) c h w -> b f (h w) c", b=batch)
        return colours @ self.projection.to(colours.dtype)


def _build(spec: BackboneSpec, weights: str | None, random_init: bool, seed: int) -> PatchPixels:
    if weights is not None:
        raise UserError(
            f"{spec.name} has no weights (a fixed projection of patch colours): leave out --semantic-weights"
        )
    return PatchPixels(spec, seed)


register(
    BackboneSpec(
        name="patch_pixels",
        kind="semantic",
        model="patch mean colours, fixed seeded projection (tests only)",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        dim=64,
        tokens=(224 // PATCH) ** 2,
        layer="patch mean colour",
    ),
    _build,
)
