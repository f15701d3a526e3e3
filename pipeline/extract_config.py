"""Every default of an extraction run, once. YAML configs and command-line options override these."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SamplingConfig:
    motion_frames: int = 16  # uniformly over the clip; i3d_r50 halves time, so 16 frames give 8 segments
    semantic_frames: int = 8  # frames given to the image backbone, reduced to one patch map per clip
    semantic_reduce: str = "mean"  # "mean" over the semantic frames, or "center" (the middle one only)


@dataclass
class BackboneConfig:
    semantic: str = "dinov3_vitb16"
    motion: str = "i3d_r50"
    semantic_weights: str | None = None  # local directory / checkpoint file, or a hub id on an online machine
    motion_weights: str | None = None  # local checkpoint file, or "pretrained" for pytorchvideo's download
    motion_layer: str = "res3"  # res2 | res3 | res4 | res5
    random_init: bool = False  # same architectures, seeded random weights (no download)
    seed: int = 0


@dataclass
class RunConfig:
    batch_size: int = 8
    workers: int = 2
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | fp16 | bf16
    decode_timeout: float = 120.0  # seconds per clip before a decode counts as hung
    shard_size: int = 64  # clips per Zarr shard


@dataclass
class ExtractConfig:
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    backbones: BackboneConfig = field(default_factory=BackboneConfig)
    run: RunConfig = field(default_factory=RunConfig)
