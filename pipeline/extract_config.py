"""Every default of an extraction run, once, with its help and accepted values. YAML configs and command-line
options override these and are checked against them before anything is created."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pipeline.core.config_loading import setting
from pipeline.core.defaults import DINOV3_HUB_IDS, SHARD_SIZE_MAX, VJEPA2_HUB_IDS, device_setting, precision_setting

REDUCES = ("mean", "center", "frames")
SPATIAL_VIEWS = (1, 3)
IMAGE_FRAMES = 8  # semantic frames of an image backbone when sampling.semantic_frames is left to the backbone


def _backbones(kind: str):
    def load() -> list[str]:
        from pipeline.backbones import names

        return names(kind)

    return load


@dataclass
class SamplingConfig:
    # uniformly over the clip; i3d_r50 halves time, so 16 frames give 8 segments
    motion_frames: int = setting(16, "Frames sampled uniformly for the motion backbone.", low=1)
    semantic_frames: int | None = setting(
        None,
        "Frames given to the semantic backbone (mean, frames); a video transformer's are grouped in tubelets "
        "of 2, one token step each.",
        low=1,
        absent=f"the backbone's: {IMAGE_FRAMES} for image backbones, 16 for V-JEPA 2 (its SSv2 evaluation's)",
    )
    semantic_reduce: str = setting(
        "mean",
        "What the cache keeps of the semantic frames: the mean of their patch maps, the middle frame's map only "
        "(center), or every frame's map (frames: time kept, semantic_frames times the tokens).",
        choices=REDUCES,
    )
    semantic_pool: int = setting(
        1, "Average k x k blocks of each frame's patch grid (2: 14x14 -> 7x7 = 49 tokens a frame).", low=1
    )
    spatial_views: int = setting(
        1,
        "Squares cut from each frame: 1, the centre one; 3, also the two ends of the long side (left and right, "
        "or top and bottom for portrait video), as the 3-crop test. Both streams see every view.",
        check=lambda v: None if v in SPATIAL_VIEWS else "1 or 3",
    )
    temporal_views: int = setting(
        1, "Sampling grids per clip, offset evenly within each segment (the first at the segment centres).", low=1
    )

    @property
    def views(self) -> int:
        """Views a clip has in the cache: spatial-major, the first the centre square on the centred grid."""
        return self.spatial_views * self.temporal_views


@dataclass
class BackboneConfig:
    semantic: str = setting(
        "dinov3_vitb16",
        "Semantic backbone variant: an image model (DINOv3, per-frame patch maps) or V-JEPA 2 (space-time patch "
        "tokens, a grid a 2-frame tubelet).",
        choices=_backbones("semantic"),
    )
    motion: str = setting(
        "i3d_r50",
        "Motion backbone variant: I3D (a token a segment) or V-JEPA 2 (a token a 2-frame tubelet, its patches "
        "averaged).",
        choices=_backbones("motion"),
    )
    semantic_weights: str | None = setting(
        None,
        "DINOv3 or V-JEPA 2 weights: a directory saved by transformers (config.json + model.safetensors; the "
        "architecture is read from its config.json), or a hub id on an online machine.",
        absent=f"the variant's hub id: {DINOV3_HUB_IDS['dinov3_vitb16']} for dinov3_vitb16",
    )
    motion_weights: str | None = setting(
        None,
        "I3D weights: a local checkpoint file, or 'pretrained' to download. V-JEPA 2 weights: as --semantic-weights.",
        absent=f"pretrained (pytorchvideo's I3D_8x8_R50, downloaded) for i3d_r50; the variant's hub id for "
        f"V-JEPA 2: {VJEPA2_HUB_IDS['vjepa2_vitl']} for vjepa2_vitl",
    )
    motion_layer: str | None = setting(
        None,
        "Layer of the motion backbone to tap: an I3D stage (res2, res3, res4, res5); for V-JEPA 2 "
        "last_hidden_state (the encoder's normed output) or blockN (block N's output, 1-based).",
        absent="the backbone's: res3 for I3D, last_hidden_state for V-JEPA 2",
    )
    random_init: bool = setting(False, "Seeded random weights, same architectures (no download).")
    seed: int = setting(0, "Seed of --random-init weights.", low=0)


@dataclass
class RunConfig:
    batch_size: int = setting(8, "Clips per model batch.", low=1)
    workers: int = setting(2, "Decoder processes (0: decode in the main process, no crash isolation).", low=0)
    device: str = device_setting()
    precision: str = precision_setting()
    decode_timeout: float = setting(120.0, "Seconds per clip before a decode counts as hung (0: no limit).", low=0)
    decode_threads: int = setting(0, "Threads per video decoder (0: the CPU cores divided among the workers).", low=0)
    shard_size: int = setting(64, "Clips per Zarr shard.", low=1, high=SHARD_SIZE_MAX)


@dataclass
class ExtractConfig:
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    backbones: BackboneConfig = field(default_factory=BackboneConfig)
    run: RunConfig = field(default_factory=RunConfig)


def with_backbone_defaults(cfg: ExtractConfig) -> ExtractConfig:
    """`cfg` with the settings left to the backbones (None) filled in from the variants: the semantic frames (a
    variant's evaluation frames, else IMAGE_FRAMES) and the motion layer (the variant's default tap), so that
    what a cache records is what ran."""
    from pipeline.backbones import REGISTRY

    s, b = cfg.sampling, cfg.backbones
    frames = s.semantic_frames
    if frames is None:
        variant = REGISTRY.get(b.semantic)
        frames = (variant.spec.eval_frames if variant else None) or IMAGE_FRAMES
    layer = b.motion_layer
    if layer is None and b.motion in REGISTRY:
        layer = REGISTRY[b.motion].spec.layer
    return dataclasses.replace(
        cfg,
        sampling=dataclasses.replace(s, semantic_frames=frames),
        backbones=dataclasses.replace(b, motion_layer=layer),
    )


def decoder_threads(run: RunConfig) -> int:
    """Threads per video decoder: the cores this process may use, shared by the decoding processes, so that
    workers and threads together never oversubscribe the CPU."""
    if run.decode_threads:
        return run.decode_threads
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, run.workers))
