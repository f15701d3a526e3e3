"""Every default of how a training run reads its caches, once (the `data` part of a training config)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.config_loading import setting

DATA_MODES = ("auto", "device", "ram", "streamed")
SELECT_ON = ("validation", "holdout")
VIEW_CHOICES = ("random", "first")  # what a training step reads of a multi-view cache's clip (evaluation: all)


@dataclass
class DataConfig:
    batch_size: int = setting(64, "Clips per optimizer step (the global batch under torchrun).", low=1)
    ram_limit_gb: float = setting(8.0, "Caches larger than this are streamed shard by shard.", low=0.0)
    mode: str = setting(
        "auto",
        "Where the training features live: device (GPU memory; batches gathered there), ram, or streamed (shard "
        "windows read ahead); auto: the GPU when they fit in half its free memory, else RAM within ram_limit_gb.",
        choices=DATA_MODES,
    )
    select_on: str = setting(
        "validation",
        "Clips that choose the best epoch (and a sweep's configurations): holdout, a fixed class-stratified part "
        "of the training cache never trained on (sweeps default to it), or validation (optimistic: the clips the "
        "numbers are reported on).",
        choices=SELECT_ON,
    )
    holdout_fraction: float = setting(
        0.1, "Part of each class of the training cache held out when select_on is holdout.", low=0.0, high=0.5,
        low_open=True, high_open=True,
    )  # fmt: skip
    order_seed: int | None = setting(
        None,
        "Seed of the order of training batches; default: the run's seed. A sweep's members share one (0 unless its "
        "spec sets it), so that members stepped together on each batch read train exactly as alone.",
        low=0,
    )
    views: str = setting(
        "random",
        "Which view of a multi-view cache a clip trains on at each step: one drawn at random (with the batch "
        "order, from order_seed), or the first (the centre square on the centred grid). Evaluation averages every "
        "view.",
        choices=VIEW_CHOICES,
    )
    token_dropout: float = setting(
        0.0, "Probability of zeroing each input token while training.", low=0.0, high=1.0, high_open=True
    )
    mixup_alpha: float = setting(0.0, "Beta(alpha, alpha) mixup of features and targets; 0 disables.", low=0.0)
