"""`cli fuse-train`: train one fusion model on a cache, evaluate each epoch on another, keep the best.

Resumable exactly: checkpoints hold model, optimizer, scheduler, every RNG state and the position in the
epoch; SIGTERM (pre-emption) writes one at the next step and stops.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusion.checkpoint import load_checkpoint, save_checkpoint
from fusion.data import CacheData, CacheSpec
from fusion.distributed import Distributed
from fusion.evaluate import predict
from fusion.metrics import headline, metrics_for
from fusion.models import build_model, count_trainable
from fusion.run_log import RunLog
from fusion.train_config import TrainConfig
from pipeline.devices import autocast, resolve_device, resolve_precision
from pipeline.errors import UserError
from pipeline.provenance import created_with

log = logging.getLogger(__name__)


class Preempted(Exception):
    """SIGTERM arrived; a checkpoint to resume from was written."""


def check_same_task(a: CacheSpec, b: CacheSpec) -> None:
    for key in ("shapes", "label_fields", "label_sizes"):
        if getattr(a, key) != getattr(b, key):
            raise UserError(f"caches {a.path} and {b.path} differ in {key}: {getattr(a, key)} vs {getattr(b, key)}")


def task_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], criterion: nn.Module) -> torch.Tensor:
    if "logits" in outputs:
        return criterion(outputs["logits"].float(), targets["label"])
    return criterion(outputs["verb"].float(), targets["verb"]) + criterion(outputs["noun"].float(), targets["noun"])


def make_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per batch."""
    if cfg.optim.scheduler == "cosine_restarts":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=cfg.optim.restart_epochs * steps_per_epoch
        )
    if cfg.optim.scheduler != "cosine":
        raise UserError(f"optim.scheduler must be cosine or cosine_restarts, got '{cfg.optim.scheduler}'")
    warmup, total = cfg.optim.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1.0, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Trainer:
    def __init__(self, cache: Path, val_cache: Path, model_name: str, out: Path, cfg: TrainConfig):
        self.out, self.cfg, self.model_name = Path(out), cfg, model_name
        self.train_data = CacheData(cache, cfg.data.ram_limit_gb)
        self.val_data = CacheData(val_cache, cfg.data.ram_limit_gb)
        check_same_task(self.train_data.spec, self.val_data.spec)
        self.dist = Distributed.from_env()
        self.device = self.dist.device(resolve_device(cfg.device))
        self.precision = resolve_precision(cfg.precision, self.device)
        spec = self.train_data.spec
        torch.manual_seed(cfg.seed)  # the same initial weights in every process
        self.model = build_model(
            model_name, spec.shapes["semantic"][1], spec.shapes["motion"][1], spec.label_sizes, cfg.model
        ).to(self.device)
        # DDP averages gradients over processes; each process's loss is weighted so the average is the global mean.
        self.forward = (
            nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            if self.dist.enabled
            else self.model
        )
        self.parameters = count_trainable(self.model)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
        )
        self.steps_per_epoch = math.ceil(len(self.train_data) / cfg.data.batch_size)
        self.scheduler = make_scheduler(cfg, self.optimizer, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(enabled=self.precision == "fp16" and self.device.type == "cuda")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.order = torch.Generator().manual_seed(cfg.seed)
        self.position = {"epoch": 0, "batches_done": 0, "order_state": self.order.get_state(), "loss_sum": 0.0}
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.stop_requested = False

    # --- checkpoints -------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "position": dict(self.position),
            "history": self.history,
            "best": self.best,
            "config": dataclasses.asdict(self.cfg),
            "spec": self.train_data.spec.summary(),
            "cache": self.train_data.spec.provenance,
            "val_cache": self.val_data.spec.provenance,
            "created_with": created_with(),
            "trainable_parameters": self.parameters,
        }

    def resume(self) -> None:
        state = load_checkpoint(self.out / "last.pt")
        for key, mine in (
            ("config", dataclasses.asdict(self.cfg)),
            ("model_name", self.model_name),
            ("cache", self.train_data.spec.provenance),
            ("val_cache", self.val_data.spec.provenance),
        ):
            if state[key] != mine:
                raise UserError(
                    f"--resume: {self.out / 'last.pt'} was made with a different {key}; use the same "
                    "options, or a new --out"
                )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.position, self.history, self.best = dict(state["position"]), state["history"], state["best"]
        log.info("resumed from epoch %d, batch %d", self.position["epoch"], self.position["batches_done"])

    # --- the loop ----------------------------------------------------------------------------------------
    def _augment(self, inputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]):
        """Token dropout and mixup; returns inputs and a list of (weight, targets) to mix the loss over."""
        cfg = self.cfg.data
        if cfg.token_dropout > 0:
            inputs = {
                k: x * (torch.rand(*x.shape[:2], 1, device=x.device) >= cfg.token_dropout) for k, x in inputs.items()
            }
        if cfg.mixup_alpha <= 0:
            return inputs, [(1.0, targets)]
        lam = float(torch.distributions.Beta(cfg.mixup_alpha, cfg.mixup_alpha).sample())
        perm = torch.randperm(next(iter(inputs.values())).shape[0])
        mixed = {k: lam * x + (1 - lam) * x[perm.to(x.device)] for k, x in inputs.items()}
        return mixed, [(lam, targets), (1 - lam, {k: t[perm.to(t.device)] for k, t in targets.items()})]

    def _train_step(self, batch: dict[str, torch.Tensor]) -> float:
        """One optimizer step on this process's part of a global batch; returns the global batch's mean loss."""
        targets = {f: batch[f].to(self.device, non_blocking=True) for f in self.train_data.spec.label_fields}
        inputs, parts = self._augment(self.train_data.model_inputs(batch, self.device), targets)
        with autocast(self.device, self.precision):
            outputs = self.forward(inputs)
            loss = sum(weight * task_loss(outputs, part, self.criterion) for weight, part in parts)
        share = len(batch["row"]) / batch.get("global_size", len(batch["row"]))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * share * self.dist.world).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return self.dist.sum(float(loss.detach()) * share)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    def fit(self, on_progress: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        run_log = RunLog(self.out, enabled=self.dist.main)
        previous = (
            signal.signal(signal.SIGTERM, self._on_sigterm)
            if threading.current_thread() is threading.main_thread()
            else None
        )
        try:
            self.model.train()
            while self.position["epoch"] < self.cfg.epochs:
                self._epoch(on_progress if self.dist.main else None, run_log)
                run_log.epoch(self.history)
            run_log.plot(self.history)
        finally:
            run_log.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        summary = {
            "model": self.model_name,
            "trainable_parameters": self.parameters,
            "best": self.best,
            "last": self.history[-1],
            "out": str(self.out),
            "processes": self.dist.world,
        }
        if self.dist.main:
            (self.out / "metrics.json").write_text(json.dumps(summary, indent=2))
        return summary

    def _save(self, name: str, extra: dict[str, Any] | None = None) -> None:
        """Process 0 writes; the others wait, so nobody reads a checkpoint half written."""
        if self.dist.main:
            save_checkpoint(self.out / name, {**self._state(), **(extra or {})})
        self.dist.barrier()

    def _epoch(self, on_progress: Callable[[int, int, float], None] | None, run_log: RunLog) -> None:
        epoch, skip = self.position["epoch"], self.position["batches_done"]
        self.order.set_state(self.position["order_state"])
        batches = self.train_data.batches(
            self.cfg.data.batch_size, shuffle=True, generator=self.order, rank=self.dist.rank, world=self.dist.world
        )
        for i, batch in enumerate(batches):
            if i < skip:
                continue  # resuming mid-epoch: the same permutation, minus what was already trained on
            loss = self._train_step(batch)
            self.position["loss_sum"] += loss * batch["global_size"]
            self.position["batches_done"] = i + 1
            run_log.step(epoch + 1, i + 1, loss)
            if on_progress:
                on_progress(epoch, i + 1, self.position["loss_sum"])
            if self.dist.any(self.stop_requested):  # every process stops at the same step
                self._save("last.pt")
                raise Preempted(str(self.out / "last.pt"))
        outputs, targets, val_loss = predict(
            self.model,
            self.val_data,
            self.cfg.data.batch_size,
            self.device,
            self.precision,
            lambda out, target: task_loss(out, target, self.criterion),
        )
        metrics = metrics_for(outputs, targets)
        row = {
            "epoch": epoch + 1,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": self.position["loss_sum"] / len(self.train_data),
            "val_loss": val_loss,
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        self.history.append(row)
        name, value = headline(metrics)
        if self.best is None or value > self.best["value"]:
            self.best = {"epoch": epoch + 1, "metric": name, "value": value, **row}
            self._save("best.pt", {"metrics": metrics})
        self.position = {"epoch": epoch + 1, "batches_done": 0, "order_state": self.order.get_state(), "loss_sum": 0.0}
        self._save("last.pt")
        log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in row.items() if isinstance(v, float)})
