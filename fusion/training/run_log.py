"""What a training run leaves behind besides checkpoints: per-epoch CSV, TensorBoard scalars, PNG curves."""

from __future__ import annotations

import contextlib
import csv
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.core import atomic
from pipeline.core.folder_lock import check_held


class RunLog:
    """Written by one process only: the others of a distributed run get `enabled=False` and log nothing."""

    def __init__(self, out: Path, enabled: bool = True, position: dict[str, Any] | None = None):
        """`position` ({"epoch", "batches_done"}) is where a resumed run continues: rows logged after it (by a
        run killed later on) are dropped, so the logs never hold a step or an epoch twice."""
        self.out, self.enabled = out, enabled
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            epoch, steps = (position or {}).get("epoch", 0), (position or {}).get("batches_done", 0)
            self._truncate_steps(epoch, steps)
            self.tensorboard = SummaryWriter(str(out / "tensorboard"), purge_step=epoch + 1 if position else None)
            _quiet_writer_thread_errors()

    def _truncate_steps(self, epoch: int, steps: int) -> None:
        """Keep the steps.csv rows of finished epochs and of the first `steps` steps of epoch `epoch + 1`."""
        path = self.out / "steps.csv"
        if not path.exists():
            return
        header, *rows = path.read_text().splitlines(keepends=True)
        kept = [row for row in rows if _before(row, epoch, steps)]
        if len(kept) != len(rows):
            atomic.write_text(path, header + "".join(kept))

    def step(self, epoch: int, step: int, loss: float) -> None:
        """Every optimizer step's loss (the global batch's mean), appended to steps.csv."""
        if not self.enabled:
            return
        path = self.out / "steps.csv"
        check_held(path)
        with path.open("a") as handle:
            if handle.tell() == 0:
                handle.write("epoch,step,loss\n")
            handle.write(f"{epoch},{step},{loss!r}\n")

    def epoch(self, history: list[dict[str, Any]]) -> None:
        """Rewrite the CSV from the whole history (a resumed run continues the same file) and log the last row."""
        if not self.enabled:
            return
        columns = list(dict.fromkeys(key for row in history for key in row))
        with atomic.atomic_open(self.out / "metrics.csv", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)
        row = history[-1]
        with self._tensorboard_writes():
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(
                        key.replace("val_", "val/").replace("train_", "train/"), value, row["epoch"]
                    )
            self.tensorboard.flush()

    def plot(self, history: list[dict[str, Any]]) -> Path | None:
        if not self.enabled:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        epochs = [row["epoch"] for row in history]
        metrics = [k for k in history[-1] if k.startswith("val_") and k.endswith("top1")]
        fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 4))
        for key in ("train_loss", "val_loss"):
            loss_ax.plot(epochs, [row[key] for row in history], label=key)
        loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
        # fixed legend corners: finding the emptiest one ("best") measures every point against every corner
        loss_ax.legend(loc="upper right")
        for key in metrics:
            metric_ax.plot(epochs, [row[key] for row in history], label=key)
        metric_ax.set(xlabel="epoch", ylabel="accuracy", title="validation top-1", ylim=(0, 1))
        metric_ax.legend(loc="lower right")
        for ax in (loss_ax, metric_ax):  # whole epochs; five ticks a side (each tick's artists are built per draw)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
        # fixed margins: a layout pass measuring every label takes longer than the rest of the figure
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.92, wspace=0.22)
        path = self.out / "curves.png"
        with atomic.atomic_path(path) as staging:
            fig.savefig(staging, dpi=100)
        plt.close(fig)
        return path

    def close(self) -> None:
        if self.enabled:
            with self._tensorboard_writes():
                self.tensorboard.close()

    @contextlib.contextmanager
    def _tensorboard_writes(self) -> Iterator[None]:
        """TensorBoard's writer thread appends to its event file by path, so a run folder moved under a running
        trainer fails there first (an OSError the writer hands back at the next flush): that is the folder lost,
        said as such in one line (FolderLost), not the writer's error."""
        try:
            yield
        except OSError:
            check_held(self.out / "tensorboard")
            raise


def _quiet_writer_thread_errors() -> None:
    """The writer thread's OSError reaches the trainer again at the next flush or close (above); printed by the
    thread too it would be a second, raw traceback. Other threads' errors print as before."""
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    previous = threading.excepthook
    if getattr(previous, "quiet_writer_thread", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (isinstance(args.thread, _AsyncWriterThread) and issubclass(args.exc_type, OSError)):
            previous(args)

    hook.quiet_writer_thread = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _before(row: str, epoch: int, steps: int) -> bool:
    """Whether a steps.csv row (1-based epoch, step) comes before the position (epochs done, steps done)."""
    row_epoch, row_step = (int(x) for x in row.split(",")[:2])
    return row_epoch <= epoch or (row_epoch == epoch + 1 and row_step <= steps)
