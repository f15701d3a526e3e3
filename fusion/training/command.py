"""What the training commands do beyond parsing: the checks and locks around a run, progress on stderr (a bar
on a terminal, log lines elsewhere) and one line per epoch in either case; for one run or a lockstep group."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from fusion.data.feature_identity import check_same_features, refuse_same_cache
from fusion.training.lockstep import keep_random_state, read_alike, train_together
from fusion.training.request import TrainingRequest
from fusion.training.trainer import NonFiniteLoss, Trainer
from pipeline.core.errors import UserError
from pipeline.core.folder_lock import folder_lock
from pipeline.core.paths import output_folder
from pipeline.core.progress import Reporter, duration


def _main_process() -> bool:
    """Process 0 of a torchrun group (or the only process) holds the run folder for all of them."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def opened_run(
    request: TrainingRequest,
    live: bool | None = None,
    member: dict[str, Any] | None = None,
    loaded: Any = None,
) -> Iterator[tuple[Trainer, Reporter]]:
    """A run ready to train, its folder locked while it does: built (or resumed), checked, begun with its
    progress reporting."""
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
        name = f"{member['name']} ({model})" if member else model
        prefix = f"{member['name']} " if member else ""
        reporter.line(
            f"{name}: {trainer.parameters:,} trainable parameters; train {trainer.train_data.counts.describe()}"
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
                f"{prefix}epoch {row['epoch']}/{cfg.epochs}: train_loss "
                f"{row['train_loss']:.4f} {metrics} (best {best.get('selected_on')} {best.get('metric')} "
                f"{best.get('value', float('nan')):.4f} at epoch {best.get('epoch')}); "
                f"{per_epoch:.1f} s/epoch, ETA {duration(per_epoch * (cfg.epochs - row['epoch']))}"
            )

        trainer.begin(on_step, on_epoch)
        try:
            yield trainer, reporter
        finally:
            reporter.stop()


def _said(summary: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    best = summary["best"]
    name = best["metric"]
    chosen = (
        "chosen on the validation clips it is reported on: optimistic (--select-on holdout chooses on held-out "
        "training clips)"
        if best["selected_on"] == "validation"
        else f"chosen on the holdout ({name} {best['value']:.4f} there)"
    )
    reporter.line(
        f"best epoch {best['epoch']}: validation {name} {best['val_' + name]:.4f}, {chosen}; run in {summary['out']}"
    )
    return summary


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
    allows otherwise. Returns {} where the request's `until` stopped the run before its last epoch."""
    with opened_run(request, live, member, loaded) as (trainer, reporter):
        summary = train_together([trainer])[0]
        return _said(summary, reporter) if summary else {}


def run_members(
    requests: list[tuple[TrainingRequest, dict[str, Any]]],
    loaded: Any,
    live: bool | None = None,
    lockstep: bool = True,
    stack: bool = True,
) -> list[dict[str, Any]]:
    """Train (or resume) sweep members (request, identity) over data read once: with `lockstep`, those that read
    it alike step together on each batch (with `stack`, those of one architecture as one stacked model), else one
    after another. Returns the finished members' summaries (none for those stopped at their `until`); a
    member whose loss diverged stops alone, and once the others have finished NonFiniteLoss names each such one."""
    summaries, diverged = [], []
    with contextlib.ExitStack() as exits:
        runs = []
        for request, member in requests:
            runs.append(exits.enter_context(opened_run(request, live, member, loaded)))
            keep_random_state(runs[-1][0])
        reporters = {id(trainer): reporter for trainer, reporter in runs}
        trainers = [trainer for trainer, _ in runs]
        groups = read_alike(trainers) if lockstep else [[trainer] for trainer in trainers]
        if lockstep and len(groups) > 1:
            why = "they read batches differently, or stand at different steps"
            runs[0][1].line(f"{len(runs)} members in {len(groups)} lockstep groups ({why})")
        for group in groups:
            for trainer in group[1:]:
                trainer.on_step = None  # a group's steps are its first run's: one progress bar, not one per run
            for trainer, outcome in zip(group, train_together(group, isolate=True, stack=stack)):
                if isinstance(outcome, NonFiniteLoss):
                    diverged.append(str(outcome))
                elif outcome is not None:  # None: stopped at its request's `until`
                    summaries.append(_said(outcome, reporters[id(trainer)]))
    if diverged:
        raise NonFiniteLoss(f"{len(diverged)} member(s) stopped, the others finished: {' | '.join(diverged)}")
    return summaries
