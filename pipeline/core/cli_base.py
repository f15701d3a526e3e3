"""What every command shares: one-line errors with exit status 2, Ctrl-C as exit 130, logging on stderr, the
exit-status epilog, shape parsing."""

from __future__ import annotations

import functools
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from pipeline.core.defaults import (
    DEVICE,
    DEVICE_HELP,
    MOTION_SHAPE,
    PRECISION,
    PRECISION_HELP,
    PRECISIONS,
    SEMANTIC_SHAPE,
    shape_text,
)
from pipeline.core.errors import NO_SPACE, FolderLost, Interrupted, UserError
from pipeline.core.paths import disk_full_message

EPILOG = "Exit status: 0 success, 1 problems found or a run failed, 2 bad input, 130 interrupted (Ctrl-C)."


def _terminated(signum: int, frame: Any) -> None:
    # The same SIGTERM ends the DataLoader workers of the process group; their deaths are expected now, not
    # failures for torch's SIGCHLD handler to raise about while the command stops.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    raise Interrupted("terminated", signum)


class OneLineErrors(click.Group):
    """Usage errors as one line (`error: ...`), like every other bad input; Ctrl-C exits 130."""

    def main(
        self,
        args: Any = None,
        prog_name: Any = None,
        complete_var: Any = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        # Ctrl-C raises KeyboardInterrupt even where the process was started with SIGINT ignored (a background
        # job of a script, as under some batch systems); SIGTERM (pre-emption, scancel) raises Interrupted.
        # Commands with a checkpoint to write (training) install their own handlers while they run.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _terminated)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Interrupted as exc:
            what = "interrupted" if exc.signum == signal.SIGINT else "terminated"
            click.echo(f"{what} (signal {exc.signum}); finished work is kept: run the same command to go on", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record arrives (test runners and wrappers swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(verbose: int) -> None:
    """Every log line to stderr, never stdout (results go there). On a terminal, rich formatting; elsewhere
    (SLURM, nohup, pipes) plain timestamped lines. Progress lines show at the default verbosity."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "gasm_cast", False)]:
        root.removeHandler(handler)
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.gasm_cast = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING - 10 * min(verbose, 2))
    logging.getLogger("gasm.progress").setLevel(logging.INFO)


def user_errors(command: Callable) -> Callable:
    """Bad input becomes one line on stderr and exit status 2, a full disk one line and exit status 1, never a
    traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except FolderLost as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                raise
            # What was written stays resumable (shards, checkpoints and outputs are renamed into place whole).
            click.echo(f"error: {disk_full_message(exc)}", err=True)
            sys.exit(1)

    return wrapper


def device_option(command: Callable) -> Callable:
    """--device for commands that are not a config field (benches, evaluation, the GPU check)."""
    return click.option("--device", default=DEVICE, show_default=True, help=DEVICE_HELP)(command)


def precision_option(help_text: str = PRECISION_HELP) -> Callable[[Callable], Callable]:
    return click.option(
        "--precision", type=click.Choice(PRECISIONS), default=PRECISION, show_default=True, help=help_text
    )


def shape_options(before: str = "", after: str = "") -> Callable[[Callable], Callable]:
    """--semantic-shape and --motion-shape (TOKENSxWIDTH), defaulting to the default backbones' features;
    `before`/`after` frame each help text."""

    def decorate(command: Callable) -> Callable:
        for kind, shape in (("motion", MOTION_SHAPE), ("semantic", SEMANTIC_SHAPE)):
            what = f"{kind} tokens x width" if before else f"{kind.capitalize()} tokens x width"
            option = click.option(
                f"--{kind}-shape", default=shape_text(shape), show_default=True, help=f"{before}{what}{after}."
            )
            command = option(command)
        return command

    return decorate


def parse_shape(text: str, frames: bool = False) -> tuple[int, ...]:
    """'196x768' -> (196, 768), for options naming a cache's tokens x width; with `frames`, also per-frame
    tokens '8x49x768' -> (8, 49, 768): frames x tokens per frame x width."""
    expected = "TOKENSxDIM such as 196x768" + (", or FRAMESxTOKENSxDIM such as 8x49x768" if frames else "")
    try:
        parts = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        parts = ()
    if len(parts) not in ((2, 3) if frames else (2,)) or min(parts) < 1:
        raise click.BadParameter(f"expected {expected}, got {text!r}")
    return parts
