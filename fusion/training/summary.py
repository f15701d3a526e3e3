"""A run's summary (metrics.json) from its checkpointed state: what a finished run writes, and what a sweep writes
for a member it stopped at a pruning rung (from that member's last.pt)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_summary(
    state: dict[str, Any], out: Path, processes: int, member: dict[str, Any] | None = None
) -> dict[str, Any]:
    """metrics.json of the run whose state (as `Trainer._state` gives it, or last.pt holds it) is `state`."""
    select_on = state["config"]["data"]["select_on"]
    best, history = state["best"], state["history"]
    return {
        "model": state["model_name"],
        "trainable_parameters": state["trainable_parameters"],
        "selected_on": select_on,
        "best": best,
        **_optimistic(select_on, best, history),
        "last": history[-1],
        "out": str(out),
        "processes": processes,
        "epoch_seconds": state["epoch_seconds"],
        **({"member": member} if member else {}),
        **({"feature_override": state["feature_override"]} if state["feature_override"] else {}),
        "data": state["data"],
    }


def _optimistic(select_on: str, best: dict[str, Any] | None, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the holdout chose, the epoch the validation clips would have chosen, when it is another one:
    shown beside, never reported as the result (choosing on the clips reported is optimistic)."""
    if select_on != "holdout" or best is None:
        return {}
    key = f"val_{best['metric']}"
    row = max(history, key=lambda r: r[key])  # the earliest of equals
    if row["epoch"] == best["epoch"]:
        return {}
    return {"best_on_validation_optimistic": {"epoch": row["epoch"], "metric": best["metric"], "value": row[key]}}
