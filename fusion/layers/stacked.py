"""Layers holding K members' weights at once, for stepping K copies of one architecture as one model.

A stacked model runs on the K members' batches laid one after another along the batch axis ([K * B, ...],
member-major), so every layer that only sees one sample at a time (activations, means over tokens, attention
within a clip) runs unchanged; the layers here are those that hold weights or draw randomness. Each keeps the
parameter names of the layer it stacks (with a leading K axis), so a member's state maps to its slice by name.
Dropout is keyed (fusion/layers/keyed_dropout.py): each member's mask comes from a key drawn from that member's
own random state, where its layer alone draws it, and the K masks are hashed in one pass: a stacked member takes
the steps a lone run of it takes, up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fusion.layers.encoder import SelfAttention, attend
from fusion.layers.keyed_dropout import KeyedDropout, apply_masks, draw_key, keep_masks
from fusion.layers.positions import PositionEmbedding

# draw(p): each member's dropout key from its own random state, None where p[k] is 0 (nothing drawn, as alone).
# The training stack draws them.
Draw = Callable[[list[float]], list[int | None]]


def draw_in_turn(p: list[float]) -> list[int | None]:
    """`Draw` from the one global random state, member after member (a stacked model used outside training)."""
    return [draw_key() if q else None for q in p]


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
    """[K * B, ...] -> the same shape: member k's rows dropped at p[k] with the keyed mask its own layer draws
    alone; no key drawn where p is 0, as alone."""
    return with_keys(x, p, draw(p)) if any(p) else x


def with_keys(x: torch.Tensor, p: list[float], keys: list[int | None]) -> torch.Tensor:
    """[K * B, ...] -> the same shape: member k's rows dropped at p[k] with the mask of key k (None: p[k] is 0)."""
    keys = [0 if key is None else key for key in keys]
    return apply_masks(x, keep_masks(keys, x.numel() // len(p), p, x.device))


class StackedDropout(nn.Module):
    """K KeyedDropout, each its own rate: [K * B, ...] -> the same shape."""

    def __init__(self, members: list[KeyedDropout], draw: Draw):
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
    """K SelfAttention: x [K * B, L, D] -> [K * B, L, D], each member's attention weights dropped as alone."""

    def __init__(self, members: list[SelfAttention], draw: Draw):
        super().__init__()
        self.heads, self.p, self.draw = members[0].heads, [m.dropout for m in members], draw
        self.in_proj_weight = stacked_parameter([m.in_proj_weight for m in members])  # [K, 3D, D]
        self.in_proj_bias = stacked_parameter([m.in_proj_bias for m in members])  # [K, 3D]
        self.out_proj = StackedLinear([m.out_proj for m in members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [K * B, L, D] -> [K * B, L, D]."""
        n, length, dim = x.shape
        qkv = member_linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        drop = (lambda w: member_dropout(w, self.p, self.draw)) if self.training and any(self.p) else None
        return self.out_proj(attend(q, k, v, drop).transpose(1, 2).reshape(n, length, dim))
