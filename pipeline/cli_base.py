"""What every command shares: one-line errors with exit status 2, the exit-status epilog, shape parsing."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from pipeline.errors import UserError

EPILOG = "Exit status: 0 success, 1 problems found (verify), 2 bad input."


def user_errors(command: Callable) -> Callable:
    """Bad input becomes one line on stderr and exit status 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def parse_shape(text: str) -> tuple[int, int]:
    """'196x768' -> (196, 768), for options naming a cache's tokens x width."""
    try:
        tokens, dim = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected TOKENSxDIM such as 196x768, got {text!r}") from None
    return tokens, dim
