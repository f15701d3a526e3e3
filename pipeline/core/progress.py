"""Progress of long work on stderr: a live bar on a terminal; elsewhere (SLURM, nohup, a pipe) a log line at
most every `every` seconds with done/total, rate and ETA, so a batch job's log shows where it is."""

from __future__ import annotations

import logging
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# Progress lines are logged here at INFO; the command line shows this logger at its default verbosity.
log = logging.getLogger("gasm.progress")


def size_text(nbytes: float) -> str:
    """Bytes as people read them: '602 KB', '2.4 MB', '102 GB' (powers of 1000, as disks are sold)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if nbytes >= scale:
            value = nbytes / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{nbytes:.0f} B"


def table_console(wide: int) -> Console:
    """Where result tables go (stdout): on a terminal its own width, so an 80-column one folds long cells instead
    of wrapping every line; into a file or a pipe at least `wide` columns, so each row stays one line to grep."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, wide))


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Reporter:
    """`update(done, total)` as work advances; `line(text)` for a message that must be seen in either mode.

    The rate counts from the first update, so set-up (model loading) does not dilute it."""

    def __init__(self, label: str, unit: str, live: bool | None = None, every: float = 30.0, enabled: bool = True):
        self.label, self.unit, self.every, self.enabled = label, unit, every, enabled
        self.console = Console(stderr=True)
        self.live = enabled and (sys.stderr.isatty() if live is None else live)
        self.bar: Progress | None = None
        self.task = None
        self.first: tuple[float, int] | None = None
        self.last_line = 0.0

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def update(self, done: int, total: int | None, **fields: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.first is None:
            self.first = (now, done)
            self.last_line = now
        start, start_done = self.first
        rate = (done - start_done) / (now - start) if now > start and done > start_done else 0.0
        extra = " ".join(f"{k} {v}" for k, v in fields.items())
        if self.live:
            if self.bar is None:
                self.bar = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    console=self.console,
                    transient=True,
                )
                self.bar.start()
                self.task = self.bar.add_task(self.label, total=total, info="")
            info = " ".join(x for x in (f"{rate:.2f} {self.unit}/s" if rate else "", extra) if x)
            self.bar.update(self.task, completed=done, total=total, info=info)
        elif now - self.last_line >= self.every or (total is not None and done >= total):
            self.last_line = now
            eta = f", ETA {duration((total - done) / rate)}" if rate and total else ""
            of = f"/{total}" if total is not None else ""
            log.info(
                "%s %d%s %s, %.2f %s/s%s%s",
                self.label,
                done,
                of,
                self.unit,
                rate,
                self.unit,
                eta,
                f", {extra}" if extra else "",
            )

    def line(self, text: str) -> None:
        """A line that stays: above the bar on a terminal, a log line elsewhere."""
        if not self.enabled:
            return
        if self.live:
            self.console.print(text, markup=False, highlight=False)
        else:
            log.info("%s", text)

    def reset(self, label: str | None = None, since: tuple[float, int] | None = None) -> None:
        """Start counting again (a new epoch); `since`: (monotonic time, done) the rate counts from, when the
        work began before the first update (updates that come every N steps would otherwise show no rate)."""
        self.stop()
        self.label = label or self.label
        self.first = since
        if since is not None:
            self.last_line = time.monotonic()

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
