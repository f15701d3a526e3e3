"""Layers holding K members' weights at once, for stepping K copies of one architecture as one model.

A stacked model runs on the K members' batches laid one after another along the batch axis ([K * B, ...],
member-major), so every layer that only sees one sample at a time (activations, means over tokens, attention
within a clip) runs unchanged; the layers here are those that hold weights or draw randomness. Each keeps the
parameter names of the layer it stacks (with a leading K axis), so a member's state maps to its slice by name.
Dropout draws each member's mask from that member's own random state, in the shape and order the member's
layer draws it alone: a stacked member takes the steps a lone run of it takes, up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fusion.layers.positions import PositionEmbedding

# draw(parts, p): each member's Bernoulli(1 - p[k]) mask laid out in memory as parts[k] (torch.empty_like), from
# member k's own random state; None where p[k] is 0 (nothing drawn, as alone). The training stack draws them.
Draw = Callable[[list[torch.Tensor], list[float]], list[torch.Tensor | None]]


def draw_in_turn(parts: list[torch.Tensor], p: list[float]) -> list[torch.Tensor | None]:
    """`Draw` from the one global random state, member after member (a stacked model used outside training)."""
    return [torch.empty_like(part).bernoulli_(1 - q) if q else None for part, q in zip(parts, p)]


def stacked_parameter(members: list[torch.Tensor]) -> nn.Parameter:
    return nn.Parameter(torch.stack([m.detach() for m in members]).clone())


def member_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """[K * B, ..., in] through K members' weight [K, out, in] and bias [K, out] -> [K * B, ..., out]."""
    rows, weight = x.reshape(weight.shape[0], -1, x.shape[-1]), weight.transpose(1, 2)
    out = rows @ weight if bias is None else torch.baddbmm(bias.unsqueeze(1), rows, weight)
    return out.reshape(*x.shape[:-1], out.shape[-1])


class StackedLinear(nn.Module):
    """K nn.Linear: [K * B, ..., in] -> [K * B, ..., out], member k's rows through member k's weights."""

    def __init__(self, members: list[nn.Linear]):
        super().__init__()
        self.weight = stacked_parameter([m.weight for m in members])  # [K, out, in]
        self.bias = None if members[0].bias is None else stacked_parameter([m.bias for m in members])  # [K, out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return member_linear(x, self.weight, self.bias)


class StackedLayerNorm(nn.Module):
    """K nn.LayerNorm over the last axis: [K * B, ..., D] -> the same shape."""

    def __init__(self, members: list[nn.LayerNorm]):
        super().__init__()
        first = members[0]
        if len(first.normalized_shape) != 1 or not first.elementwise_affine:
            raise NotImplementedError("stacking: only affine LayerNorms over the last axis")
        self.normalized_shape, self.eps = first.normalized_shape, first.eps
        self.weight = stacked_parameter([m.weight for m in members])  # [K, D]
        self.bias = None if first.bias is None else stacked_parameter([m.bias for m in members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.weight.shape[0]
        normed = F.layer_norm(x, self.normalized_shape, None, None, self.eps).reshape(k, -1, x.shape[-1])
        out = normed * self.weight.unsqueeze(1)
        return (out if self.bias is None else out + self.bias.unsqueeze(1)).reshape(x.shape)


def member_dropout(x: torch.Tensor, p: list[float], draw: Draw) -> torch.Tensor:
    """[K * B, ...] -> the same shape: member k's rows dropped at p[k], with the mask its own layer would draw
    alone: a Bernoulli tensor laid out in memory as its rows are (`empty_like`, as F.dropout draws it: the
    layout decides which element each draw lands on), scaled by 1 / (1 - p); no draw where p is 0, as alone."""
    if not any(p):
        return x
    rows = x.shape[0] // len(p)
    parts = [x[k * rows : (k + 1) * rows] for k in range(len(p))]
    masks = draw(parts, p)
    return x * torch.cat([torch.ones_like(part) if mask is None else mask.div_(1 - q)
                          for part, mask, q in zip(parts, masks, p)])  # fmt: skip


class StackedDropout(nn.Module):
    """K nn.Dropout, each its own rate: [K * B, ...] -> the same shape."""

    def __init__(self, members: list[nn.Dropout], draw: Draw):
        super().__init__()
        self.p, self.draw = [m.p for m in members], draw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return member_dropout(x, self.p, self.draw) if self.training else x


class StackedPositionEmbedding(PositionEmbedding):
    """K PositionEmbedding (one table, K gains): [K * B, N, D] -> the same shape."""

    def __init__(self, members: list[PositionEmbedding]):
        super().__init__(members[0].gain.shape[-1], members[0].grid)
        self.gain = stacked_parameter([m.gain for m in members])  # [K, D]

    def forward(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        k, tokens = self.gain.shape[0], x.shape[1]
        placed = self.table(tokens, x.device, frames) * self.gain.unsqueeze(1)  # [K, N, D]
        return (x.reshape(k, -1, tokens, x.shape[-1]) + placed.unsqueeze(1).to(x.dtype)).reshape(x.shape)


class StackedSelfAttention(nn.Module):
    """K batch-first nn.MultiheadAttention used as self-attention (as nn.TransformerEncoderLayer calls it):
    x [K * B, L, D] -> ([K * B, L, D], None). Attention dropout is drawn per member as the fused kernel's
    reference computation draws it alone: on the softmax weights [B, H, L, L]. The output is laid out in memory
    length-major, as nn.MultiheadAttention's is, so the dropout after it draws the masks it draws alone."""

    # read by nn.TransformerEncoder(Layer) before it picks a path: batch-first, and never the fused inference path
    batch_first, _qkv_same_embed_dim = True, False

    def __init__(self, members: list[nn.MultiheadAttention], draw: Draw):
        super().__init__()
        first = members[0]
        if not (first.batch_first and first._qkv_same_embed_dim and first.bias_k is None and first.in_proj_bias
                is not None):  # fmt: skip
            raise NotImplementedError("stacking: only batch-first self-attention with packed, biased projections")
        self.heads, self.p, self.draw = first.num_heads, [m.dropout for m in members], draw
        self.in_proj_weight = stacked_parameter([m.in_proj_weight for m in members])  # [K, 3D, D]
        self.in_proj_bias = stacked_parameter([m.in_proj_bias for m in members])  # [K, 3D]
        self.out_proj = StackedLinear([m.out_proj for m in members])

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: None = None,
                key_padding_mask: None = None, need_weights: bool = False,
                is_causal: bool = False) -> tuple[torch.Tensor, None]:  # fmt: skip
        """query = key = value: [K * B, L, D] -> ([K * B, L, D], None)."""
        if attn_mask is not None or key_padding_mask is not None or need_weights or is_causal or key is not query:
            raise NotImplementedError("stacked self-attention takes no masks and returns no weights")
        n, length, dim = query.shape
        qkv = member_linear(query, self.in_proj_weight, self.in_proj_bias)
        q, kk, v = qkv.reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        if self.training and any(self.p):
            weights = (q @ kk.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)
            out = member_dropout(weights, self.p, self.draw) @ v
        else:
            out = F.scaled_dot_product_attention(q, kk, v)
        out = self.out_proj(out.transpose(1, 2).reshape(n, length, dim))
        return out.transpose(0, 1).contiguous().transpose(0, 1), None
