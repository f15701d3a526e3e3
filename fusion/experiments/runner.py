"""`cli sweep`: train every member of a sweep over one cache, each into an ordinary run folder `DIR/runs/<member>/`.

Inline (default): one process reads the caches once, and the members step together on each batch it reads
(`fusion/training/lockstep.py`), each exactly as a standalone `fuse-train` of its config and seed would. Every
member reads the batches in one order (`data.order_seed`, 0 unless the spec sets it), so seeds vary weights,
dropout and augmentation. `local`/`slurm`: one submitit task per member, each reading the caches itself. A
re-run skips finished members (metrics.json written) and resumes interrupted ones from their last.pt; SIGTERM
or Ctrl-C stops the members in flight after their checkpoints, so at most the steps since them are lost. A
member whose loss diverges stops alone; the others go on, and the sweep then names it and exits 1.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion.experiments.presets import PHASE_MODELS, SWEEP_PRESETS, phase2_phase3_stage2
from fusion.experiments.spec import Member, PruneConfig, SweepSpec, load_spec, member_dir, parse_spec
from fusion.training.config import training_config
from pipeline.cache.layout import open_cache
from pipeline.core import atomic, strict_json
from pipeline.core.errors import UserError
from pipeline.core.folder_lock import folder_lock
from pipeline.core.paths import output_folder
from pipeline.core.progress import duration
from pipeline.core.progress import log as progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepRun:
    """What every member of one sweep shares: the training and validation caches, the sweep folder, the epochs
    (None: each member's config says), whether caches with missing or failed clips are accepted, and whether
    inline members step together (lockstep; those of one architecture as one stacked model) or train one after
    another."""

    cache: Path
    val_cache: Path
    out: Path
    epochs: int | None = None
    allow_partial: bool = False
    lockstep: bool = True  # inline: members that read the caches alike step together on each batch
    stack: bool = True  # lockstep: members of one architecture and shapes step as one stacked model
    until: int | None = None  # members stop after this epoch (a pruning rung; None: their last)

    def __post_init__(self) -> None:
        for name in ("cache", "val_cache", "out"):
            object.__setattr__(self, name, Path(getattr(self, name)))


def finished(out: Path, member: Member) -> bool:
    """Only a whole, valid metrics.json marks a member finished; anything else is trained (resumed) again."""
    try:
        return "best" in strict_json.read(member_dir(out, member) / "metrics.json", "run summary")
    except UserError:
        return False


def member_request(run: SweepRun, spec: SweepSpec, member: Member) -> Any:
    """The member's training request: a new run, or the resumption of the one in its folder."""
    from fusion.training.request import TrainingRequest

    folder = member_dir(run.out, member)
    cfg = spec.config_for(member, run.epochs)
    resume = (folder / "last.pt").is_file()
    return TrainingRequest(run.cache, run.val_cache, member.configuration.model, folder, cfg, resume, run.allow_partial,
                           until=run.until)  # fmt: skip


def run_member(run: SweepRun, spec: SweepSpec, member: Member) -> dict[str, Any]:
    """Train (or resume) one member alone: what a local or SLURM task runs. Returns its summary ({} where it
    stopped at `run.until`), or {"diverged": why} where its loss diverged."""
    from fusion.training.command import run_training
    from fusion.training.trainer import NonFiniteLoss

    try:
        return run_training(member_request(run, spec, member), False, member.identity())
    except NonFiniteLoss as exc:
        return {"diverged": str(exc)}


def record(run: SweepRun, spec: SweepSpec, name: str) -> None:
    """DIR/sweep.json: what the sweep is; a re-run with another definition is refused, not mixed in."""
    out = run.out
    now = {
        "sweep": name,
        "cache": str(run.cache.resolve()),
        "val_cache": str(run.val_cache.resolve()),
        "epochs": run.epochs,
        "prune": spec.prune.record(epochs_of(spec, run)) if spec.prune else None,
        "members": [m.name for m in spec.members()],
        "pruned_at": {},
    }
    path = out / "sweep.json"
    if path.is_file():
        before = strict_json.read(path, "sweep record")
        if any(before.get(key) != now[key] for key in ("cache", "val_cache", "epochs", "prune")):
            raise UserError(f"{out} holds a sweep over other caches or epochs, or pruned otherwise ({path}); use a "
                            "new --out")  # fmt: skip
        now["members"] = list(dict.fromkeys(before.get("members", []) + now["members"]))
        now["pruned_at"] = before.get("pruned_at", {})
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, strict_json.dumps(now, indent=1))


def epochs_of(spec: SweepSpec, run: SweepRun) -> int:
    """The epochs every member trains (the spec cannot vary them)."""
    return run.epochs or spec.config_for(spec.members()[0]).epochs


