"""Every fusion model by name, built from the cache's dimensions and label sizes, with one API:
`model(batch) -> dict` where batch = {"semantic": [B, Ns, Ds] or per-frame [B, F, Ns, Ds], "motion": [B, Nm, Dm]}."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fusion.models.config import FusionConfig
from fusion.models.heads import ClassifierHead, VerbNounHead
from fusion.models.trunks import (
    AttentiveProbeTrunk,
    CrossStreamTrunk,
    LateFusionTrunk,
    SingleStreamTrunk,
    TemporalTransformerTrunk,
)
from pipeline.core.errors import UserError

PARAMETER_BUDGET = 20_000_000
TrunkFactory = Callable[[int, int, FusionConfig], nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    trunk: TrunkFactory
    cross_task: bool  # verb/noun tasks: cross-task attention between the branches, or independent heads
    description: str


MODELS: dict[str, ModelEntry] = {
    "gasm_cast": ModelEntry(
        lambda s, m, c: CrossStreamTrunk(s, m, c, bottleneck=True, graph=True),
        True,
        "graph attention + 3 progressive B-CAST layers (verb/noun: cross-task heads)",
    ),
    "gasm_cast_independent": ModelEntry(
        lambda s, m, c: CrossStreamTrunk(s, m, c, bottleneck=True, graph=True),
        False,
        "GASM-CAST trunk with independent verb/noun heads",
    ),
    "vanilla_cross_attention": ModelEntry(
        lambda s, m, c: CrossStreamTrunk(s, m, c, bottleneck=False, graph=False),
        True,
        "3 full-width bidirectional cross-attention layers, no graph",
    ),
    "bcast_no_graph": ModelEntry(
        lambda s, m, c: CrossStreamTrunk(s, m, c, bottleneck=True, graph=False),
        True,
        "ablation: GASM-CAST without graph attention (3 B-CAST layers only)",
    ),
    "graph_full_width": ModelEntry(
        lambda s, m, c: CrossStreamTrunk(s, m, c, bottleneck=False, graph=True),
        True,
        "ablation: graph attention + 3 full-width cross-attention layers (no bottleneck)",
    ),
    "late_fusion": ModelEntry(LateFusionTrunk, True, "pool each stream, concatenate, MLP"),
    "attentive_probe": ModelEntry(
        AttentiveProbeTrunk, True, "positions, then a learned-query attention readout per stream (attentive probe)"
    ),
    "temporal_transformer": ModelEntry(
        TemporalTransformerTrunk,
        False,
        "design notes' Phase 2: 2-layer temporal transformer over segments + pooled semantic token, independent heads",
    ),
    "temporal_transformer_cross_task": ModelEntry(
        TemporalTransformerTrunk, True, "design notes' Phase 3: the Phase 2 trunk with cross-task heads"
    ),
    "semantic_only": ModelEntry(
        lambda s, m, c: SingleStreamTrunk(s, m, c, "semantic"), True, "semantic graph attention only"
    ),
    "motion_only": ModelEntry(
        lambda s, m, c: SingleStreamTrunk(s, m, c, "motion"), True, "motion graph attention only"
    ),
}


class FusionModel(nn.Module):
    def __init__(self, name: str, trunk: nn.Module, head: nn.Module):
        super().__init__()
        self.name, self.trunk, self.head = name, trunk, head

    def forward(self, batch: dict[str, torch.Tensor], return_attention: bool = False) -> dict[str, Any]:
        """batch: semantic [B, Ns, Ds] or [B, F, Ns, Ds], motion [B, Nm, Dm] -> {"logits": [B, C]} or {"verb",
        "noun", "action"}. Per-frame tokens are one sequence of F x Ns tokens; positions and the semantic graph
        know the frames."""
        semantic, frames = batch["semantic"], 1
        if semantic.dim() == 4:
            frames, semantic = semantic.shape[1], semantic.flatten(1, 2)
        trunk = self.trunk(semantic, batch["motion"], return_attention, frames)
        out = self.head(trunk, return_attention)
        if return_attention:
            out["attention"] = {
                **trunk["attention"],
                **({"cross_task": out.pop("cross_task")} if "cross_task" in out else {}),
            }
        return out


def build_model(
    name: str, semantic_dim: int, motion_dim: int, labels: dict[str, int], cfg: FusionConfig | None = None
) -> FusionModel:
    """labels: {"label": classes} or {"verb": verbs, "noun": nouns}."""
    if name not in MODELS:
        raise UserError(f"unknown model '{name}' (expected one of {', '.join(MODELS)})")
    cfg = cfg or FusionConfig()
    entry = MODELS[name]
    trunk = entry.trunk(semantic_dim, motion_dim, cfg)
    if set(labels) == {"label"}:
        head: nn.Module = ClassifierHead(trunk.pooled_dim, labels["label"], cfg)
    elif set(labels) == {"verb", "noun"}:
        head = VerbNounHead(trunk.token_dims, labels["verb"], labels["noun"], cfg, cross=entry.cross_task)
    else:
        raise UserError(f"labels must be {{'label'}} or {{'verb', 'noun'}}, got {sorted(labels)}")
    return FusionModel(name, trunk, head)


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
