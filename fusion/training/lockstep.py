"""Runs stepped together: each batch is read once and every run of the group takes its step on it.

A sweep's members that read their caches alike (batch size, data mode, selection split, data order) train in
one group, so a streamed cache is read once per epoch for all of them rather than once per member. Each run
keeps its own model, optimizer, schedule and random state (dropout and augmentation draw from it alone: the
global generators are swapped in around each run's work), and ends as the same run folder it would write
alone. Runs of a group that share an architecture and its shapes take their steps as one stacked model
(fusion/training/stack.py), the others each their own. One run alone is a group of one: `fuse-train` takes this
path too.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from fusion.training.distributed import local_rng_state, own_random_state
from fusion.training.stack import stacks_of
from fusion.training.trainer import NonFiniteLoss, Preempted, Trainer

log = logging.getLogger(__name__)


def keep_random_state(trainer: Trainer) -> None:
    """Take the global random state as `trainer`'s own: call right after building (and resuming) it, before the
    next run sharing the process is built."""
    trainer.rng = local_rng_state(trainer.device)


def read_alike(trainers: list[Trainer]) -> list[list[Trainer]]:
    """Split runs into groups that can step together: the same training data object and device, batch size,
    views drawn, data order seed and position in it (a group's runs all stand at the same step)."""
    groups: dict[tuple[Any, ...], list[Trainer]] = {}
    for t in trainers:
        key = (id(t.train_data), str(t.device), t.dist.world, t.cfg.data.batch_size, t.cfg.data.views, t.cfg.epochs,
               t.until, t.position["epoch"], t.position["batches_done"],
               bytes(t.position["order_state"].numpy()))  # fmt: skip
        groups.setdefault(key, []).append(t)
    return list(groups.values())


@contextlib.contextmanager
def _signals(trainers: list[Trainer]) -> Iterator[None]:
    """SIGTERM or SIGINT asks every run of the group to checkpoint at the next step and stop; a second Ctrl-C
    interrupts at once."""

    def handler(signum: int, frame: Any) -> None:
        for t in trainers:
            t.stop_signal = signum
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, handler) for sig in ((signal.SIGTERM, signal.SIGINT) if main_thread else ())}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _take_step(t: Trainer, step: int, batch: dict[str, Any], inputs: dict[str, Any], taken: dict[int, Any]) -> int:
    """Record the step a run's stack took for it, or take it alone; returns the signal asking to stop."""
    if id(t) in taken:
        loss, seconds = taken[id(t)]
        return t.record(step, loss, batch, seconds)
    return t.train_on(step, batch, inputs)


def _end_epoch(t: Trainer, shared_seconds: float, validated: dict[int, Any]) -> None:
    """End a run's epoch, on the outputs its stack validated (and its share of that time) where it did."""
    outputs, seconds = validated.get(id(t), (None, 0.0))
    t.end_epoch(shared_seconds + seconds, outputs)


def train_together(
    trainers: list[Trainer], isolate: bool = False, stack: bool = True
) -> list[dict[str, Any] | NonFiniteLoss | None]:
    """Train every run (begun: `Trainer.begin`) to its epochs (or its request's `until`), stepping all on each
    batch (with `stack`, runs of one architecture as one stacked model: fusion/training/stack.py); returns for
    each run its summary, None where it stopped at `until`, or (`isolate`) the NonFiniteLoss that stopped it
    alone while the others went on; without `isolate` it is raised. Raises Preempted, every run's last.pt
    written, when a signal asks to stop."""
    outcome: dict[int, dict[str, Any] | NonFiniteLoss] = {}
    alive = list(trainers)
    for t in trainers[1:]:
        t.order = trainers[0].order  # one data order, drawn once; every run records its state
    stacks = stacks_of(alive) if stack else []

    def each(work: Callable[..., Any], *args: Any) -> list[Any]:
        """work(run, *args) for every run still training, each on its own random state."""
        results = []
        for t in list(alive):
            try:
                with own_random_state(t):
                    results.append(work(t, *args))
            except NonFiniteLoss as exc:
                if not isolate:
                    raise
                log.error("%s", exc)
                outcome[id(t)] = exc
                alive.remove(t)
        return results

    def synced() -> None:
        """Every stacked run's state in its own model and optimizer (to validate or write checkpoints)."""
        for s in stacks:
            s.sync()

    try:
        with _signals(trainers):
            while alive and not alive[0].paused:
                reading = 0.0
                read_started = time.perf_counter()
                for step, batch in alive[0].epoch_batches():
                    inputs = alive[0].train_data.model_inputs(batch, alive[0].device)
                    reading += time.perf_counter() - read_started
                    taken = {key: value for s in stacks for key, value in s.step(batch, inputs).items()}
                    running = len(alive)
                    stop = max(each(_take_step, step, batch, inputs, taken), default=0)
                    if len(alive) < running:  # a run diverged: the others stack again without it
                        synced()
                        stacks = stacks_of(alive) if stack else []
                    if stop:
                        synced()
                        preempted = each(Trainer.stop, stop)  # every run's last.pt, with its own random state
                        raise preempted[0] if len(preempted) == 1 else Preempted(trainers[0].out.parent, stop)
                    read_started = time.perf_counter()
                    if not alive:
                        break
                synced()
                validated = {key: value for s in stacks for key, value in s.validate().items()}
                each(_end_epoch, reading / max(1, len(alive)), validated)
    finally:
        for t in trainers:
            summary = t.end()
            if id(t) not in outcome and summary:
                outcome[id(t)] = summary
    return [outcome.get(id(t)) for t in trainers]
