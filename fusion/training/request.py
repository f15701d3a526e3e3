"""One training run as it was asked for, in one object: fuse-train, a sweep member, the demo and the benches
build it, run_training and the Trainer read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusion.training.config import TrainConfig


@dataclass(frozen=True)
class TrainingRequest:
    """Train `model` on `cache`, validate on `val_cache`, write to `out`; `cfg` is a checked config (as
    `training_config` returns it). The allow_* flags relax one refusal each, and runs record that they did:
    `allow_partial` a cache with missing or failed clips, `allow_other_features` caches of different features,
    `allow_same_clips` validating on the training clips (a scorer checked on what a model fits). `until`: stop
    after that epoch (its last.pt written, no metrics.json: a sweep's pruning rung), None: train every epoch."""

    cache: Path
    val_cache: Path
    model: str
    out: Path
    cfg: TrainConfig
    resume: bool = False
    allow_partial: bool = False
    allow_other_features: bool = False
    allow_same_clips: bool = False
    until: int | None = None

    def __post_init__(self) -> None:
        for name in ("cache", "val_cache", "out"):
            object.__setattr__(self, name, Path(getattr(self, name)))
