"""Stacked forms of the cross-stream models' attention layers (cross-attention, attention readouts, graph
attention): K members' weights at once over their batches laid end to end ([K * B, ...], member-major), as
fusion/layers/stacked.py does for the transformer's layers. Each keeps its layer's parameter names (with a
leading K axis) and draws each member's dropout key where that member's layer alone draws it.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from fusion.layers.attention import CrossAttention
from fusion.layers.encoder import attend
from fusion.layers.graph_attention import DenseGraphAttention
from fusion.layers.readout import AttentionReadout
from fusion.layers.stacked import (
    Draw,
    StackedLayerNorm,
    StackedLinear,
    member_dropout,
    member_linear,
    stacked_parameter,
    with_keys,
)


class StackedCrossAttention(nn.Module):
    """K CrossAttention: queries [K * B, Nq, D], context [K * B, Nk, Dk] -> ([K * B, Nq, D], None)."""

    def __init__(self, members: list[CrossAttention], draw: Draw):
        super().__init__()
        self.heads, self.p, self.draw = members[0].heads, [m.dropout for m in members], draw
        for name in ("q", "k", "v", "out"):
            setattr(self, name, StackedLinear([getattr(m, name) for m in members]))

    def forward(
        self, queries: torch.Tensor, context: torch.Tensor, return_attention: bool = False
    ) -> tuple[torch.Tensor, None]:
        """queries: [K * B, Nq, D], context: [K * B, Nk, Dk] -> ([K * B, Nq, D], None): a stacked model trains
        and validates; its members' own layers hand back attention weights."""
        if return_attention:
            raise NotImplementedError("a stacked model does not hand back attention weights")
        q, k, v = (
            rearrange(proj(x), "b n (h c) -> b h n c", h=self.heads)
            for proj, x in ((self.q, queries), (self.k, context), (self.v, context))
        )
        drop = (lambda w: member_dropout(w, self.p, self.draw)) if self.training and any(self.p) else None
        return self.out(rearrange(attend(q, k, v, drop), "b h n c -> b n (h c)")), None


class StackedAttentionReadout(nn.Module):
    """K AttentionReadout: tokens [K * B, N, D] -> [K * B, D], member k's rows read by member k's query."""

    def __init__(self, members: list[AttentionReadout], draw: Draw):
        super().__init__()
        self.query = stacked_parameter([m.query for m in members])  # [K, 1, 1, D]
        self.norm = StackedLayerNorm([m.norm for m in members])
        self.attend = StackedCrossAttention([m.attend for m in members], draw)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: [K * B, N, D] -> [K * B, D]."""
        k = self.query.shape[0]
        queries = self.query.expand(-1, tokens.shape[0] // k, -1, -1).reshape(tokens.shape[0], 1, -1)
        pooled, _ = self.attend(queries, self.norm(tokens))
        return pooled[:, 0]


class StackedGraphAttention(nn.Module):
    """K DenseGraphAttention: x [K * B, N, D], adj [K * B, N, N] -> ([K * B, N, D], None); recomputed in
    backward as each member's layer is, with each member's dropout key drawn once, before (a recomputation must
    not draw again)."""

    def __init__(self, members: list[DenseGraphAttention], draw: Draw):
        super().__init__()
        first = members[0]
        self.heads, self.negative_slope, self.p, self.draw = first.heads, first.negative_slope, [
            m.dropout for m in members], draw  # fmt: skip
        self.att_src = stacked_parameter([m.att_src for m in members])  # [K, 1, 1, H, C]
        self.att_dst = stacked_parameter([m.att_dst for m in members])
        self.bias = stacked_parameter([m.bias for m in members])  # [K, D]
        self.lin = StackedLinear([m.lin for m in members])

    def forward(
        self, x: torch.Tensor, adj: torch.Tensor, return_attention: bool = False, prenorm: nn.Module | None = None
    ) -> tuple[torch.Tensor, None]:
        """x: [K * B, N, D], adj: [K * B, N, N] bool -> ([K * B, N, D], None)."""
        if return_attention:
            raise NotImplementedError("a stacked model does not hand back attention weights")
        keys = self.draw(self.p) if self.training and any(self.p) else None
        if torch.is_grad_enabled():
            return checkpoint(self._attend, x, adj, prenorm, keys, use_reentrant=False), None
        return self._attend(x, adj, prenorm, keys), None

    def _attend(
        self, x: torch.Tensor, adj: torch.Tensor, prenorm: nn.Module | None, keys: list[int | None] | None
    ) -> torch.Tensor:
        """DenseGraphAttention._attend, member k's rows with member k's weights."""
        k = self.att_src.shape[0]
        x = prenorm(x) if prenorm is not None else x
        h = rearrange(member_linear(x, self.lin.weight, None), "(k b) n (h c) -> k b n h c", k=k, h=self.heads)
        src = rearrange((h * self.att_src).sum(-1), "k b n h -> (k b) h 1 n")
        dst = rearrange((h * self.att_dst).sum(-1), "k b n h -> (k b) h n 1")
        scores = torch.nn.functional.leaky_relu(src + dst, self.negative_slope)
        scores = scores.masked_fill(~adj.unsqueeze(1), torch.finfo(scores.dtype).min)
        attention = scores.softmax(dim=-1)
        if keys is not None:
            attention = with_keys(attention, self.p, keys)
        out = rearrange(attention @ rearrange(h, "k b n h c -> (k b) h n c"), "(k b) h n c -> k b n (h c)", k=k)
        return rearrange(out + self.bias[:, None, None], "k b n d -> (k b) n d")
