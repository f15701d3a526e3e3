"""V-JEPA 2 video transformers through `transformers` (`VJEPA2Model`), the encoder only (no predictor, no CLS
token), usable in either slot.

Preprocessing is `VJEPA2VideoProcessor`'s: the square frame scaled to crop x 256/224 (its shortest edge), the
centre crop x crop cut, ImageNet mean and std. The encoder gives one token per tubelet (2 frames) and patch:
16 frames at 256 px are 8 steps x 16 x 16 patches. In the motion slot the cache keeps each step's spatial mean
(`[steps, width]`, a drop-in for I3D's segment tokens); in the semantic slot each step's patch grid, reduced as
sampling.semantic_reduce and semantic_pool say (as DINOv3's frames are, a step standing for a frame).
"""

from __future__ import annotations

import dataclasses
import re

import torch
from einops import rearrange
from torch import nn

from pipeline.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    FrozenBackbone,
    SemanticBackbone,
    register,
)
from pipeline.backbones.hub import architecture, load_pretrained
from pipeline.core.defaults import VJEPA2_HUB_IDS
from pipeline.core.errors import UserError

FRAMES = 16  # V-JEPA 2's SSv2 frozen evaluation samples 16 frames a clip
NORMED = "last_hidden_state"  # the encoder's output after its final LayerNorm (the default tap)
ARCH_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "patch_size", "crop_size",
             "tubelet_size")  # fmt: skip
VITL = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4.0)
VITH = dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, mlp_ratio=4.0)
VITG = dict(hidden_size=1408, num_hidden_layers=40, num_attention_heads=22, mlp_ratio=48 / 11)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=4.0)


def resize_size(crop: int) -> int:
    """The side the processor scales a frame's shortest edge to before its centre crop (as VJEPA2VideoProcessor)."""
    return int(crop * 256 / 224)


