"""`cli bench sweep --prune`: one grid of configurations (optim.lr x optim.weight_decay, one seed) trained to the
end, and again with successive halving (`--prune halving`): the member-epochs each trains, its wall time and
the configuration each selects (the best mean holdout headline among its finished configurations)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from fusion.experiments.presets import PRUNE_BENCH_GRID
from fusion.experiments.pruning import pruned_at
from fusion.experiments.runner import SweepRun, best_configuration, execute, record, selecting
from fusion.experiments.spec import PruneConfig, member_dir, parse_spec
from pipeline.core import strict_json
from pipeline.core.progress import table_console


def _outcome(spec: Any, run: SweepRun, seconds: float, epochs: int) -> dict[str, Any]:
    members = spec.members()
    metric = strict_json.read(member_dir(run.out, members[0]) / "metrics.json", "run summary")["best"]["metric"]
    best, record = best_configuration(run.out, members, metric)
    spent = sum(pruned_at(run.out, m) or epochs for m in members)
    return {"wall": seconds, "member_epochs": spent, "best": best.name, "score": record["scores"][best.name],
            "metric": metric}  # fmt: skip


def bench_prune(cache: Path, val_cache: Path, epochs: int, model: str, batch_size: int, data_mode: str, device: str,
                stack: bool) -> Table:  # fmt: skip
    from fusion.benches.sweep import _warm_up

    overrides = {"data": {"batch_size": batch_size, "mode": data_mode}, "device": device}
    spec = selecting(
        parse_spec({"base": {"model": model, "overrides": overrides}, "axes": PRUNE_BENCH_GRID}, "bench sweep"), None
    )
    rungs = PruneConfig().rungs_for(epochs)
    _warm_up()
    outcome = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, prune in (("every member to the end", None), (f"--prune halving (rungs {list(rungs)})",
                                                                 PruneConfig())):  # fmt: skip
            spec.prune = prune
            run = SweepRun(cache, val_cache, Path(tmp) / str(len(outcome)), epochs, stack=stack)
            started = time.perf_counter()
            record(run, spec, "bench sweep --prune")
            execute(spec, run, "inline", False)
            outcome[name] = _outcome(spec, run, time.perf_counter() - started, epochs)
    full = outcome["every member to the end"]
    table = Table(title=f"bench sweep --prune: {len(spec.configurations)} configurations of {model} (optim.lr x "
                        f"optim.weight_decay, seed 0), {epochs} epochs, batch {batch_size}, "
                        f"{'stacked' if stack else 'lockstep'}, device {device}")  # fmt: skip
    table.add_column("sweep")
    for column in ("member-epochs", "wall s", "member-epochs / full", "wall / full"):
        table.add_column(column, justify="right")
    table.add_column("selected configuration", no_wrap=True)  # copied into specs: never cut
    for column in (f"its holdout {full['metric']}", "vs the full sweep's best"):
        table.add_column(column, justify="right")
    for name, row in outcome.items():
        table.add_row(name, str(row["member_epochs"]), f"{row['wall']:.1f}",
                      f"{row['member_epochs'] / full['member_epochs']:.2f}", f"{row['wall'] / full['wall']:.2f}",
                      row["best"], f"{row['score']:.4f}", f"{row['score'] - full['score']:+.4f}")  # fmt: skip
    table_console(200).print(table)
    return table