def execute(spec: SweepSpec, run: SweepRun, executor: str, live: bool | None) -> list[Member]:
    """Train the members not finished yet (pruned: from rung to rung); returns every member of the spec."""
    from fusion.experiments import pruning
    from fusion.training.command import run_members
    from fusion.training.trainer import NonFiniteLoss

    members = spec.members()
    rungs = spec.prune.rungs_for(epochs_of(spec, run)) if spec.prune else ()
    lost: set[Member] = set()  # diverged before a rung: ranked no more, trained no further
    diverged, loaded = [], None
    for until in (*rungs, None):
        todo = [m for m in members if not finished(run.out, m) and m not in lost]
        if until is not None:
            todo = [m for m in todo if pruning.trained_epochs(run.out, m) < until]
        to = f"to epoch {until}" if until else "to the end"
        log.info("%d members, %d finished or stopped, %d to train %s (%s)", len(members), len(members) - len(todo),
                 len(todo), to, executor)  # fmt: skip
        segment = dataclasses.replace(run, until=until)
        try:
            if executor == "inline" and todo:
                loaded = loaded or _load(run, shared_placement(spec))  # read once for every rung
                started = time.monotonic()
                run_members([(member_request(segment, spec, m), m.identity()) for m in todo], loaded, live,
                            run.lockstep, run.stack)  # fmt: skip
                progress.info("%d members trained %s in %s", len(todo), to, duration(time.monotonic() - started))
            elif todo:
                _submit(todo, spec, segment, executor)
        except NonFiniteLoss as exc:
            if not rungs:
                raise
            diverged.append(str(exc))
        if until is not None:
            stopped, never = pruning.rung(run.out, members, until, spec.prune.keep)
            lost.update(never)
            _note_pruned(run.out, {m.name: until for m in stopped})
    if diverged:
        raise NonFiniteLoss(" | ".join(diverged))
    return members


def _note_pruned(out: Path, stopped: dict[str, int]) -> None:
    """sweep.json's `pruned_at`: the members a rung stopped, and at which epoch."""
    path = out / "sweep.json"
    now = strict_json.read(path, "sweep record")
    if stopped.items() <= now.get("pruned_at", {}).items():
        return
    now["pruned_at"] = {**now.get("pruned_at", {}), **stopped}
    atomic.write_text(path, strict_json.dumps(now, indent=1))


def selecting(spec: SweepSpec, select_on: str | None) -> SweepSpec:
    """Sweeps choose epochs and configurations on the training cache's holdout unless told otherwise (the spec's
    base.overrides data.select_on, or --select-on, which takes precedence), and read batches in one order
    (data.order_seed 0 unless the spec sets it)."""
    data = dict(spec.overrides.get("data") or {})
    if select_on is not None or "select_on" not in data:
        data["select_on"] = select_on or "holdout"
    data.setdefault("order_seed", 0)  # one data order for every member: they can step together on each batch
    spec.overrides = {**spec.overrides, "data": data}
    training_config(spec.preset, None, spec.overrides)  # checked before anything trains
    return spec


def pruned(spec: SweepSpec, prune: str | None, run: SweepRun) -> SweepSpec:
    """The spec with --prune applied ("halving": the spec's prune settings, else the defaults; "none": off),
    checked before anything trains: its rungs come before the last epoch, and members select on the holdout."""
    if prune == "none":
        spec.prune = None
    elif prune == "halving" and spec.prune is None:
        spec.prune = PruneConfig()
    if spec.prune is not None:
        spec.prune.rungs_for(epochs_of(spec, run))
        if spec.config_for(spec.members()[0]).data.select_on != "holdout":
            raise UserError("--prune ranks members on the holdout, never on the validation clips the report gives: "
                            "drop --select-on validation (data.select_on), or --prune none")  # fmt: skip
    return spec


def shared_placement(spec: SweepSpec) -> Any:
    """The members' common training config for where the caches live: an inline sweep reads its caches once
    for every member, so they must agree on device, data.mode and data.ram_limit_gb."""
    configs = [spec.config_for(m) for m in spec.members()]
    placements = {
        (c.device, c.data.mode, c.data.ram_limit_gb, c.data.select_on, c.data.holdout_fraction) for c in configs
    }
    if len(placements) > 1:
        raise UserError(
            "an inline sweep reads its caches once for every member, so its members must share device, "
            "data.mode and data.ram_limit_gb, and how they select (data.select_on, data.holdout_fraction) (they "
            f"vary: {sorted(placements)}); sweep those with --executor local"
        )
    return configs[0]


def _load(run: SweepRun, cfg: Any) -> tuple[Any, Any, Any]:
    """The training, validation and selecting data, where the members' data.mode puts them for their device."""
    from fusion.data.cache_data import open_caches
    from pipeline.core.devices import resolve_device

    return open_caches(run.cache, run.val_cache, cfg.data, resolve_device(cfg.device), run.allow_partial)


