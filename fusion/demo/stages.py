"""The demo's record of finished stages (DIR/stages.json): a re-run skips them, and the wall time of each goes
into results.json. A folder made with other settings is refused rather than mixed in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from pipeline.core import atomic, strict_json
from pipeline.core.errors import UserError


class Stages:
    def __init__(self, out: Path, settings: dict[str, Any], console: Console):
        self.path, self.console = out / "stages.json", console
        self.state: dict[str, Any] = {"settings": settings, "seconds": {}}
        if self.path.is_file():
            before = strict_json.read(self.path, "demo stage record")
            if before.get("settings") != settings:
                raise UserError(f"{out} holds a demo made with other settings ({self.path}); use another --out")
            self.state = before
        out.mkdir(parents=True, exist_ok=True)

    @property
    def seconds(self) -> dict[str, float]:
        return dict(self.state["seconds"])

    def done(self, name: str) -> bool:
        return name in self.state["seconds"]

    @contextmanager
    def stage(self, name: str, what: str) -> Iterator[bool]:
        """Announce the stage; yields whether it still has to run, and records its wall time when it finishes."""
        self.console.print(Text(what, style="bold"))  # wrapped, never cut: the paths in it are for the user
        if self.done(name):
            self.console.print(f"done before ({self.state['seconds'][name]:.0f} s): kept")
            yield False
            return
        started = time.monotonic()
        yield True
        self.state["seconds"][name] = round(time.monotonic() - started, 1)
        atomic.write_text(self.path, strict_json.dumps(self.state, indent=1))
