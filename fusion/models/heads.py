"""Task heads: one classifier (SSv2), or verb and noun token branches with or without cross-task attention."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fusion.layers import CrossAttention, CrossTaskAttention
from fusion.layers.keyed_dropout import KeyedDropout
from fusion.models.config import FusionConfig


def classifier(width: int, classes: int, cfg: FusionConfig, dropout: bool) -> nn.Module:
    """[.., width] -> [.., classes]: one linear layer (after dropout if `dropout`), or (head: mlp) the design
    notes' 2-layer MLP with a hidden layer of `head_hidden`."""
    if cfg.head == "mlp":
        return nn.Sequential(KeyedDropout(cfg.dropout), nn.Linear(width, cfg.head_hidden), nn.GELU(),
                             KeyedDropout(cfg.dropout), nn.Linear(cfg.head_hidden, classes))  # fmt: skip
    return nn.Sequential(KeyedDropout(cfg.dropout), nn.Linear(width, classes)) if dropout else nn.Linear(width, classes)


class ClassifierHead(nn.Module):
    def __init__(self, pooled_dim: int, classes: int, cfg: FusionConfig):
        super().__init__()
        self.classify = classifier(pooled_dim, classes, cfg, dropout=True)

    def forward(self, trunk: dict[str, Any], return_attention: bool = False) -> dict[str, Any]:
        """pooled: [B, P] -> {"logits": [B, C]}."""
        return {"logits": self.classify(trunk["pooled"])}


def action_scores(verb_logits: torch.Tensor, noun_logits: torch.Tensor) -> torch.Tensor:
    """[B, V], [B, N] -> [B, V * N]: P(verb) * P(noun), index verb * N + noun (the official scorer's product)."""
    product = verb_logits.float().softmax(-1).unsqueeze(2) * noun_logits.float().softmax(-1).unsqueeze(1)
    return product.flatten(1)


class VerbNounHead(nn.Module):
    """Learned verb and noun query tokens read the trunk's tokens; with `cross`, the two query sequences then
    attend each other (CrossTaskAttention), else each only passes its own FFN (independent heads)."""

    def __init__(self, token_dims: dict[str, int], verbs: int, nouns: int, cfg: FusionConfig, cross: bool):
        super().__init__()
        d = cfg.task_dim
        self.project = nn.ModuleDict({kind: nn.Linear(dim, d) for kind, dim in token_dims.items()})
        self.stream_embedding = nn.ParameterDict({kind: nn.Parameter(torch.zeros(1, 1, d)) for kind in token_dims})
        self.queries = nn.ParameterDict(
            {task: nn.Parameter(torch.randn(1, cfg.task_queries, d) * 0.02) for task in ("verb", "noun")}
        )
        self.read = nn.ModuleDict(
            {task: CrossAttention(d, cfg.heads, dropout=cfg.dropout) for task in ("verb", "noun")}
        )
        self.exchange = CrossTaskAttention(d, cfg.heads, cfg.dropout) if cross else None
        self.ffn = (
            None
            if cross
            else nn.ModuleDict(
                {
                    task: nn.Sequential(
                        nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(), KeyedDropout(cfg.dropout), nn.Linear(2 * d, d)
                    )
                    for task in ("verb", "noun")
                }
            )
        )
        self.classify = nn.ModuleDict(
            {task: classifier(d, n, cfg, dropout=False) for task, n in (("verb", verbs), ("noun", nouns))}
        )
        self.norm = nn.LayerNorm(d)

    def forward(self, trunk: dict[str, Any], return_attention: bool = False) -> dict[str, Any]:
        """tokens [B, N*, D*] -> {"verb": [B, V], "noun": [B, N], "action": [B, V * N]}."""
        tokens = torch.cat(
            [self.project[kind](x) + self.stream_embedding[kind] for kind, x in trunk["tokens"].items()], dim=1
        )
        branch = {task: self.queries[task].expand(tokens.shape[0], -1, -1) for task in ("verb", "noun")}
        branch = {task: q + self.read[task](q, tokens)[0] for task, q in branch.items()}  # [B, Q, d] each
        out: dict[str, Any] = {}
        if self.exchange is not None:
            (branch["verb"], branch["noun"]), weights = self.exchange(branch["verb"], branch["noun"], return_attention)
            if return_attention:
                out["cross_task"] = weights
        else:
            branch = {task: x + self.ffn[task](x) for task, x in branch.items()}
        for task in ("verb", "noun"):
            out[task] = self.classify[task](self.norm(branch[task]).mean(dim=1))
        out["action"] = action_scores(out["verb"], out["noun"])
        return out
