"""Defaults and choice lists that both halves and the command line share, each stated once here. Nothing heavy is
imported, so `cli --help` reads them at once."""

from __future__ import annotations

import re
from typing import Any

from pipeline.core.config_loading import setting

DEVICE = "auto"
DEVICE_HELP = "auto, cpu, cuda or cuda:N."
PRECISION = "auto"
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
PRECISION_HELP = "Autocast dtype (auto: fp32 on CPU; on GPU bf16 where native, else fp16)."

DATASETS = ("ssv2", "epic100", "manifest")  # the names pipeline/datasets registers its readers under
SYNTH_DATASETS = ("ssv2", "epic100")  # the layouts `cli synth` writes

# The default backbones' features (DINOv3 ViT-B/16 patches; I3D res3 segments) and the benchmarks' class counts:
# defaults of help texts, benches and generated caches only; a cache's own shapes come from its attributes.
SEMANTIC_SHAPE = (196, 768)
MOTION_SHAPE = (8, 512)
# The published weights of each DINOv3 variant (what --semantic-weights loads when not given), read by the
# backbone registry and by help texts (this module stays light: `cli --help` imports no model code).
DINOV3_HUB_IDS = {
    "dinov3_vitb16": "facebook/dinov3-vitb16-pretrain-lvd1689m",
    "dinov3_vits16": "facebook/dinov3-vits16-pretrain-lvd1689m",
    "dinov3_vitl16": "facebook/dinov3-vitl16-pretrain-lvd1689m",
}
VJEPA2_HUB_IDS = {
    "vjepa2_vitl": "facebook/vjepa2-vitl-fpc64-256",
    "vjepa2_vith": "facebook/vjepa2-vith-fpc64-256",
    "vjepa2_vitg": "facebook/vjepa2-vitg-fpc64-256",
    "vjepa2_vitg384": "facebook/vjepa2-vitg-fpc64-384",
}
SSV2_CLASSES = 174
# Rows of a cache shard at most: its index is 16 bytes a row and its `done` chunk a byte, so a larger (forged)
# size would size reads and allocations; at real shapes a shard this large is already a 19 GB file.
SHARD_SIZE_MAX = 65536
EPIC_VERBS = 97
EPIC_NOUNS = 300


def device_name_problem(name: str) -> str | None:
    """Checked by form only: a login node without a GPU may still configure GPU tasks."""
    return None if re.fullmatch(r"auto|cpu|cuda(:\d+)?", name) else DEVICE_HELP.rstrip(".")


def device_setting() -> Any:
    return setting(DEVICE, DEVICE_HELP, check=device_name_problem)


def precision_setting() -> Any:
    return setting(PRECISION, PRECISION_HELP, choices=PRECISIONS)


def shape_text(shape: tuple[int, ...]) -> str:
    """(196, 768) -> '196x768', (8, 49, 768) -> '8x49x768', as the shape options take them."""
    return "x".join(map(str, shape))
