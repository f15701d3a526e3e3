"""A sweep: which training runs to make over one cache, as a YAML spec or a built-in preset.

    base:    {model: gasm_cast, preset: default, overrides: {optim: {lr: 3e-4}}}   # every member starts here
    axes:    {model: [gasm_cast, late_fusion], optim.lr: [1e-3, 3e-4]}          # the product of these ...
    members: [{model: gasm_cast, changes: {model.fusion_layers: 1}}, ...]         # ... or these, listed
    seeds:   [0, 1, 2]                                                            # every configuration, each seed
    prune:   {rungs: [3, 7, 15], keep: 0.5}                  # successive halving (fusion/experiments/pruning.py)

Keys of `axes` and `changes` are "model" or dotted keys of the training config (checked as `fuse-train` checks
them). Unknown keys are errors. A configuration is a model and its changed keys; a member is a configuration
trained with one seed, in the run folder named after both.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion.models.config import DEFAULT_MODEL
from fusion.training.config import TRAIN_PRESETS, TrainConfig, training_config
from pipeline.core.config_loading import load_yaml_overrides, set_value
from pipeline.core.errors import UserError

SPEC_KEYS = {"base", "axes", "members", "seeds", "prune"}
BASE_KEYS = {"model", "preset", "overrides"}
MEMBER_KEYS = {"model", "changes"}
PRUNE_KEYS = {"rungs", "keep"}
PRUNE_KINDS = ("none", "halving")  # `cli sweep --prune`
RUNG_DIVISORS = (8, 4, 2)  # the default rungs: the epochs // 8, // 4 and // 2 (those >= 1, each once)


@dataclass(frozen=True)
class PruneConfig:
    """Successive halving: at each rung epoch, of each model's configurations the best `keep` fraction (at least
    one) go on and the others stop (fusion/experiments/pruning.py)."""

    rungs: tuple[int, ...] = ()  # (): the epochs // RUNG_DIVISORS
    keep: float = 0.5

    def rungs_for(self, epochs: int) -> tuple[int, ...]:
        """The rung epochs of a sweep of `epochs` epochs; each must come before the last."""
        rungs = self.rungs or tuple(sorted({epochs // d for d in RUNG_DIVISORS} - {0}))
        late = [r for r in rungs if r >= epochs]
        if late:
            raise UserError(f"prune.rungs: {late[0]} is not an epoch before the last ({epochs}): members ranked at a "
                            "rung are the ones that train on")  # fmt: skip
        return rungs

    def record(self, epochs: int) -> dict[str, Any]:
        return {"rungs": list(self.rungs_for(epochs)), "keep": self.keep}


def prune_help() -> str:
    """--prune's help, from PruneConfig's defaults."""
    divisors = ", ".join(f"epochs // {d}" for d in RUNG_DIVISORS)
    return (f"halving: at rung epochs ({divisors} unless the spec's prune.rungs says) rank each model's "
            f"configurations by their seeds' mean holdout headline, keep the best {PruneConfig.keep:g} (prune.keep; at "
            "least one) and stop the others. none: train every member to the end.  [default: the spec's prune key, "
            "else none]")  # fmt: skip


def parse_prune(value: Any, where: str) -> PruneConfig:
    value = _mapping(value, where, PRUNE_KEYS)
    rungs = value.get("rungs", [])
    if not isinstance(rungs, list) or not all(isinstance(r, int) and r >= 1 for r in rungs) or rungs != sorted(
            set(rungs)):  # fmt: skip
        raise UserError(f"{where}: rungs: expected increasing epochs >= 1 (e.g. [2, 4, 8]), got {rungs!r}")
    keep = value.get("keep", PruneConfig.keep)
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep < 1:
        raise UserError(f"{where}: keep: expected the fraction of configurations that go on, in (0, 1), got {keep!r}")
    return PruneConfig(tuple(rungs), float(keep))


@dataclass(frozen=True)
class Configuration:
    model: str
    changes: tuple[tuple[str, Any], ...] = ()  # sorted (dotted key, value)

    @property
    def name(self) -> str:
        parts = [self.model] + [f"{key.split('.')[-1]}{_text(value)}" for key, value in self.changes]
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", "-".join(parts))

    def describe(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.changes) or "base"


@dataclass(frozen=True)
class Member:
    configuration: Configuration
    seed: int

    @property
    def name(self) -> str:
        return f"{self.configuration.name}-seed{self.seed}"

    def identity(self) -> dict[str, Any]:
        """What metrics.json records of the member."""
        return {
            "name": self.name,
            "configuration": self.configuration.name,
            "model": self.configuration.model,
            "changes": dict(self.configuration.changes),
            "seed": self.seed,
        }


def member_dir(out: Path, member: Member) -> Path:
    """The member's run folder in the sweep folder `out`."""
    return out / "runs" / member.name


