"""Frozen backbones by name. Importing this package registers every variant."""

from pipeline.backbones import dinov3, i3d, patch_pixels, vjepa2  # noqa: F401 - registration side effect
from pipeline.backbones.base import REGISTRY, BackboneSpec, FrozenBackbone, build_backbone, get_spec, names

__all__ = ["REGISTRY", "BackboneSpec", "FrozenBackbone", "build_backbone", "get_spec", "names"]
