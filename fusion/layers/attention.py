"""Multi-head cross-attention that can hand back its weights (for visualisation and tests).

Every attention layer of `fusion/layers` returns one type: (its output(s), its attention weights or None).
Dropout on the attention weights is keyed (fusion/layers/keyed_dropout.py), as a stacked sweep member draws it
(fusion/layers/stacked_attention.py).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from fusion.layers.encoder import attend
from fusion.layers.keyed_dropout import keyed_dropout


class CrossAttention(nn.Module):
    """Queries of width `dim` attend keys/values of width `kv_dim`; inner width `dim`, `heads` heads."""

    def __init__(self, dim: int, heads: int = 8, kv_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        kv_dim = kv_dim or dim
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(kv_dim, dim), nn.Linear(kv_dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(
        self, queries: torch.Tensor, context: torch.Tensor, return_attention: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """queries: [B, Nq, D], context: [B, Nk, Dk] -> ([B, Nq, D], weights [B, H, Nq, Nk] when asked, else None)."""
        q, k, v = (
            rearrange(proj(x), "b n (h c) -> b h n c", h=self.heads)
            for proj, x in ((self.q, queries), (self.k, context), (self.v, context))
        )
        drop = (lambda w: keyed_dropout(w, self.dropout)) if self.training and self.dropout else None
        if not return_attention:  # fused kernel on GPU where nothing is dropped
            return self.out(rearrange(attend(q, k, v, drop), "b h n c -> b n (h c)")), None
        weights = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)
        weights = weights if drop is None else drop(weights)
        return self.out(rearrange(weights @ v, "b h n c -> b n (h c)")), weights
