"""Every default of a fusion training run, once; named presets and YAML files override only what differs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion.config import FusionConfig
from pipeline.config_loading import apply_overrides, load_yaml_overrides
from pipeline.errors import UserError


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.05
    scheduler: str = "cosine"  # "cosine" (per step, after warm-up) | "cosine_restarts" (CosineAnnealingWarmRestarts)
    warmup_epochs: float = 1.0
    restart_epochs: int = 10  # T_0 of cosine_restarts
    grad_clip: float = 1.0  # max gradient norm; 0 disables


@dataclass
class DataConfig:
    batch_size: int = 64
    ram_limit_gb: float = 8.0  # caches larger than this are streamed shard by shard
    token_dropout: float = 0.0  # probability of zeroing each input token while training
    mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixup of features and targets; 0 disables


@dataclass
class TrainConfig:
    model: FusionConfig = field(default_factory=FusionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 30
    label_smoothing: float = 0.1
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | fp16 | bf16


PRESETS: dict[str, dict[str, Any]] = {
    # Small heads on frozen cached features: a higher learning rate with warm-up and light dropout.
    "default": {},
    # The original design notes' recipe, kept as stated for comparison.
    "seed_recipe": {
        "epochs": 30,
        "label_smoothing": 0.1,
        "model": {"dropout": 0.5},
        "data": {"batch_size": 24},
        "optim": {
            "lr": 5e-5,
            "weight_decay": 1e-4,
            "scheduler": "cosine_restarts",
            "restart_epochs": 10,
            "warmup_epochs": 0.0,
        },
    },
}


def training_config(preset: str, config_file: Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Defaults, then the preset, then the YAML file, then command-line options."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}' (expected one of {', '.join(PRESETS)})")
    cfg = apply_overrides(TrainConfig(), PRESETS[preset], where=f"preset {preset}")
    if config_file is not None:
        cfg = apply_overrides(cfg, load_yaml_overrides(config_file), where=str(config_file))
    return apply_overrides(cfg, overrides, where="command line")
