"""Keyed dropout: the mask is a hash of one key and each element's index, the key drawn from the host random
state (one integer a call). So a mask is the same on any device and in any memory layout, and K stacked sweep
members (fusion/layers/stacked.py) draw their K masks in one pass over [K, n] with their own K keys: exactly
the masks each draws alone. Every layer with a stacked form uses it (the verb/noun cross-task heads, which
have none, keep torch's dropout).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

# lowbias32's multipliers (an integer hash with near-ideal avalanche) as int32: torch has no uint32 shifts
_M1, _M2 = 0x7FEB352D, 0x846CA68B - (1 << 32)
_KEYS = 1 << 31


def _mix(x: torch.Tensor, last_shift: bool = True) -> torch.Tensor:
    """lowbias32 of int32 values, in place; the masks make the right shifts logical. Without `last_shift` its
    final xorshift is left out: it only moves high bits into low ones, and the masks compare whole values."""
    x.bitwise_xor_((x >> 16).bitwise_and_(0xFFFF))
    x.mul_(_M1)
    x.bitwise_xor_((x >> 15).bitwise_and_(0x1FFFF))
    x.mul_(_M2)
    return x.bitwise_xor_((x >> 16).bitwise_and_(0xFFFF)) if last_shift else x


@functools.lru_cache(maxsize=32)
def _index_hashes(n: int, device: torch.device) -> torch.Tensor:
    """[n] hashed element indices (a layer's sizes repeat every step: hashed once)."""
    if n >= _KEYS:
        raise ValueError(f"keyed dropout: {n} elements in one member's tensor; at most {_KEYS - 1}")
    return _mix(torch.arange(n, dtype=torch.int32, device=device))


@functools.lru_cache(maxsize=64)
def _rates(p: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[K, 1] int32 thresholds (a hash, read as a signed 32-bit number, at or above its threshold keeps the
    element: probability 1 - p) and [K, 1] fp32 scales 1 / (1 - p): in bf16 the scale itself would be off by up
    to 0.3% (1 / 0.85 -> 1.1797 for 1.1765), so every kept element's expected value too."""
    thresholds = torch.tensor([round(q * (1 << 32)) - (1 << 31) for q in p], dtype=torch.int32, device=device)
    scales = torch.tensor([1 / (1 - q) for q in p], dtype=torch.float32, device=device)
    return thresholds.view(-1, 1), scales.view(-1, 1)


def draw_key(generator: torch.Generator | None = None) -> int:
    """One mask's key, from `generator` or the global host random state (a run's, checkpointed with it)."""
    return int(torch.randint(_KEYS, (), generator=generator))


def keep_masks(keys: list[int], n: int, p: list[float], device: torch.device) -> torch.Tensor:
    """[K, n] fp32 masks on `device`: row k keeps element i, scaled by 1 / (1 - p[k]), where
    lowbias32(lowbias32(i) ^ key k) (its last xorshift left out), read as a signed 32-bit number, is at least
    p[k] * 2**32 - 2**31; a row with p 0 keeps everything."""
    index = _index_hashes(n, device)
    keyed = index ^ (keys[0] if len(keys) == 1 else torch.tensor(keys, dtype=torch.int32).view(-1, 1).to(device))
    thresholds, scales = _rates(tuple(p), device)
    return (_mix(keyed.view(len(keys), n), last_shift=False) >= thresholds) * scales


def apply_masks(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """x times its masks (viewed to x's shape), computed in fp32 and rounded once to x's dtype, as CUDA's fused
    dropout scales: x -> x's shape and dtype."""
    return (x * masks.view(x.shape)).to(x.dtype)


def keyed_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout with a keyed mask (one key drawn from the global host random state): x -> x's shape."""
    if not training or not p:
        return x
    return apply_masks(x, keep_masks([draw_key()], x.numel(), [p], x.device))


class KeyedDropout(nn.Module):
    """nn.Dropout with a keyed mask: [...] -> the same shape."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout rate {p}: expected 0 <= p < 1")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return keyed_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
