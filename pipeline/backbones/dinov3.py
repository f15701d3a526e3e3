"""DINOv3 ViT image backbones through `transformers`: patch tokens only, no CLS or register tokens."""

from __future__ import annotations

import dataclasses

import torch
from einops import rearrange

from pipeline.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    FrozenBackbone,
    SemanticBackbone,
    register,
)
from pipeline.backbones.hub import architecture, load_pretrained
from pipeline.core.defaults import DINOV3_HUB_IDS
from pipeline.core.errors import UserError

VITL16 = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
VITB16 = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
VITS16 = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
COMMON = dict(
    patch_size=16,
    num_register_tokens=4,
    layerscale_value=1.0,
    rope_theta=100.0,
    key_bias=False,
    query_bias=True,
    value_bias=True,
    proj_bias=True,
    mlp_bias=True,
    use_gated_mlp=False,
    pos_embed_rescale=2.0,
)


class DINOv3Patches(SemanticBackbone):
    """[B, F, H, W, 3] uint8 frames -> every frame's (S/16)^2 patch tokens, kept as configured (by default their
    mean over the F frames: [B, (S/16)^2, D])."""

    def __init__(self, spec: BackboneSpec, model: torch.nn.Module):
        super().__init__(spec)
        self.model = model
        self.skip = 1 + model.config.num_register_tokens  # [CLS, registers..., patches...]

    def frame_tokens(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """x: [B*F, 3, S, S] -> [B, F, P, D]."""
        tokens = self.model(pixel_values=x).last_hidden_state[:, self.skip :]
        return rearrange(tokens, "(b f) p d -> b f p d", b=batch)


def _build(spec: BackboneSpec, weights: str | None, random_init: bool, seed: int) -> FrozenBackbone:
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    if random_init:
        torch.manual_seed(seed)
        return DINOv3Patches(
            spec, DINOv3ViTModel(DINOv3ViTConfig(image_size=spec.input_size, **{**COMMON, **spec.arch}))
        )
    source = weights or spec.model
    model = load_pretrained(DINOv3ViTModel, source, "DINOv3", f"--{spec.kind}-weights")
    found = {key: getattr(model.config, key) for key in spec.arch}
    if found != spec.arch:  # a hub id downloaded just now: its architecture was not known before
        raise UserError(f"DINOv3 weights '{source}' are {found}, backbone {spec.name} expected {spec.arch}")
    return DINOv3Patches(spec, model)


def _adapt(spec: BackboneSpec, weights: str | None, layer: str | None, frames: int) -> BackboneSpec:
    """The architecture of `weights` (their config.json), as the variant's published keys name it, plus the
    patch size where it is not 16."""
    arch = architecture(weights, {**spec.arch, "patch_size": COMMON["patch_size"]}, "DINOv3")
    patch = arch.pop("patch_size") if arch["patch_size"] == COMMON["patch_size"] else arch["patch_size"]
    if spec.input_size % patch:
        raise UserError(f"DINOv3 weights {weights}: patch size {patch} does not divide the {spec.input_size} px input")
    return dataclasses.replace(spec, arch=arch, dim=arch["hidden_size"], tokens=(spec.input_size // patch) ** 2)


def _spec(name: str, model: str, arch: dict, size: int = 224) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        kind="semantic",
        model=model,
        input_size=size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        dim=arch["hidden_size"],
        tokens=(size // 16) ** 2,
        layer="last_hidden_state[patches]",
        arch=arch,
    )


register(_spec("dinov3_vitb16", DINOV3_HUB_IDS["dinov3_vitb16"], VITB16), _build, _adapt, hub=True)
register(_spec("dinov3_vits16", DINOV3_HUB_IDS["dinov3_vits16"], VITS16), _build, _adapt, hub=True)
register(_spec("dinov3_vitl16", DINOV3_HUB_IDS["dinov3_vitl16"], VITL16), _build, _adapt, hub=True)
# Test-sized: 2 layers, 64 wide, the same [CLS, 4 registers, 196 patches] token layout.
register(_spec("dinov3_tiny", "dinov3-tiny (random init only)", TINY), _build, _adapt, hub=True)
