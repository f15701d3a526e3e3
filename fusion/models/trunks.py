"""Trunks turn cached semantic `[B, Ns, Ds]` and motion `[B, Nm, Dm]` tokens into refined tokens and a
pooled vector. Every trunk returns {"tokens": {kind: [B, N, D]}, "pooled": [B, P], "attention": {...}} and
declares `token_dims` ({kind: D}) and `pooled_dim` (P), from which the task heads are built."""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import nn

from fusion.layers import (
    AttentionReadout,
    BottleneckCrossAttention,
    FullWidthCrossAttention,
    MotionGraphAttention,
    PositionEmbedding,
    SemanticGraphAttention,
)
from fusion.layers.encoder import Encoder, EncoderLayer
from fusion.layers.keyed_dropout import KeyedDropout
from fusion.layers.readout import ProbeReadout
from fusion.models.config import FusionConfig

# Late fusion's pooled vector, cut into tokens for the verb/noun heads: attention over a single token would be
# a softmax over one key (always 1), leaving the heads' query and key projections without any gradient.
LATE_TOKENS = 4


def _graphs(sem_dim: int, mot_dim: int, cfg: FusionConfig) -> tuple[SemanticGraphAttention, MotionGraphAttention]:
    return (
        SemanticGraphAttention(
            sem_dim, cfg.heads, cfg.dropout, cfg.similarity_threshold, cfg.spatial_radius, cfg.frame_window
        ),
        MotionGraphAttention(mot_dim, cfg.heads, cfg.dropout, cfg.similarity_threshold, cfg.temporal_window),
    )


def _positions(sem_dim: int, mot_dim: int, cfg: FusionConfig) -> nn.ModuleDict | None:
    """Patch positions on the 2-D grid, segment positions in time; None when switched off (the ablation)."""
    if not cfg.positions:
        return None
    return nn.ModuleDict(
        {"semantic": PositionEmbedding(sem_dim, grid=True), "motion": PositionEmbedding(mot_dim, grid=False)}
    )


def _attention_readouts(dims: dict[str, int], heads: int) -> nn.ModuleDict:
    return nn.ModuleDict({kind: AttentionReadout(dim, heads) for kind, dim in dims.items()})


def _readouts(dims: dict[str, int], cfg: FusionConfig) -> nn.ModuleDict | None:
    """Attention readouts per stream, or None for the mean (made last, so the default's weights stay as they were)."""
    return None if cfg.readout == "mean" else _attention_readouts(dims, cfg.heads)


def _pool(readouts: nn.ModuleDict | None, kind: str, x: torch.Tensor) -> torch.Tensor:
    """x: [B, N, D] -> [B, D]."""
    return x.mean(dim=1) if readouts is None else readouts[kind](x)


