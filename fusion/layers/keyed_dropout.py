"""Keyed dropout: the mask is a hash of one key and each element's index, the key drawn from the host random
state (one integer a call). So a mask is the same on any device and in any memory layout, and K stacked sweep
members (fusion/layers/stacked.py) draw their K masks in one pass over [K, n] with their own K keys: exactly
the masks each draws alone. The layers with a stacked form use it; the others keep torch's dropout.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

# lowbias32 (an integer hash with near-ideal avalanche), its multipliers as int32: torch has no uint32 shifts
_M1, _M2 = 0x7FEB352D, 0x846CA68B - (1 << 32)
_BITS = 24  # an element is dropped when 24 bits of its hash fall below p * 2**24
_KEYS = 1 << 31


def _mix(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 of int32 values, in place; the masks make the right shifts logical."""
    x.bitwise_xor_((x >> 16).bitwise_and_(0xFFFF))
    x.mul_(_M1)
    x.bitwise_xor_((x >> 15).bitwise_and_(0x1FFFF))
    x.mul_(_M2)
    return x.bitwise_xor_((x >> 16).bitwise_and_(0xFFFF))


@functools.lru_cache(maxsize=32)
def _index_hashes(n: int, device: torch.device) -> torch.Tensor:
    """[n] hashed element indices (a layer's sizes repeat every step: hashed once)."""
    if n >= _KEYS:
        raise ValueError(f"keyed dropout: {n} elements in one member's tensor; at most {_KEYS - 1}")
    return _mix(torch.arange(n, dtype=torch.int32, device=device))


def draw_key(generator: torch.Generator | None = None) -> int:
    """One mask's key, from `generator` or the global host random state (a run's, checkpointed with it)."""
    return int(torch.randint(_KEYS, (), generator=generator))


def keep_masks(keys: list[int], n: int, p: list[float], like: torch.Tensor) -> torch.Tensor:
    """[K, n] masks in `like`'s dtype and device: row k keeps element i, scaled by 1 / (1 - p[k]), unless
    hash(key k, i) falls below p[k]; a row with p 0 keeps everything."""
    hashed = _mix(_index_hashes(n, like.device) ^ torch.tensor(keys, dtype=torch.int32).view(-1, 1).to(like.device))
    rows = [(round(q * (1 << _BITS)), 1 / (1 - q)) for q in p]
    thresholds = torch.tensor([t for t, _ in rows], dtype=torch.int32).view(-1, 1).to(like.device)
    scales = torch.tensor([s for _, s in rows], dtype=like.dtype).view(-1, 1).to(like.device)
    return (hashed.bitwise_and_((1 << _BITS) - 1) >= thresholds) * scales


def keyed_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout with a keyed mask (one key drawn from the global host random state): x -> x's shape."""
    if not training or not p:
        return x
    return x * keep_masks([draw_key()], x.numel(), [p], x).view(x.shape)


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
