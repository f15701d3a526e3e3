"""pytorchvideo I3D-R50 (Kinetics-400, 8x8) as a motion backbone, tapped at a residual stage.

The default tap is res3 (`blocks[3]`): a 16-frame clip gives [B, 512, 8, 28, 28], averaged over space to
[8, 512]. This is NOT the classic Inception-I3D 1024-d Mixed_5c feature; res5 gives [8, 2048].
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import torch
from einops import reduce

from pipeline.backbones.base import BackboneSpec, FrozenBackbone, register
from pipeline.core.errors import UserError

KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)
# stage -> (index in model.blocks, channels as a multiple of the stem width, temporal stride so far)
LAYERS = {"res2": (1, 4, 1), "res3": (3, 8, 2), "res4": (4, 16, 2), "res5": (5, 32, 2)}


class I3DSegments(FrozenBackbone):
    """[B, T, H, W, 3] uint8 frames -> [B, T / stride, C] per-segment features, spatially averaged."""

    def __init__(self, spec: BackboneSpec, blocks: torch.nn.ModuleList):
        super().__init__(spec)
        self.blocks = blocks

    def features(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """x: [B*T, 3, S, S] -> [B, T', C]."""
        x = x.view(batch, -1, *x.shape[1:]).transpose(1, 2)  # [B, 3, T, S, S]
        for block in self.blocks:
            x = block(x)
        return reduce(x, "b c t h w -> b t c", "mean")


def _load_checkpoint(model: torch.nn.Module, path: str) -> None:
    if not Path(path).is_file():
        raise UserError(f"I3D weights {path} do not exist (expected a .pyth/.pt checkpoint file, or 'pretrained')")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint gets the same message
        raise UserError(f"I3D weights {path} could not be read as a torch checkpoint: {exc}") from None
    state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise UserError(f"I3D weights {path}: expected a state dict or {{'model_state': state dict}}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"I3D weights {path} do not fit {model.__class__.__name__}: {str(exc)[:300]}") from None


def _build(spec: BackboneSpec, weights: str | None, random_init: bool, seed: int) -> FrozenBackbone:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytorchvideo's import-time deprecation notices are not ours to act on
        from pytorchvideo.models.hub import i3d_r50

    torch.manual_seed(seed)
    if random_init:
        model = i3d_r50(pretrained=False, **spec.arch)
    elif weights in (None, "pretrained"):
        if spec.arch:
            raise UserError(f"{spec.name} has no pretrained weights: use --random-init")
        model = i3d_r50(pretrained=True)
    else:
        model = i3d_r50(pretrained=False, **spec.arch)
        _load_checkpoint(model, weights)
    index = LAYERS[spec.layer][0]
    return I3DSegments(spec, torch.nn.ModuleList(model.blocks[: index + 1]))


def _adapt(spec: BackboneSpec, weights: str | None, layer: str | None, frames: int) -> BackboneSpec:
    layer = layer or spec.layer
    if layer not in LAYERS:
        raise UserError(f"unknown I3D layer '{layer}' (expected one of {', '.join(LAYERS)})")
    _, width, stride = LAYERS[layer]
    if frames % stride:
        raise UserError(f"I3D layer {layer} needs a frame count divisible by {stride}, got {frames}")
    stem = spec.arch.get("stem_dim_out", 64)
    return dataclasses.replace(spec, layer=layer, dim=stem * width, tokens=frames // stride)


def _spec(name: str, model: str, size: int, arch: dict) -> BackboneSpec:
    return _adapt(
        BackboneSpec(
            name=name,
            kind="motion",
            model=model,
            input_size=size,
            mean=KINETICS_MEAN,
            std=KINETICS_STD,
            dim=0,
            tokens=0,
            layer="res3",
            arch=arch,
        ),
        None,
        None,
        16,
    )


register(_spec("i3d_r50", "pytorchvideo i3d_r50 (Kinetics-400, 8x8)", 224, {}), _build, _adapt)
# Test-sized: the same stages at 1/8 of the width, on 112x112 frames.
register(
    _spec("i3d_tiny", "pytorchvideo i3d_r50 at 1/8 width (random init only)", 112, {"stem_dim_out": 8}), _build, _adapt
)