class VJEPA2Steps(nn.Module):
    """The encoder (up to a tapped block): normalised frames [B*T, 3, S, S] -> [B, T / tubelet, P, D]."""

    def __init__(self, spec: BackboneSpec, encoder: nn.Module):
        super().__init__()
        self.encoder, self.crop = encoder, spec.arch["crop_size"]
        self.grid = self.crop // spec.arch["patch_size"]

    def forward(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """x: [B*T, 3, S, S] -> [B, T / tubelet, P, D], P = (crop / patch)^2, row-major within a step."""
        top = int(round((x.shape[-1] - self.crop) / 2.0))  # torchvision's center_crop offset
        x = x[..., top : top + self.crop, top : top + self.crop]
        tokens = self.encoder(pixel_values_videos=x.unflatten(0, (batch, -1))).last_hidden_state
        return rearrange(tokens, "b (t p) d -> b t p d", p=self.grid * self.grid)


class VJEPA2Motion(FrozenBackbone):
    """[B, T, H, W, 3] uint8 -> [B, T / tubelet, D]: each step's tokens averaged over space."""

    def __init__(self, spec: BackboneSpec, steps: VJEPA2Steps):
        super().__init__(spec)
        self.steps = steps

    def features(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """x: [B*T, 3, S, S] -> [B, T / tubelet, D]."""
        return self.steps(x, batch).mean(dim=2)


class VJEPA2SpaceTime(SemanticBackbone):
    """[B, T, H, W, 3] uint8 -> every step's patch grid, kept as configured (by default their mean over steps)."""

    def __init__(self, spec: BackboneSpec, steps: VJEPA2Steps):
        super().__init__(spec)
        self.steps = steps

    def frame_tokens(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """x: [B*T, 3, S, S] -> [B, T / tubelet, P, D]."""
        return self.steps(x, batch)


def _block(layer: str) -> int | None:
    """The block a layer name taps (`blockN`: the output of block N, 1-based, before the final norm), None for
    the normed output."""
    if layer == NORMED:
        return None
    match = re.fullmatch(r"block(\d+)", layer)
    if not match:
        raise UserError(f"unknown V-JEPA 2 layer '{layer}' (expected {NORMED} or blockN, N a block number)")
    return int(match.group(1))


def _build(spec: BackboneSpec, weights: str | None, random_init: bool, seed: int) -> FrozenBackbone:
    from transformers import VJEPA2Config, VJEPA2Model

    if random_init:
        torch.manual_seed(seed)
        model = VJEPA2Model(VJEPA2Config(**spec.arch))
    else:
        source = weights or spec.model
        model = load_pretrained(VJEPA2Model, source, "V-JEPA 2", f"--{spec.kind}-weights")
        found = {key: getattr(model.config, key) for key in spec.arch}
        if found != spec.arch:  # a hub id downloaded just now: its architecture was not known before
            raise UserError(f"V-JEPA 2 weights '{source}' are {found}, backbone {spec.name} expected {spec.arch}")
    encoder = model.encoder  # the predictor is never run: it is left behind with the model
    block = _block(spec.layer)
    if block is not None:  # blocks past the tap are never run, and the final norm belongs to the last block
        encoder.layer = encoder.layer[:block]
        encoder.layernorm = nn.Identity()
    steps = VJEPA2Steps(spec, encoder)
    return VJEPA2Motion(spec, steps) if spec.kind == "motion" else VJEPA2SpaceTime(spec, steps)


def _adapt(spec: BackboneSpec, weights: str | None, layer: str | None, frames: int) -> BackboneSpec:
    """The architecture of `weights` (their config.json) or the variant's, the tapped layer, and for the motion
    slot `frames` input frames (a multiple of the tubelet)."""
    arch = architecture(weights, spec.arch, "V-JEPA 2")
    layer = layer or NORMED
    block = _block(layer)
    if block is not None and not 1 <= block <= arch["num_hidden_layers"]:
        raise UserError(f"V-JEPA 2 layer {layer}: {spec.name} has blocks 1..{arch['num_hidden_layers']}")
    crop, patch, tubelet = arch["crop_size"], arch["patch_size"], arch["tubelet_size"]
    if crop % patch:
        raise UserError(f"V-JEPA 2 weights {weights}: patch size {patch} does not divide the {crop} px crop")
    if spec.kind == "motion" and frames % tubelet:
        raise UserError(f"{spec.name} groups frames in tubelets of {tubelet}: sampling.motion_frames must be a "
                        f"multiple of {tubelet}, got {frames}")  # fmt: skip
    per_step = (crop // patch) ** 2
    return dataclasses.replace(
        spec,
        arch=arch,
        dim=arch["hidden_size"],
        input_size=resize_size(crop),
        tokens=frames // tubelet if spec.kind == "motion" else per_step,
        layer=layer,
        tubelet=tubelet,
    )


def _spec(name: str, model: str, arch: dict, crop: int = 256) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        kind="video",
        model=model,
        input_size=resize_size(crop),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        dim=arch["hidden_size"],
        tokens=0,  # set by the slot and the frames (_adapt)
        layer=NORMED,
        arch={**arch, "patch_size": 16, "crop_size": crop, "tubelet_size": 2},
        tubelet=2,
        eval_frames=FRAMES,
    )


for _name, _arch in (("vjepa2_vitl", VITL), ("vjepa2_vith", VITH), ("vjepa2_vitg", VITG)):
    register(_spec(_name, VJEPA2_HUB_IDS[_name], _arch), _build, _adapt, hub=True)
register(_spec("vjepa2_vitg384", VJEPA2_HUB_IDS["vjepa2_vitg384"], VITG, crop=384), _build, _adapt, hub=True)
# Test-sized: 2 blocks, 64 wide, at 128 px (8 x 8 patches a step); the same tubelets and token order.
register(_spec("vjepa2_tiny", "vjepa2-tiny (random init only)", TINY, crop=128), _build, _adapt, hub=True)
