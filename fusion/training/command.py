"""What the training commands do beyond parsing: progress on stderr (a bar on a terminal, log lines
elsewhere) and one line per epoch in either case."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from fusion.data.feature_identity import check_same_features, refuse_same_cache
from fusion.training.request import TrainingRequest
from fusion.training.trainer import Trainer
from pipeline.core.errors import UserError
from pipeline.core.folder_lock import folder_lock
from pipeline.core.paths import output_folder
from pipeline.core.progress import Reporter, duration


def _main_process() -> bool:
    """Process 0 of a torchrun group (or the only process) holds the run folder for all of them."""
    return os.environ.get("RANK", "0") == "0"


def run_training(
    request: TrainingRequest,
    live: bool | None = None,
    member: dict[str, Any] | None = None,
    loaded: Any = None,
) -> dict[str, Any]:
    """Train (or resume) one run and return its summary; raises Preempted after writing a checkpoint on
    SIGTERM/SIGINT and NonFiniteLoss when the loss diverges. `live`: a progress bar (None: on a terminal);
    `member`: a sweep member's identity, written into metrics.json; `loaded`: (train, validation, selecting)
    CacheData already read. The two caches must hold the same features and different clips unless the request
    allows otherwise."""
    cache, val_cache, out, model, cfg = request.cache, request.val_cache, request.out, request.model, request.cfg
    output_folder(out, "--out")
    with folder_lock(out, "run folder") if _main_process() else contextlib.nullcontext():
        if not request.resume and (out / "last.pt").exists():
            raise UserError(f"{out} already holds a run (last.pt): pass --resume to continue it, or choose a new --out")
        trainer = Trainer(request, loaded)
        train, val = trainer.train_data.spec.provenance, trainer.val_data.spec.provenance
        if not request.allow_same_clips:
            refuse_same_cache(cache, val_cache, train, val)
        trainer.feature_override = check_same_features(
            f"--cache {cache}", train, f"--val-cache {val_cache}", val, request.allow_other_features
        )
        trainer.member = member
        if request.resume:
            trainer.resume()
        reporter = Reporter("epoch", "steps", live=live, enabled=trainer.dist.main)  # one process of a run speaks
        held = trainer.train_data.held_out
        reporter.line(
            f"{model}: {trainer.parameters:,} trainable parameters; train {trainer.train_data.counts.describe()}"
            f"{f', {held} of them held out to select on' if held else ''}; validation "
            f"{trainer.val_data.counts.describe()}; {trainer.device} {trainer.precision}"
        )
        started = {"time": time.monotonic(), "epoch": trainer.position["epoch"]}
        # When this process's epoch began, and at which step (a resumed epoch starts part-way): the steps/s of
        # progress lines count from there.
        epoch_began = {"at": (time.monotonic(), trainer.position["batches_done"])}

        def on_step(epoch: int, steps: int, loss: float) -> None:
            if reporter.label != f"epoch {epoch + 1}/{cfg.epochs}":
                reporter.reset(f"epoch {epoch + 1}/{cfg.epochs}", since=epoch_began["at"])
            reporter.update(steps, trainer.steps_per_epoch, loss=f"{loss:.4f}")

        def on_epoch(row: dict[str, Any]) -> None:
            reporter.stop()
            epoch_began["at"] = (time.monotonic(), 0)
            done = row["epoch"] - started["epoch"]
            per_epoch = (time.monotonic() - started["time"]) / done
            metrics = " ".join(
                f"{k} {v:.4f}" for k, v in row.items() if k.startswith(("val_", "holdout_")) and isinstance(v, float)
            )
            best = trainer.best or {}
            reporter.line(
                f"epoch {row['epoch']}/{cfg.epochs}: train_loss {row['train_loss']:.4f} {metrics} "
                f"(best {best.get('selected_on')} {best.get('metric')} {best.get('value', float('nan')):.4f} at epoch "
                f"{best.get('epoch')}); "
                f"{per_epoch:.1f} s/epoch, ETA {duration(per_epoch * (cfg.epochs - row['epoch']))}"
            )

        try:
            summary = trainer.fit(on_step, on_epoch)
        finally:
            reporter.stop()
        best = summary["best"]
        name = best["metric"]
        reporter.line(
            f"best {best['selected_on']} {name} {best['value']:.4f} at epoch {best['epoch']} (validation {name} "
            f"{best['val_' + name]:.4f}); run in {out}"
        )
        return summary