def _submit(todo: list[Member], spec: SweepSpec, run: SweepRun, executor: str) -> None:
    import submitit

    out = run.out
    try:
        runner = submitit.AutoExecutor(folder=out / "jobs" / "%j", cluster=executor)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"--executor {executor}: {exc}") from None
    runner.update_parameters(
        name=f"gasm-sweep-{out.name}",
        timeout_min=24 * 60,
        cpus_per_task=4,
        gpus_per_node=0 if executor == "local" else 1,
    )
    from fusion.training.trainer import NonFiniteLoss

    n = len(todo)
    jobs = runner.map_array(run_member, [run] * n, [spec] * n, todo)
    failed, diverged = [], []
    for job, member in zip(jobs, todo):
        try:
            outcome = job.result()
        except Exception as exc:  # noqa: BLE001 - every member is reported, then the sweep says which failed
            failed.append(f"{member.name}: {str(exc).splitlines()[-1][:200]}")
            continue
        if "diverged" in outcome:
            diverged.append(outcome["diverged"])
    if failed:
        raise UserError(f"{len(failed)} member(s) did not finish ({'; '.join(failed)}); re-run the same command")
    if diverged:
        raise NonFiniteLoss(f"{len(diverged)} member(s) stopped, the others finished: {' | '.join(diverged)}")


def run_sweep(
    preset: str | None,
    spec_file: Path | None,
    model: str | None,
    run: SweepRun,
    executor: str,
    live: bool | None = None,
    select_on: str | None = None,
    prune: str | None = None,
) -> list[Member]:
    """Run a preset or a spec file to the end (both stages for phase2-phase3); returns every member trained.
    `select_on`: the clips that choose epochs and configurations (default: the spec's, else holdout); `prune`:
    "halving" or "none" (default: the spec's prune key)."""
    if (preset is None) == (spec_file is None):
        raise UserError("give exactly one of --preset NAME and --spec FILE")
    out, cache = run.out, run.cache
    output_folder(out, "--out")
    if preset is not None and preset not in SWEEP_PRESETS:
        raise UserError(f"unknown preset '{preset}' (expected one of {', '.join(SWEEP_PRESETS)})")
    spec = parse_spec(SWEEP_PRESETS[preset], f"preset {preset}", model) if preset else load_spec(spec_file, model)
    spec = pruned(selecting(spec, select_on), prune, run)
    name = preset or str(spec_file)
    fields = list(open_cache(cache).attrs.get("label_fields") or [])
    if preset == "phase2-phase3" and "verb" not in fields:  # before anything trains
        raise UserError(f"phase2-phase3 ranks by action top-1: it needs a verb/noun cache (EPIC-style); {cache} "
                        f"has labels {fields}")  # fmt: skip
    if executor == "inline":
        shared_placement(spec)  # refused before anything is written
    with folder_lock(out, "sweep folder"):
        record(run, spec, name)
        members = execute(spec, run, executor, live)
        if preset != "phase2-phase3":
            return members
        best, stage1 = best_configuration(out, members, "action_top1")
        atomic.write_text(out / "stage1.json", strict_json.dumps(stage1, indent=1))
        log.info("phase 2 stage 1: best configuration %s (on the %s)", best.name, stage1["selected_on"])
        stage2 = selecting(
            parse_spec(phase2_phase3_stage2(dict(best.changes)), "preset phase2-phase3 (stage 2)"), select_on
        )
        stage2.prune = spec.prune
        record(run, stage2, name)
        return members + execute(stage2, run, executor, live)


def best_configuration(out: Path, members: list[Member], metric: str) -> tuple[Any, dict[str, Any]]:
    """The configuration whose members reach the highest mean `metric` on the clips that chose their epochs
    (the holdout, unless the sweep selects on validation), and the record of the choice: that split, every
    configuration's mean, the configurations tied with the winner (the first listed wins a tie) and the
    holdout's clips."""
    scores: dict[Any, list[float]] = {}
    splits, held = set(), set()
    for member in members:
        summary = strict_json.read(member_dir(out, member) / "metrics.json", "run summary")
        if "pruned_at" in summary:  # stopped at a rung: only finished configurations are compared
            continue
        best = summary["best"]
        if best["metric"] != metric:
            raise UserError(f"phase2-phase3 ranks by {metric}: it needs a verb/noun cache (EPIC-style)")
        scores.setdefault(member.configuration, []).append(best["value"])
        splits.add(best.get("selected_on", "validation"))
        held.add(summary.get("data", {}).get("train", {}).get("held_out", 0))
    means = {c: sum(v) / len(v) for c, v in scores.items()}
    winner = max(means, key=lambda c: means[c])
    return winner, {
        "best": winner.name,
        "changes": dict(winner.changes),
        "metric": metric,
        "selected_on": "/".join(sorted(splits)),
        "scores": {c.name: means[c] for c in means},
        "tied": [c.name for c in means if means[c] == means[winner]],
        "holdout_clips": max(held),
    }


__all__ = ["PHASE_MODELS", "run_sweep", "run_member", "best_configuration"]
