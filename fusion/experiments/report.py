"""`cli compare` (and the end of `cli sweep`): every run of some run or sweep folders in one report.

Per configuration (a model and the keys it changes), over its seeds: trainable parameters, FLOPs per clip and
training-step memory (measured at the cache's shapes), seconds per epoch, the headline validation metrics as
mean ± std, and the difference to a baseline with its standard error. `results.csv` has one row per run,
`report.md` the table and the best configuration of each model, the PNGs accuracy against parameters and FLOPs
(error bars over seeds) and the validation curves.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion.data.feature_identity import clip_differences, differences
from fusion.models.checkpoint import load_checkpoint
from fusion.training.config import TrainConfig
from pipeline.core import atomic, strict_json
from pipeline.core.config_loading import leaf_differences, to_dict
from pipeline.core.errors import UserError

COSTS_FILE = "costs.json"  # configurations' FLOPs per clip and training-step memory, as a report measured them

# Settings that say how or where a run trained, not what: left out of a hand-made run's configuration name.
NOT_CONFIGURATION = ("seed", "epochs", "device", "precision")


@dataclass
class Run:
    folder: Path
    configuration: str
    model: str
    changes: dict[str, Any]
    seed: int
    parameters: int
    metric: str
    best: dict[str, Any]
    history: list[dict[str, Any]]
    epoch_seconds: list[float]
    model_config: dict[str, Any]
    shapes: dict[str, list[int]]
    label_sizes: dict[str, int]
    semantic_frames: int = 1  # > 1: trained on a per-frame cache, the semantic tokens that many frames' grids
    held_out: int = 0  # clips of the training cache's holdout (0: the validation clips chose)
    costs: dict[str, float] = field(default_factory=dict)
    trained_on: dict[str, Any] = field(default_factory=dict)  # the training cache's provenance
    validated_on: dict[str, Any] = field(default_factory=dict)  # the validation cache's provenance
    pruned_at: int | None = None  # the rung epoch a pruned sweep stopped it at (None: trained every epoch)


def _run(folder: Path) -> Run:
    summary = strict_json.read(folder / "metrics.json", "run summary")
    state = load_checkpoint(folder / "best.pt")
    config = state["config"]
    member = summary.get("member")
    if member:
        name, changes, seed = member["configuration"], member["changes"], member["seed"]
    else:  # a hand-made fuse-train run: named by its model and what it changes from the defaults
        default = to_dict(TrainConfig())
        changes = {}
        for line in leaf_differences(default, config):
            key, _, values = line.partition(": ")
            if key.split(".")[0] not in NOT_CONFIGURATION:
                changes[key] = values.split(" -> ")[-1]
        name = "-".join([summary["model"], *(f"{k.split('.')[-1]}{v}" for k, v in changes.items())])
        seed = config["seed"]
    return Run(
        folder,
        name,
        summary["model"],
        changes,
        seed,
        summary["trainable_parameters"],
        summary["best"]["metric"],
        summary["best"],
        _history(folder, state["history"]),
        summary.get("epoch_seconds", []),
        config["model"],
        state["spec"]["shapes"],
        state["spec"]["label_sizes"],
        state["spec"].get("semantic_frames", 1),
        summary.get("data", {}).get("train", {}).get("held_out", 0),
        trained_on=state.get("cache") or {},
        validated_on=state.get("val_cache") or {},
        pruned_at=summary.get("pruned_at"),
    )


def _history(folder: Path, saved: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every epoch's row from metrics.csv (best.pt holds the history only up to the best epoch)."""
    path = folder / "metrics.csv"
    if not path.is_file():
        return saved
    with path.open(newline="") as handle:
        return [
            {k: float(v) if k != "epoch" else int(v) for k, v in row.items() if v != ""}
            for row in csv.DictReader(handle)
        ]


