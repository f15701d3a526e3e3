"""A pre-norm transformer encoder with keyed dropout (fusion/layers/keyed_dropout.py): the layers of
nn.TransformerEncoder(Layer) (batch first, norm first, GELU) under their parameter names, built in the same
order from the random state (so a seed gives the weights it gave them, and their checkpoints load), with every
dropout mask, the attention weights' included, drawn as a stacked sweep member draws it (fusion/layers/stacked.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fusion.layers.keyed_dropout import KeyedDropout, keyed_dropout


class SelfAttention(nn.Module):
    """nn.MultiheadAttention as self-attention (packed, biased projections): x [B, L, D] -> [B, L, D], dropout on
    the attention weights."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"self-attention: width {dim} is not a multiple of {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)  # after out_proj's draws, as nn.MultiheadAttention
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D] -> [B, L, D]."""
        n, length, dim = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        drop = (lambda w: keyed_dropout(w, self.dropout)) if self.training and self.dropout else None
        return self.out_proj(attend(q, k, v, drop).transpose(1, 2).reshape(n, length, dim))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           drop: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:  # fmt: skip
    """q, k, v: [B, H, L, Dh] -> [B, H, L, Dh]. With `drop` (attention weights -> dropped weights) the weights
    are formed for it to draw their mask; without, the fused kernel runs."""
    if drop is None:
        return F.scaled_dot_product_attention(q, k, v)
    return drop((q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)) @ v


class EncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer(norm_first=True, activation="gelu", batch_first=True): [B, L, D] -> [B, L, D]."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.self_attn = SelfAttention(dim, heads, dropout)
        self.linear1 = nn.Linear(dim, hidden)
        self.dropout = KeyedDropout(dropout)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout1, self.dropout2 = KeyedDropout(dropout), KeyedDropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D] -> [B, L, D]."""
        x = x + self.dropout1(self.self_attn(self.norm1(x)))
        return x + self.dropout2(self.linear2(self.dropout(F.gelu(self.linear1(self.norm2(x))))))


class Encoder(nn.Module):
    """nn.TransformerEncoder: `layers` copies of one freshly built layer (as it, all start equal): [B, L, D] ->
    [B, L, D]."""

    def __init__(self, layer: EncoderLayer, layers: int):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D] -> [B, L, D]."""
        for layer in self.layers:
            x = layer(x)
        return x
