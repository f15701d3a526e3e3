"""The next item computed in a background thread while the current one is used: how streamed shard windows
are read and decompressed while the previous window trains."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any


def read_ahead(read: Any, items: list[Any]) -> Iterator[Any]:
    """`read(item)` for each item in order, the next one computed by a background thread meanwhile. Errors
    arrive where their item would have; a consumer that stops early stops the thread."""
    results: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def work() -> None:
        for item in items:
            try:
                result: Any = ("ok", read(item))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                result = ("error", exc)
            while not stop.is_set():
                try:
                    results.put(result, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set() or result[0] == "error":
                return

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        for _ in items:
            kind, value = results.get()
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
