"""Attention readout: a learned query attends a stream's tokens, as the field's attentive probes do. A mean over
tokens weighs every token alike, so a small object (a few of a clip's 392 per-frame patches) barely moves it;
a query can pick those tokens out."""

from __future__ import annotations

import torch
from torch import nn

from fusion.layers.attention import CrossAttention


class AttentionReadout(nn.Module):
    def __init__(self, dim: int, heads: int = 8):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.attend = CrossAttention(dim, heads)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: [B, N, D] -> [B, D]."""
        pooled, _ = self.attend(self.query.expand(tokens.shape[0], -1, -1), self.norm(tokens))
        return pooled[:, 0]
