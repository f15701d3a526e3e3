"""DINOv3 ViT image backbones through `transformers`: patch tokens only, no CLS or register tokens."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

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
from pipeline.core.defaults import DINOV3_HUB_IDS
from pipeline.core.errors import UserError

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


def _hub_cached(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except ValueError:  # not a repository id at all
        return False


def _hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached from here (offline mode, no route to it), or None."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as exc:
        return f"the hub ({host}) is unreachable from here ({exc})"
    return None


def _build(spec: BackboneSpec, weights: str | None, random_init: bool, seed: int) -> FrozenBackbone:
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    if random_init:
        torch.manual_seed(seed)
        model = DINOv3ViTModel(DINOv3ViTConfig(image_size=spec.input_size, **COMMON, **spec.arch))
    else:
        source = weights or spec.model
        try:
            if not Path(source).exists() and not _hub_cached(source):
                # Checked first: offline, from_pretrained would retry for about a minute before failing.
                problem = _hub_unreachable()
                if problem:
                    raise OSError(f"not in the local Hugging Face cache, and {problem}")
            model = DINOv3ViTModel.from_pretrained(source)
        except OSError as exc:
            raise UserError(
                f"could not load DINOv3 weights from '{source}': {exc}. Pass --semantic-weights "
                "with a local directory holding config.json and model.safetensors, or --random-init."
            ) from None
        if model.config.hidden_size != spec.dim:
            raise UserError(
                f"DINOv3 weights '{source}' are {model.config.hidden_size}-d, backbone {spec.name} is {spec.dim}-d"
            )
    return DINOv3Patches(spec, model)


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


register(_spec("dinov3_vitb16", DINOV3_HUB_IDS["dinov3_vitb16"], VITB16), _build)
register(_spec("dinov3_vits16", DINOV3_HUB_IDS["dinov3_vits16"], VITS16), _build)
# Test-sized: 2 layers, 64 wide, the same [CLS, 4 registers, 196 patches] token layout.
register(_spec("dinov3_tiny", "dinov3-tiny (random init only)", TINY), _build)
