"""What a training run optimises and how: the task loss over a model's named outputs, the augmentation of its
batches, the per-step learning-rate schedule; and the check that two caches pose the same task."""

from __future__ import annotations

import math

import torch
from torch import nn

from fusion.data.cache_spec import CacheSpec
from fusion.data.config import DataConfig
from fusion.training.config import TrainConfig
from pipeline.core.errors import UserError


def check_same_task(a: CacheSpec, b: CacheSpec) -> None:
    for key in ("shapes", "label_fields", "label_sizes"):
        if getattr(a, key) != getattr(b, key):
            raise UserError(f"caches {a.path} and {b.path} differ in {key}: {getattr(a, key)} vs {getattr(b, key)}")


def task_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], criterion: nn.Module) -> torch.Tensor:
    if "logits" in outputs:
        return criterion(outputs["logits"].float(), targets["label"])
    return criterion(outputs["verb"].float(), targets["verb"]) + criterion(outputs["noun"].float(), targets["noun"])


def mixed_loss(
    outputs: dict[str, torch.Tensor], parts: list[tuple[float, dict[str, torch.Tensor]]], criterion: nn.Module
) -> torch.Tensor:
    """The task loss mixed over `augment`'s (weight, targets) parts: 0-d."""
    return sum(weight * task_loss(outputs, targets, criterion) for weight, targets in parts)


def augment(
    inputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], cfg: DataConfig
) -> tuple[dict[str, torch.Tensor], list[tuple[float, dict[str, torch.Tensor]]]]:
    """Token dropout and mixup of a training batch: the inputs and a list of (weight, targets) the loss is mixed
    over. {"semantic": [B, N, D] or [B, F, N, D], ...} -> the same shapes; each token dropped on its own."""
    if cfg.token_dropout > 0:
        keep = {k: torch.rand(*x.shape[:-1], 1, device=x.device) >= cfg.token_dropout for k, x in inputs.items()}
        inputs = {k: x * keep[k] for k, x in inputs.items()}
    if cfg.mixup_alpha <= 0:
        return inputs, [(1.0, targets)]
    lam = float(torch.distributions.Beta(cfg.mixup_alpha, cfg.mixup_alpha).sample())
    perm = torch.randperm(next(iter(inputs.values())).shape[0])
    mixed = {k: lam * x + (1 - lam) * x[perm.to(x.device)] for k, x in inputs.items()}
    return mixed, [(lam, targets), (1 - lam, {k: t[perm.to(t.device)] for k, t in targets.items()})]


def make_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per batch. The cosine is laid over `cfg.epochs`: a run extended to more epochs continues on
    the longer curve from the step it reached."""
    if cfg.optim.scheduler == "cosine_restarts":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=cfg.optim.restart_epochs * steps_per_epoch
        )
    warmup, total = cfg.optim.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1.0, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
