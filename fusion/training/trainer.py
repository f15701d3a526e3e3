"""`cli fuse-train`: train one fusion model on a cache, evaluate each epoch on another, keep the best.

Resumable exactly: checkpoints hold model, optimizer, scheduler, every RNG state and the position in the
epoch; SIGTERM (pre-emption) or SIGINT writes one at the next step and stops.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusion.data.cache_data import CacheData, open_caches
from fusion.evaluation.evaluate import Outputs, outputs_over
from fusion.evaluation.metrics import headline, metrics_for
from fusion.models.checkpoint import load_checkpoint, save_checkpoint
from fusion.models.registry import build_model, count_trainable
from fusion.training.config import TrainConfig
from fusion.training.distributed import Distributed
from fusion.training.objective import augment, check_same_task, make_scheduler, mixed_loss, task_loss
from fusion.training.request import TrainingRequest
from fusion.training.run_log import RunLog
from fusion.training.summary import run_summary
from pipeline.core import atomic, strict_json
from pipeline.core.config_loading import leaf_differences, with_defaults
from pipeline.core.devices import autocast, resolve_device, resolve_precision
from pipeline.core.errors import Interrupted, UserError
from pipeline.core.provenance import created_with

log = logging.getLogger(__name__)


class Preempted(Interrupted):
    """SIGTERM (pre-emption) or SIGINT (Ctrl-C) arrived; a checkpoint to resume from was written."""

    def __init__(self, checkpoint: Path, signum: int):
        super().__init__(str(checkpoint), signum)
        self.checkpoint = checkpoint


class NonFiniteLoss(Exception):
    """The loss became NaN or Inf; the run stopped before that step changed anything saved."""


class Trainer:
    def __init__(self, request: TrainingRequest, loaded: tuple[CacheData, CacheData, CacheData] | None = None):
        """`loaded`: the training, validation and selecting data already read (a sweep reads them once for all
        its members)."""
        cfg = request.cfg
        self.out, self.cfg, self.model_name, self.until = request.out, cfg, request.model, request.until
        requested = resolve_device(cfg.device)
        self.dist = Distributed.from_env(requested)
        self.device = self.dist.device(requested)
        # Each process validates its share of the clips; every process then gathers the whole.
        share = (self.dist.rank, self.dist.world)
        self.train_data, self.val_data, self.select_data = loaded or open_caches(
            request.cache, request.val_cache, cfg.data, self.device, request.allow_partial, share
        )
        check_same_task(self.train_data.spec, self.val_data.spec)
        self.precision = resolve_precision(cfg.precision, self.device)
        spec = self.train_data.spec
        torch.manual_seed(cfg.seed)  # the same initial weights in every process
        self.model = build_model(
            request.model, spec.shapes["semantic"][1], spec.shapes["motion"][1], spec.label_sizes, cfg.model
        ).to(self.device)
        if self.dist.rank:  # dropout and mixup draw their own masks in each process (data order stays global)
            torch.manual_seed(cfg.seed + 1_000_003 * self.dist.rank)
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
        self.order = torch.Generator().manual_seed(cfg.seed if cfg.data.order_seed is None else cfg.data.order_seed)
        self.position = {"epoch": 0, "batches_done": 0, "order_state": self.order.get_state(), "loss_sum": 0.0}
        self.history: list[dict[str, Any]] = []
        self.epoch_seconds: list[float] = []  # wall time of each epoch (training and validation); apart from
        # the history, whose rows an interrupted and resumed run reproduces exactly
        self.member: dict[str, Any] | None = None  # set by a sweep: the member's name, changed keys and seed
        self.feature_override: list[str] = []  # differences between the caches' features the user allowed
        self.best: dict[str, Any] | None = None
        self.stop_signal = 0  # set by a signal handler: checkpoint at the next step and stop
        self.rng: dict[str, Any] | None = None  # this run's random state while another of its lockstep group steps
        self._pending: list[tuple[int, torch.Tensor, int]] = []  # steps whose losses are not read back yet
        self._seconds = 0.0  # this epoch's time in this run's own steps
        self.run_log: RunLog | None = None
        self.on_step: Callable[[int, int, float], None] | None = None
        self.on_epoch: Callable[[dict[str, Any]], None] | None = None

    # --- checkpoints -------------------------------------------------------------------------------------
    def _state(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {"ranks": rng},
            "position": dict(self.position),
            "history": self.history,
            "epoch_seconds": self.epoch_seconds,
            "best": self.best,
            "config": dataclasses.asdict(self.cfg),
            "spec": self.train_data.spec.summary(),
            "cache": self.train_data.spec.provenance,
            "val_cache": self.val_data.spec.provenance,
            "created_with": created_with(),
            "trainable_parameters": self.parameters,
            "data": self.data_counts(),
            "normalisation": self.train_data.normalisation(),
            "feature_override": self.feature_override,
        }

    def data_counts(self) -> dict[str, dict[str, int]]:
        """Clips used and left out (not extracted, failed, unlabelled) of each cache: in every metrics file."""
        counts = {"train": self.train_data.counts.as_dict(), "validation": self.val_data.counts.as_dict()}
        if self.train_data.held_out:  # of the training cache's usable clips, these chose the epoch, untrained on
            counts["train"]["held_out"] = self.train_data.held_out
        return counts

    def resume(self) -> None:
        """Continue the run in `out` from last.pt. Every setting must match, except a larger --epochs, which
        extends a finished (or unfinished) run; log_every may differ too (it changes no result)."""
        path = self.out / "last.pt"
        if not path.is_file():
            raise UserError(
                f"--resume: {self.out} holds no run to resume (no last.pt); leave out --resume to start one"
            )
        state = load_checkpoint(path)
        now = {
            "config": dataclasses.asdict(self.cfg),
            "model_name": self.model_name,
            "cache": self.train_data.spec.provenance,
            "val_cache": self.val_data.spec.provenance,
        }
        # settings added since the checkpoint was written default to what the code did before them
        then = {
            **{key: state[key] for key in now},
            "config": with_defaults(state["config"], dataclasses.asdict(TrainConfig())),
        }
        differences = [
            d for d in leaf_differences(then, now) if not d.startswith(("config.epochs:", "config.log_every:"))
        ]
        if differences:
            raise UserError(
                f"--resume: {path} was made with other settings (checkpoint -> now: {'; '.join(differences)}); "
                "use the same options, or a new --out"
            )
        trained = state["position"]["epoch"]
        if self.cfg.epochs < trained:
            raise UserError(f"--epochs {self.cfg.epochs}: the run in {self.out} has already trained {trained} epochs")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if not self.dist.restore_rng(state["rng"], self.device):
            log.warning(
                "%s was written by a run of %d process(es), this one has %d: weights, optimizer and data "
                "order continue exactly, dropout draws do not",
                path,
                len(state["rng"].get("ranks") or [1]),
                self.dist.world,
            )
        self.position, self.history, self.best = dict(state["position"]), state["history"], state["best"]
        self.epoch_seconds = list(state.get("epoch_seconds", []))
        log.info("resumed from epoch %d, batch %d", self.position["epoch"], self.position["batches_done"])

    # --- one epoch, in the parts a lockstep group drives for all its runs on each batch it reads --------------
    def begin(
        self,
        on_step: Callable[[int, int, float], None] | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Open the run's logs; `on_step(epoch, steps_done, mean_loss)` and `on_epoch(history_row)` report."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.run_log = RunLog(self.out, enabled=self.dist.main, position=self.position)
        self.on_step, self.on_epoch = (on_step, on_epoch) if self.dist.main else (None, None)
        self.model.train()

    @property
    def finished(self) -> bool:
        return self.position["epoch"] >= self.cfg.epochs

    @property
    def paused(self) -> bool:
        """Trained as far as asked: every epoch, or the request's `until` (a sweep's pruning rung)."""
        return self.finished or (self.until is not None and self.position["epoch"] >= self.until)

    def epoch_batches(self) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """(step, batch) of the epoch in flight, steps counted from 1. Resuming mid-epoch: the same permutation,
        minus what was already trained on (not even read)."""
        self.order.set_state(self.position["order_state"])
        skip = self.position["batches_done"]
        batches = self.train_data.batches(self.cfg.data.batch_size, shuffle=True, generator=self.order,
                                          rank=self.dist.rank, world=self.dist.world, skip=skip,
                                          views=self.cfg.data.views)  # fmt: skip
        return enumerate(batches, start=skip + 1)

    def train_on(self, step: int, batch: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> int:
        """One step on a batch and its model inputs (read once for a whole lockstep group); returns the signal
        asking to stop (0: go on). Every process flushes at the same steps: a signal is seen at the next flush
        under torchrun (the processes agree there), at once otherwise (no collective needed)."""
        started = time.perf_counter()
        loss = self._train_step(batch, inputs)
        return self.record(step, loss, batch, time.perf_counter() - started)

    def record(self, step: int, loss: torch.Tensor, batch: dict[str, torch.Tensor], seconds: float) -> int:
        """Note a step taken (by `train_on`, or by the stack this run is part of) and its weighted loss; returns
        the signal asking to stop (0: go on)."""
        started = time.perf_counter()
        self._pending.append((step, loss, batch["global_size"]))
        stop = 0
        if not step % self.cfg.log_every or (self.stop_signal and not self.dist.enabled):
            self._flush()
            stop = self.dist.max(self.stop_signal)
        self._seconds += seconds + time.perf_counter() - started
        return stop

    def stop(self, signum: int) -> Preempted:
        """Write last.pt where the run stands (after the steps taken) and say so."""
        self._flush()
        self._save("last.pt")
        return Preempted(self.out / "last.pt", signum)

    def end_epoch(self, shared_seconds: float = 0.0, outputs: dict[str, Outputs] | None = None) -> None:
        """Validate, keep the best, write last.pt and the epoch's logs. `shared_seconds`: this run's part of the
        time a lockstep group spent reading batches (in its epoch_seconds); `outputs`: this run's outputs over
        its "validation" and "selecting" clips where its stack computed them."""
        started = time.perf_counter()
        self._flush()
        epoch = self.position["epoch"]
        outputs = outputs or {}
        metrics, val_loss = self._validate(self.val_data, outputs.get("validation"))
        row = {
            "epoch": epoch + 1,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": self.position["loss_sum"] / len(self.train_data),
            "val_loss": val_loss,
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        selecting = metrics
        if self.select_data is not self.val_data:  # the holdout chooses; validation is only reported
            selecting, holdout_loss = self._validate(self.select_data, outputs.get("selecting"))
            row.update({"holdout_loss": holdout_loss, **{f"holdout_{k}": v for k, v in selecting.items()}})
        self.history.append(row)
        name, value = headline(selecting)
        # Ties keep the earlier epoch. One decision for every process.
        if self.dist.from_main(self.best is None or value > self.best["value"]):
            self.best = {"epoch": epoch + 1, "metric": name, "value": value, "selected_on": self.cfg.data.select_on,
                         **row}  # fmt: skip
            self._save("best.pt", {"metrics": metrics})
        self.position = {"epoch": epoch + 1, "batches_done": 0, "order_state": self.order.get_state(), "loss_sum": 0.0}
        self.epoch_seconds.append(self._seconds + shared_seconds + time.perf_counter() - started)
        self._seconds = 0.0
        self._save("last.pt")
        self.run_log.epoch(self.history)
        if self.on_epoch:
            self.on_epoch(row)

    def end(self) -> dict[str, Any]:
        """Close the logs; when every epoch is trained, write metrics.json and return the run's summary."""
        self.run_log.close()
        if not self.finished:
            return {}
        self.run_log.plot(self.history)
        summary = run_summary(self._state([]), self.out, self.dist.world, self.member)
        if self.dist.main:
            atomic.write_text(self.out / "metrics.json", strict_json.dumps(summary, indent=2))
        return summary

    def _train_step(self, batch: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimizer step on this process's part of a global batch; returns the part's weighted loss, a 0-d
        tensor left on the device: nothing here waits for the device (`_flush` reads losses back in groups)."""
        targets = {f: batch[f].to(self.device, non_blocking=True) for f in self.train_data.spec.label_fields}
        inputs, parts = augment(inputs, targets, self.cfg.data)
        with autocast(self.device, self.precision):
            outputs = self.forward(inputs)
            loss = mixed_loss(outputs, parts, self.criterion)
        share = batch["share"]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * share * self.dist.world).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.detach().float() * share

    def _flush(self) -> None:
        """Read back the losses of the steps since the last flush, (step, weighted loss, global batch size) each:
        one transfer (and one collective) for all of them. A NaN/Inf loss stops the run here, before anything is
        saved: checkpoints are written only after a flush, so best.pt and last.pt keep the last good state."""
        pending, epoch = self._pending, self.position["epoch"]
        if not pending:
            return
        values = self.dist.sum(torch.stack([loss for _, loss, _ in pending]).double()).tolist()
        for (step, _, size), value in zip(pending, values):
            if not math.isfinite(value):
                raise NonFiniteLoss(
                    f"{self.out}: the training loss is {value} at epoch {epoch + 1}, step {step}: stopped; best.pt "
                    "and last.pt keep the last good state. Check the caches (`cli cache verify`), or lower --lr"
                )
            self.position["loss_sum"] += value * size
            self.position["batches_done"] = step
            self.run_log.step(epoch + 1, step, value)
        pending.clear()
        if self.on_step:
            seen = min(step * self.cfg.data.batch_size, len(self.train_data))
            self.on_step(epoch, step, self.position["loss_sum"] / seen)

    def _save(self, name: str, extra: dict[str, Any] | None = None) -> None:
        """Process 0 writes (with every process's RNG states); the others wait, so nobody reads it half written."""
        rng = self.dist.rng_states(self.device)
        if self.dist.main:
            save_checkpoint(self.out / name, {**self._state(rng), **(extra or {})})
        self.dist.barrier()

    def validation_loss(self, out: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        return task_loss(out, targets, self.criterion)

    def _validate(self, data: CacheData, over: Outputs | None = None) -> tuple[dict[str, float], float]:
        """Metrics and mean loss over `data` (validation or holdout clips; a multi-view cache's views averaged,
        and its first view's metrics as single_view_*), from `over` where computed already; each process
        predicts its share, all get the whole."""
        if over is None:
            over = outputs_over(self.model, data, self.cfg.data.batch_size, self.device, self.precision,
                                self.validation_loss)  # fmt: skip
        parts = self.dist.gather((over.scores, over.targets, over.loss * len(data), len(data), over.first_view))
        targets = {k: torch.cat([p[1][k] for p in parts]) for k in over.targets}
        metrics = metrics_for({k: torch.cat([p[0][k] for p in parts]) for k in over.scores}, targets)
        if over.first_view is not None:
            first = metrics_for({k: torch.cat([p[4][k] for p in parts]) for k in over.first_view}, targets)
            metrics.update({f"single_view_{k}": v for k, v in first.items()})
        return metrics, sum(p[2] for p in parts) / sum(p[3] for p in parts)
