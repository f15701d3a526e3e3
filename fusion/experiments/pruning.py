"""Successive halving over a sweep's members (`cli sweep --prune halving`, the spec's `prune:`).

Every member trains to the first rung epoch and stops there, its last.pt written. At the rung, the configurations
of each model are ranked by their seeds' mean holdout headline (the best epoch's so far: what the member's
metrics.json would report were it to stop there), never by the validation clips the report gives. The best
`keep` fraction (at least one) train on to the next rung; the others stop for good: their metrics.json is
written from their last.pt with `pruned_at` (the rung), and sweep.json lists them. One model's configurations
are ranked against each other only: pruning chooses among a model's settings, the report compares the models.

Each decision depends only on the members' histories up to the rung (read from their last.pt), so a sweep killed
at any moment and run again makes the same decisions; with any executor, as a stopped member is finished.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from fusion.experiments.spec import Configuration, Member, member_dir
from fusion.models.checkpoint import load_checkpoint
from fusion.training.summary import run_summary
from pipeline.core import atomic, strict_json
from pipeline.core.errors import UserError
from pipeline.core.progress import log as progress

log = logging.getLogger(__name__)


def kept(scores: dict[Configuration, list[float]], keep: float) -> set[Configuration]:
    """The configurations that go on from a rung: of each model's, the ceil(keep x n) (at least one) with the
    highest mean of their seeds' scores; a tie goes to the configuration listed first (`scores`' order)."""
    by_model: dict[str, list[Configuration]] = {}
    for configuration in scores:
        by_model.setdefault(configuration.model, []).append(configuration)
    going_on = set()
    for configurations in by_model.values():
        means = {c: sum(scores[c]) / len(scores[c]) for c in configurations}
        ranked = sorted(configurations, key=lambda c: -means[c])  # stable: equals keep the listed order
        going_on.update(ranked[: max(1, math.ceil(round(len(configurations) * keep, 9)))])
    return going_on


def pruned_at(out: Path, member: Member) -> int | None:
    """The rung that stopped the member, None if none did (yet)."""
    path = member_dir(out, member) / "metrics.json"
    if not path.is_file():
        return None
    try:
        return strict_json.read(path, "run summary").get("pruned_at")
    except UserError:  # not a whole metrics.json: not written by a rung (which writes atomically)
        return None


def trained_epochs(out: Path, member: Member) -> int:
    """The epochs the member's last.pt has trained (0: none)."""
    path = member_dir(out, member) / "last.pt"
    return load_checkpoint(path)["position"]["epoch"] if path.is_file() else 0


def _score(state: dict[str, Any], rung: int, where: Path) -> float:
    """The holdout headline of the member's best epoch up to the rung."""
    key = f"holdout_{state['best']['metric']}"
    rows = state["history"][:rung]
    if key not in rows[0]:
        raise UserError(f"{where}: has no {key} to rank it at the rung: pruning ranks members on the holdout")
    return max(row[key] for row in rows)


def rung(out: Path, members: list[Member], epoch: int, keep: float) -> tuple[list[Member], list[Member]]:
    """Rank the members still in the sweep at the rung `epoch` and stop the ones that go no further (their
    metrics.json written); returns (the members it stopped, the members that never reached it: their loss
    diverged)."""
    states: dict[Member, dict[str, Any]] = {}
    scores: dict[Configuration, list[float]] = {}
    lost = []
    for member in members:
        stopped = pruned_at(out, member)
        if stopped is not None and stopped < epoch:  # stopped at an earlier rung
            continue
        path = member_dir(out, member) / "last.pt"
        state = load_checkpoint(path) if path.is_file() else None
        if state is None or state["position"]["epoch"] < epoch:
            lost.append(member)
            continue
        states[member] = state
        scores.setdefault(member.configuration, []).append(_score(state, epoch, path))
    going_on = kept(scores, keep)
    stopped_now = [m for m in states if m.configuration not in going_on]
    for member in stopped_now:
        folder = member_dir(out, member)
        if pruned_at(out, member) == epoch:  # written before an interruption
            continue
        state = states[member]
        if state["position"]["epoch"] != epoch:
            raise UserError(f"{folder} trained past epoch {epoch}, where this sweep stops it: the folder holds "
                            "another sweep's member; use a new --out")  # fmt: skip
        summary = run_summary(state, folder, len(state["rng"]["ranks"]), member.identity())
        atomic.write_text(folder / "metrics.json", strict_json.dumps({**summary, "pruned_at": epoch}, indent=2))
    _say(epoch, scores, going_on)
    return stopped_now, lost


def _say(epoch: int, scores: dict[Configuration, list[float]], going_on: set[Configuration]) -> None:
    for model in dict.fromkeys(c.model for c in scores):
        ours = [c for c in scores if c.model == model]
        on = [c for c in ours if c in going_on]
        stopped = [c for c in ours if c not in going_on]
        if not stopped:
            continue
        mean = {c: sum(scores[c]) / len(scores[c]) for c in ours}
        progress.info("rung at epoch %d: %d of %d %s configurations go on (holdout %.4f-%.4f), %d stop (%.4f-%.4f)",
                      epoch, len(on), len(ours), model, min(mean[c] for c in on), max(mean[c] for c in on),
                      len(stopped), min(mean[c] for c in stopped), max(mean[c] for c in stopped))  # fmt: skip