def refuse_mixed(runs: list[Run]) -> None:
    """One table compares runs on the same features, validated on the same clips; anything else is refused,
    naming the first run that differs and how."""
    first = runs[0]
    for run in runs[1:]:
        for what, a, b in (("trained", first.trained_on, run.trained_on), ("validated", first.validated_on,
                                                                            run.validated_on)):  # fmt: skip
            found = differences(a, b)
            if what == "validated":
                found += clip_differences(a, b)
            if found:
                raise UserError(f"{run.folder} was {what} on other features or clips than {first.folder} "
                                f"({'; '.join(found[:3])}): one table compares runs trained and validated on the same "
                                "ones")  # fmt: skip


def collect(paths: list[Path]) -> list[Run]:
    """Runs of run folders (metrics.json) and of sweep folders (runs/*/metrics.json), in the order given."""
    runs = []
    for path in paths:
        if (path / "metrics.json").is_file():
            runs.append(_run(path))
        elif (path / "runs").is_dir():
            record = path / "sweep.json"  # the sweep's own member order, where there is one
            order = strict_json.read(record, "sweep record")["members"] if record.is_file() else []
            folders = [path / "runs" / name for name in order] + sorted((path / "runs").iterdir())
            runs += [_run(folder) for folder in dict.fromkeys(folders) if (folder / "metrics.json").is_file()]
        else:
            raise UserError(f"{path} is neither a run folder (metrics.json) nor a sweep folder (runs/)")
    if not any(run.pruned_at is None for run in runs):
        raise UserError("no finished run in the folders given")
    refuse_mixed(runs)
    selected_on(runs)
    return runs


