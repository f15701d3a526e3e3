"""Every default of a fusion training run, once; named presets and YAML files override only what differs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion.data.config import DataConfig
from fusion.models.config import FusionConfig
from pipeline.core.config_loading import apply_overrides, load_yaml_overrides, setting, validate
from pipeline.core.defaults import device_setting, precision_setting
from pipeline.core.errors import UserError

SCHEDULERS = ("cosine", "cosine_restarts")


@dataclass
class OptimConfig:
    lr: float = setting(3e-4, "Peak learning rate (AdamW).", low=0.0, low_open=True)
    weight_decay: float = setting(0.05, "AdamW weight decay.", low=0.0)
    scheduler: str = setting(
        "cosine",
        "cosine: per step to 0 after warm-up; cosine_restarts: CosineAnnealingWarmRestarts.",
        choices=SCHEDULERS,
    )
    warmup_epochs: float = setting(1.0, "Linear warm-up (cosine only).", low=0.0)
    restart_epochs: int = setting(10, "T_0 of cosine_restarts.", low=1)
    grad_clip: float = setting(1.0, "Max gradient norm; 0 disables.", low=0.0)


@dataclass
class TrainConfig:
    model: FusionConfig = field(default_factory=FusionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = setting(30, "Epochs (a larger value with --resume extends a finished run).", low=1)
    label_smoothing: float = setting(0.1, "Label smoothing of the cross-entropy.", low=0.0, high=1.0, high_open=True)
    seed: int = setting(0, "Seed of weights, data order and augmentation.", low=0)
    log_every: int = setting(
        20,
        "Steps between reading losses back from the device (progress, steps.csv, the NaN check, and signals "
        "under torchrun); the steps between never wait for the host.",
        low=1,
    )
    device: str = device_setting()
    precision: str = precision_setting()


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
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


def training_config(
    preset: str,
    config_file: Path | None,
    overrides: dict[str, Any],
    then: Callable[[TrainConfig], TrainConfig] | None = None,
    where: str = "config",
) -> TrainConfig:
    """Defaults, then the preset, then the YAML file, then `overrides` (nested, as in the YAML), then `then` (the
    command line's options, a sweep member's changes); checked once, as a whole, at the end."""
    if preset not in TRAIN_PRESETS:
        raise UserError(f"unknown preset '{preset}' (expected one of {', '.join(TRAIN_PRESETS)})")
    cfg = apply_overrides(TrainConfig(), TRAIN_PRESETS[preset], where=f"preset {preset}")
    if config_file is not None:
        cfg = apply_overrides(cfg, load_yaml_overrides(config_file), where=str(config_file))
    cfg = apply_overrides(cfg, overrides, where="overrides")
    return validate(then(cfg) if then else cfg, where)
