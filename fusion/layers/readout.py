"""Attention readout: a learned query attends a stream's tokens, as the field's attentive probes do. A mean over
tokens weighs every token alike, so a small object (a few of a clip's 392 per-frame patches) barely moves it;
a query can pick those tokens out."""

from __future__ import annotations

import torch
from torch import nn

from fusion.layers.attention import CrossAttention
from fusion.layers.encoder import Encoder, EncoderLayer
from fusion.layers.keyed_dropout import KeyedDropout

MLP_RATIO = 4  # hidden width of the probe blocks' MLPs, as V-JEPA 2's pooler


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


class ProbeReadout(nn.Module):
    """V-JEPA 2's frozen-evaluation probe (its attentive pooler): `blocks` pre-norm self-attention blocks over
    the tokens, then a cross-attention block whose one learned query reads them out (attention, then a residual
    MLP on the query)."""

    def __init__(self, dim: int, heads: int, blocks: int, dropout: float):
        super().__init__()
        self.blocks = Encoder(EncoderLayer(dim, heads, MLP_RATIO * dim, dropout), blocks)
        self.readout = AttentionReadout(dim, heads)
        self.mlp = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, MLP_RATIO * dim), nn.GELU(), KeyedDropout(dropout),
            nn.Linear(MLP_RATIO * dim, dim),
        )  # fmt: skip

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: [B, N, D] -> [B, D]."""
        query = self.readout(self.blocks(tokens))
        return query + self.mlp(query)
