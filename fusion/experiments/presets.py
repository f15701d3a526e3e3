"""The built-in sweeps (`cli sweep --preset NAME`), written in the spec format of docs/experiments.md."""

from __future__ import annotations

from typing import Any

from fusion.models.config import DEFAULT_MODEL

SEEDS = [0, 1, 2]

# Each component of GASM-CAST against the model without it, and the baselines; 3 seeds each.
ABLATIONS: dict[str, Any] = {
    "members": [
        {"model": DEFAULT_MODEL},
        {"model": "bcast_no_graph"},
        {"model": "graph_full_width"},
        {"model": "vanilla_cross_attention"},
        {"model": "late_fusion"},
        {"model": "semantic_only"},
        {"model": "motion_only"},
        {"model": DEFAULT_MODEL, "changes": {"model.fusion_layers": 1}},
        {"model": DEFAULT_MODEL, "changes": {"model.fusion_layers": 2}},
        {"model": DEFAULT_MODEL, "changes": {"model.bottleneck_dim": 128}},
        {"model": DEFAULT_MODEL, "changes": {"model.bottleneck_dim": 384}},
        {"model": DEFAULT_MODEL, "changes": {"model.positions": False}},
    ],
    "seeds": SEEDS,
}

# A learning-rate x weight-decay grid for the --model given.
LR_WD: dict[str, Any] = {"axes": {"optim.lr": [1e-4, 3e-4, 1e-3], "optim.weight_decay": [0.01, 0.05, 0.1]}}

# The design notes' plan: 8 Phase 2 (independent heads) configurations around their recipe, then the best one's
# hyperparameters for Phase 3 (cross-task heads) and for Phase 2 again, 3 seeds each.
PHASE2_BASE = {"model": "temporal_transformer", "overrides": {"model": {"head": "mlp"}}}
PHASE2_STAGE1: dict[str, Any] = {
    "base": PHASE2_BASE,
    "axes": {"optim.lr": [1e-4, 3e-4], "model.dropout": [0.1, 0.3], "optim.weight_decay": [0.01, 0.05]},
}
PHASE_MODELS = {"phase2": "temporal_transformer", "phase3": "temporal_transformer_cross_task"}


def phase2_phase3_stage2(changes: dict[str, Any]) -> dict[str, Any]:
    return {
        "base": PHASE2_BASE,
        "members": [{"model": model, "changes": changes} for model in PHASE_MODELS.values()],
        "seeds": SEEDS,
    }


SWEEP_PRESETS: dict[str, dict[str, Any]] = {"ablations": ABLATIONS, "lr-wd": LR_WD, "phase2-phase3": PHASE2_STAGE1}
# What a preset's report takes its differences to when no --baseline is given.
SWEEP_BASELINES = {"ablations": DEFAULT_MODEL}

# `cli bench sweep --prune`: learning rates from helpful to hopeless (configurations that differ clearly) x weight
# decays, 16 configurations
PRUNE_BENCH_GRID = {"optim.lr": [3e-3, 1e-3, 3e-5, 1e-6], "optim.weight_decay": [0.0, 0.01, 0.05, 0.1]}