@dataclass
class SweepSpec:
    model: str = DEFAULT_MODEL
    preset: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)
    configurations: list[Configuration] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    prune: PruneConfig | None = None

    def members(self) -> list[Member]:
        return [Member(c, seed) for c in self.configurations for seed in self.seeds]

    def config_for(self, member: Member, epochs: int | None = None) -> TrainConfig:
        """The member's whole training config: base preset and overrides, its changes, its seed."""

        def changed(cfg: TrainConfig) -> TrainConfig:
            for key, value in member.configuration.changes:
                cfg = set_value(cfg, key, value, f"sweep member {member.name}: {key}")
            cfg = set_value(cfg, "seed", member.seed, f"sweep member {member.name}: seed")
            return cfg if epochs is None else set_value(cfg, "epochs", epochs, "--epochs")

        return training_config(self.preset, None, self.overrides, changed, f"sweep member {member.name}")


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _mapping(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
    return value


def _configuration(model: str, changes: dict[str, Any], where: str) -> Configuration:
    from fusion.models.registry import MODELS

    if model not in MODELS:
        raise UserError(f"{where}: unknown model '{model}' (expected one of {', '.join(MODELS)})")
    probe = TrainConfig()
    for key, value in changes.items():
        if key in ("seed", "epochs"):
            raise UserError(f"{where}: '{key}' is set by the sweep (seeds, --epochs), not per member")
        try:
            probe = set_value(probe, key, value, f"{where}: {key}")
        except (AttributeError, KeyError, TypeError):
            raise UserError(f"{where}: '{key}' is not a training config key (e.g. optim.lr, model.dropout)") from None
    return Configuration(model, tuple(sorted(changes.items())))


def parse_spec(data: dict[str, Any], where: str, model: str | None = None) -> SweepSpec:
    """A spec from its YAML mapping; `model` (the --model option) replaces the base model."""
    data = _mapping(data, where, SPEC_KEYS)
    base = _mapping(data.get("base", {}), f"{where}: base", BASE_KEYS)
    spec = SweepSpec(
        model=model or base.get("model", DEFAULT_MODEL),
        preset=base.get("preset", "default"),
        overrides=base.get("overrides", {}),
    )
    if spec.preset not in TRAIN_PRESETS:
        raise UserError(f"{where}: base.preset '{spec.preset}' is not one of {', '.join(TRAIN_PRESETS)}")
    training_config(spec.preset, None, spec.overrides)  # the base alone must be valid
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise UserError(f"{where}: seeds: expected a non-empty list of integers >= 0, got {seeds!r}")
    spec.seeds = seeds
    if "prune" in data:
        spec.prune = parse_prune(data["prune"], f"{where}: prune")
    if ("axes" in data) == ("members" in data):
        raise UserError(
            f"{where}: give either axes (a grid) or members (a list), not {'both' if 'axes' in data else 'neither'}"
        )
    if "axes" in data:
        axes = _mapping(data["axes"], f"{where}: axes", set(data["axes"]) if isinstance(data["axes"], dict) else set())
        for key, values in axes.items():
            if not isinstance(values, list) or not values:
                raise UserError(f"{where}: axes.{key}: expected a non-empty list of values")
        keys = list(axes)
        for values in itertools.product(*(axes[k] for k in keys)):
            chosen = dict(zip(keys, values))
            chosen_model = chosen.pop("model", spec.model)
            spec.configurations.append(_configuration(chosen_model, chosen, f"{where}: axes"))
    else:
        if not isinstance(data["members"], list) or not data["members"]:
            raise UserError(f"{where}: members: expected a non-empty list")
        for i, entry in enumerate(data["members"]):
            entry = _mapping(entry, f"{where}: members[{i}]", MEMBER_KEYS)
            spec.configurations.append(
                _configuration(entry.get("model", spec.model), entry.get("changes", {}), f"{where}: members[{i}]")
            )
    names = [c.name for c in spec.configurations]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise UserError(f"{where}: configuration(s) listed twice: {', '.join(duplicated)}")
    return spec


def load_spec(path: Path, model: str | None = None) -> SweepSpec:
    return parse_spec(load_yaml_overrides(path), str(path), model)