def _place(positions: nn.ModuleDict | None, kind: str, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
    return x if positions is None else positions[kind](x, frames)


def _run(
    layer: nn.Module, attention: dict[str, Any], name: str, return_attention: bool, *inputs: torch.Tensor, **kwargs: Any
) -> Any:
    """Call an attention layer (every one returns (output(s), weights or None)), filing its weights under `name`
    when they were asked for; returns the output(s)."""
    out, weights = layer(*inputs, return_attention=return_attention, **kwargs)
    if return_attention:
        attention[name] = weights
    return out


class CrossStreamTrunk(nn.Module):
    """Optional graph refinement of each stream, then a stack of bidirectional cross-attention layers.

    GASM-CAST = graph attention + 3 progressive B-CAST layers; the full-width baseline = no graph and
    3 cross-attention layers at the streams' own widths.
    """

    def __init__(self, sem_dim: int, mot_dim: int, cfg: FusionConfig, bottleneck: bool, graph: bool):
        super().__init__()
        self.pooled_dim, self.token_dims = sem_dim + mot_dim, {"semantic": sem_dim, "motion": mot_dim}
        self.positions = _positions(sem_dim, mot_dim, cfg)
        self.graphs = nn.ModuleList(_graphs(sem_dim, mot_dim, cfg)) if graph else None
        make = (
            (lambda: BottleneckCrossAttention(sem_dim, mot_dim, cfg.bottleneck_dim, cfg.heads, cfg.dropout))
            if bottleneck
            else (lambda: FullWidthCrossAttention(sem_dim, mot_dim, cfg.heads, cfg.dropout))
        )
        self.layers = nn.ModuleList(make() for _ in range(cfg.fusion_layers))
        self.readouts = _readouts(self.token_dims, cfg)

    def forward(
        self, semantic: torch.Tensor, motion: torch.Tensor, return_attention: bool = False, frames: int = 1
    ) -> dict[str, Any]:
        """semantic: [B, Ns, Ds] (Ns = F x grid when `frames` F > 1), motion: [B, Nm, Dm] -> tokens of the same
        shapes, pooled [B, Ds + Dm]."""
        attention: dict[str, Any] = {}
        placed = {
            "semantic": _place(self.positions, "semantic", semantic, frames),
            "motion": _place(self.positions, "motion", motion),
        }
        if self.graphs is not None:
            semantic = _run(self.graphs[0], attention, "semantic_graph", return_attention, placed["semantic"],
                            edges_from=semantic, frames=frames)  # fmt: skip
            motion = _run(self.graphs[1], attention, "motion_graph", return_attention, placed["motion"],
                          edges_from=motion)  # fmt: skip
        else:
            semantic, motion = placed["semantic"], placed["motion"]
        for i, layer in enumerate(self.layers, start=1):
            semantic, motion = _run(layer, attention, f"fusion_{i}", return_attention, semantic, motion)
        pooled = torch.cat([_pool(self.readouts, "semantic", semantic), _pool(self.readouts, "motion", motion)], dim=-1)
        return {"tokens": {"semantic": semantic, "motion": motion}, "pooled": pooled, "attention": attention}


class AttentiveProbeTrunk(nn.Module):
    """The field's attentive probe on frozen features: positions, then a learned query per stream attends its
    tokens. No token interaction: what graph attention and cross-attention add is measured against it."""

    def __init__(self, sem_dim: int, mot_dim: int, cfg: FusionConfig):
        super().__init__()
        self.pooled_dim, self.token_dims = sem_dim + mot_dim, {"semantic": sem_dim, "motion": mot_dim}
        self.positions = _positions(sem_dim, mot_dim, cfg)
        self.readouts = (
            _attention_readouts(self.token_dims, cfg.heads)
            if not cfg.probe_blocks
            else nn.ModuleDict({kind: ProbeReadout(dim, cfg.heads, cfg.probe_blocks, cfg.dropout)
                               for kind, dim in self.token_dims.items()})
        )  # fmt: skip

    def forward(
        self, semantic: torch.Tensor, motion: torch.Tensor, return_attention: bool = False, frames: int = 1
    ) -> dict[str, Any]:
        """semantic: [B, Ns, Ds] (F x grid when `frames` F > 1), motion: [B, Nm, Dm] -> each stream's readout as
        one token ({kind: [B, 1, D]}: what the verb/noun heads attend), pooled [B, Ds + Dm]."""
        placed = {"semantic": _place(self.positions, "semantic", semantic, frames),
                  "motion": _place(self.positions, "motion", motion)}  # fmt: skip
        read = {kind: self.readouts[kind](x) for kind, x in placed.items()}
        pooled = torch.cat([read["semantic"], read["motion"]], dim=-1)
        return {"tokens": {kind: x.unsqueeze(1) for kind, x in read.items()}, "pooled": pooled, "attention": {}}


class LateFusionTrunk(nn.Module):
    """Pool each stream, concatenate, MLP: no token interaction at all (and so no positions: order-blind)."""

    def __init__(self, sem_dim: int, mot_dim: int, cfg: FusionConfig):
        super().__init__()
        if cfg.late_hidden % LATE_TOKENS:
            raise ValueError(f"late_hidden {cfg.late_hidden} is not divisible into {LATE_TOKENS} tokens")
        self.pooled_dim, self.token_dims = cfg.late_hidden, {"pooled": cfg.late_hidden // LATE_TOKENS}
        self.mlp = nn.Sequential(
            nn.LayerNorm(sem_dim + mot_dim),
            nn.Linear(sem_dim + mot_dim, cfg.late_hidden),
            nn.GELU(),
            KeyedDropout(cfg.dropout),
        )

    def forward(
        self, semantic: torch.Tensor, motion: torch.Tensor, return_attention: bool = False, frames: int = 1
    ) -> dict[str, Any]:
        """semantic: [B, Ns, Ds], motion: [B, Nm, Dm] -> pooled [B, late_hidden], also cut into LATE_TOKENS tokens."""
        pooled = self.mlp(torch.cat([semantic.mean(dim=1), motion.mean(dim=1)], dim=-1))
        tokens = rearrange(pooled, "b (n d) -> b n d", n=LATE_TOKENS)
        return {"tokens": {"pooled": tokens}, "pooled": pooled, "attention": {}}


class SingleStreamTrunk(nn.Module):
    """One stream only, with its graph attention: what the other stream adds is measured against this."""

    def __init__(self, sem_dim: int, mot_dim: int, cfg: FusionConfig, stream: str):
        super().__init__()
        self.stream = stream
        semantic_graph, motion_graph = _graphs(sem_dim, mot_dim, cfg)
        self.graph = semantic_graph if stream == "semantic" else motion_graph
        positions = _positions(sem_dim, mot_dim, cfg)
        self.position = None if positions is None else positions[stream]
        self.pooled_dim = sem_dim if stream == "semantic" else mot_dim
        self.token_dims = {stream: self.pooled_dim}
        self.readouts = _readouts(self.token_dims, cfg)

    def forward(
        self, semantic: torch.Tensor, motion: torch.Tensor, return_attention: bool = False, frames: int = 1
    ) -> dict[str, Any]:
        """semantic: [B, Ns, Ds] (F x grid when `frames` F > 1), motion: [B, Nm, Dm] -> the chosen stream's
        tokens [B, N, D], pooled [B, D]."""
        attention: dict[str, Any] = {}
        semantic_stream = self.stream == "semantic"
        x, frames = (semantic, frames) if semantic_stream else (motion, 1)
        placed = x if self.position is None else self.position(x, frames)
        tokens = _run(self.graph, attention, f"{self.stream}_graph", return_attention, placed, edges_from=x,
                      frames=frames)  # fmt: skip
        pooled = _pool(self.readouts, self.stream, tokens)
        return {"tokens": {self.stream: tokens}, "pooled": pooled, "attention": attention}


class TemporalTransformerTrunk(nn.Module):
    """The design notes' Phase 2 trunk: the pooled semantic map, projected to the segment width, joins the
    segment tokens as one more token; a pre-norm transformer (`transformer_layers`, `heads`) runs over them,
    with temporal positions on the segments."""

    def __init__(self, sem_dim: int, mot_dim: int, cfg: FusionConfig):
        super().__init__()
        self.pooled_dim, self.token_dims = mot_dim, {"temporal": mot_dim}
        self.semantic_token = nn.Sequential(nn.LayerNorm(sem_dim), nn.Linear(sem_dim, mot_dim))
        self.position = PositionEmbedding(mot_dim, grid=False) if cfg.positions else None
        self.encoder = Encoder(EncoderLayer(mot_dim, cfg.heads, 2 * mot_dim, cfg.dropout), cfg.transformer_layers)
        self.norm = nn.LayerNorm(mot_dim)

    def forward(
        self, semantic: torch.Tensor, motion: torch.Tensor, return_attention: bool = False, frames: int = 1
    ) -> dict[str, Any]:
        """semantic: [B, Ns, Ds], motion: [B, Nm, Dm] -> tokens {"temporal": [B, 1 + Nm, Dm]}, pooled [B, Dm]."""
        segments = motion if self.position is None else self.position(motion)
        tokens = torch.cat([self.semantic_token(semantic.mean(dim=1)).unsqueeze(1), segments], dim=1)
        tokens = self.norm(self.encoder(tokens))
        return {"tokens": {"temporal": tokens}, "pooled": tokens.mean(dim=1), "attention": {}}
