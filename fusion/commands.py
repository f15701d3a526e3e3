"""What the training commands do beyond parsing: progress bars, tables, and the pre-emption exit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fusion.train import Trainer
from fusion.train_config import TrainConfig
from pipeline.errors import UserError


def run_training(
    cache: Path, val_cache: Path, model: str, out: Path, cfg: TrainConfig, resume: bool, progress: bool = True
) -> dict[str, Any]:
    """Train (or resume) one run and return its summary; raises Preempted after writing a checkpoint on SIGTERM."""
    if not resume and (Path(out) / "last.pt").exists():
        raise UserError(f"{out} already holds a run (last.pt): pass --resume to continue it, or choose a new --out")
    trainer = Trainer(cache, val_cache, model, out, cfg)
    if resume and (Path(out) / "last.pt").exists():
        trainer.resume()
    console = Console(stderr=True, quiet=not trainer.dist.main)  # one process of a distributed run speaks
    console.print(
        f"{model}: {trainer.parameters:,} trainable parameters, {len(trainer.train_data)} train / "
        f"{len(trainer.val_data)} validation clips, {trainer.device} {trainer.precision}"
    )
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, disable=not (progress and trainer.dist.main), transient=True) as bar:
        task = bar.add_task("epoch", total=trainer.steps_per_epoch, loss="")

        def on_progress(epoch: int, batches: int, loss_sum: float) -> None:
            seen = min(batches * cfg.data.batch_size, len(trainer.train_data))
            bar.update(
                task, description=f"epoch {epoch + 1}/{cfg.epochs}", completed=batches, loss=f"{loss_sum / seen:.3f}"
            )

        summary = trainer.fit(on_progress)
    best = summary["best"]
    console.print(f"best {best['metric']} {best['value']:.4f} at epoch {best['epoch']}; run in {out}")
    return summary