def pruned_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per configuration a pruned sweep stopped at a rung: the rung, its seeds and the holdout headline
    they were ranked on (their best epoch's up to the rung), mean over seeds; in first-seen order."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.pruned_at is not None:
            groups.setdefault(run.configuration, []).append(run)
    return [{"configuration": name, "model": members[0].model, "changes": changes_text(members[0].changes),
             "seeds": len(members), "pruned_at": members[0].pruned_at, "metric": f"holdout_{members[0].metric}",
             "value": float(np.mean([m.best["value"] for m in members]))}
            for name, members in groups.items()]  # fmt: skip


def _cost_key(run: Run) -> str:
    """What a configuration's cost depends on: its model, model settings and the cache's shapes and classes."""
    identity = [run.model, run.model_config, run.shapes, run.label_sizes]
    if run.semantic_frames > 1:  # frame-averaged configurations keep the keys their costs.json has
        identity.append(run.semantic_frames)
    return hashlib.sha256(strict_json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def measure_costs(runs: list[Run], folders: list[Path], out: Path | None) -> None:
    """FLOPs per clip and training-step memory of each configuration, measured once at the shapes it was trained
    on (a per-frame cache's semantic tokens as [frames, patches], as the data path gives them; one view); kept
    in OUT/costs.json (a sweep's own folder) and read back from there, or from any folder given, by later
    reports. Run folders are never written to."""
    from fusion.data.cache_spec import with_time_axis
    from fusion.models.costs import ModelAsLayer, measure
    from fusion.models.rebuild import rebuild_model

    known: dict[str, dict[str, float]] = {}
    for folder in folders:
        if (folder / COSTS_FILE).is_file():
            known.update(strict_json.read(folder / COSTS_FILE, "measured costs"))
    for run in runs:
        key = _cost_key(run)
        if key not in known:
            torch.manual_seed(0)
            model = rebuild_model(
                run.model, run.model_config, run.shapes, run.label_sizes, where=f"{run.folder} config.model"
            )
            (ns, ds), (nm, dm) = run.shapes["semantic"], run.shapes["motion"]
            inputs = (with_time_axis(torch.randn(8, ns, ds), run.semantic_frames), torch.randn(8, nm, dm))
            costs = measure(ModelAsLayer(model), inputs, torch.device("cpu"), repeats=1)
            known[key] = {"gflops_per_clip": costs["gflops"] / 8, "memory_mb": costs["memory"]}
        run.costs = known[key]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic.write_text(out / COSTS_FILE, strict_json.dumps(known, indent=1))


def headline_keys(runs: list[Run]) -> list[str]:
    """The reported validation metrics, headline first, and the holdout headline where runs selected on it."""
    keys = ["val_action_top1", "val_verb_top1", "val_noun_top1"] if runs[0].metric == "action_top1" else [
        "val_top1", "val_top5"]  # fmt: skip
    holdout = f"holdout_{runs[0].metric}"
    return keys + ([holdout] if all(holdout in run.best for run in runs) else [])


def selected_on(runs: list[Run]) -> str:
    """Which clips chose the runs' epochs (and so the table's best configurations): stated in every report."""
    found = {run.best.get("selected_on", "validation") for run in runs}
    if len(found) > 1:
        raise UserError(f"the runs chose their epochs on different clips ({', '.join(sorted(found))}): compare runs "
                        "that select the same way")  # fmt: skip
    return found.pop()


def holdout_warnings(runs: list[Run], rows: list[dict[str, Any]]) -> list[str]:
    """What a report must say when the clips that chose cannot tell configurations apart: fewer holdout clips
    than classes, and configurations whose headline means tie (the first listed is then taken)."""
    lines = []
    classes = next(iter(runs[0].label_sizes.values()), 0)
    held = max(run.held_out for run in runs)
    if selected_on(runs) == "holdout" and held < classes:
        lines.append(f"warning: the holdout has {held} clips for {classes} classes: too few to tell configurations "
                     "apart; raise data.holdout_fraction or train on more clips")  # fmt: skip
    key = f"{headline_keys_of(rows)[0]}_mean"
    best = max((row[key] for row in rows if row.get(key) is not None), default=None)
    tied = [row["configuration"] for row in rows if best is not None and row.get(key) == best]
    if len(tied) > 1:
        lines.append(f"warning: {len(tied)} configurations tie at the best {key.removesuffix('_mean')} {best:.4f} "
                     f"({', '.join(tied)}): the table cannot rank them")  # fmt: skip
    return lines


def changes_text(changes: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items()) or "base"


def headline_keys_of(rows: list[dict[str, Any]]) -> list[str]:
    """The metric keys a summary's rows hold, headline first (as headline_keys gives them for the runs)."""
    return [key.removesuffix("_mean") for key in rows[0] if key.endswith("_mean")]


def summarize(runs: list[Run], baseline: str | None) -> list[dict[str, Any]]:
    """One row per configuration, in first-seen order."""
    keys = headline_keys(runs)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.configuration, []).append(run)
    if baseline is not None and baseline not in groups:
        of_model = [name for name, members in groups.items() if members[0].model == baseline]
        plain = [name for name in of_model if not groups[name][0].changes]
        if not (plain or len(of_model) == 1):
            raise UserError(
                f"--baseline {baseline}: no single configuration of that name or model (have: {', '.join(groups)})"
            )
        baseline = (plain or of_model)[0]
    rows = []
    for name, members in groups.items():
        first = members[0]
        row: dict[str, Any] = {
            "configuration": name,
            "model": first.model,
            "changes": changes_text(first.changes),
            "seeds": len(members),
            "parameters": first.parameters,
            **first.costs,
            "seconds_per_epoch": _mean([s for m in members for s in m.epoch_seconds]),
        }
        for key in keys:
            values = np.array([m.best[key] for m in members], dtype=float)
            row[f"{key}_mean"], row[f"{key}_std"] = (
                float(values.mean()),
                float(values.std(ddof=1)) if len(values) > 1 else None,
            )
        rows.append(row)
    if baseline is not None:
        base = next(r for r in rows if r["configuration"] == baseline)
        for row in rows:
            for key in keys[:1]:
                known = row[f"{key}_std"] is not None and base[f"{key}_std"] is not None
                spread = (
                    math.sqrt(row[f"{key}_std"] ** 2 / row["seeds"] + base[f"{key}_std"] ** 2 / base["seeds"])
                    if known
                    else None
                )
                row[f"{key}_vs_baseline"] = row[f"{key}_mean"] - base[f"{key}_mean"]
                row[f"{key}_vs_baseline_se"] = spread
    return rows


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
