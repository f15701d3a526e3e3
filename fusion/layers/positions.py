"""Where a token sits: sinusoidal positions of the patch grid (2-D) or of the segments in time (1-D), scaled
per channel by a learned gain. Without them every trunk is blind to order: graph attention, cross-attention
and mean pooling all give a clip and its time-reversal the same output."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoid(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """-> [length, dim]: sin on even channels, cos on odd, wavelengths from 2*pi to 10000*2*pi."""
    position = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


def grid_sinusoid(tokens: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """-> [tokens, dim] for a square, row-major grid: half the channels encode the row, half the column.
    Token counts that are not a square fall back to 1-D positions."""
    side = math.isqrt(tokens)
    if side * side != tokens or dim < 4:
        return sinusoid(tokens, dim, device)
    rows, cols = sinusoid(side, dim // 2, device), sinusoid(side, dim - dim // 2, device)
    return torch.cat([rows.repeat_interleave(side, dim=0), cols.repeat(side, 1)], dim=1)


class PositionEmbedding(nn.Module):
    """x + positions * gain. The table is sized from the tokens given (any cache's counts); the per-channel gain
    starts at 1 and is learned, so a model can weigh where against what."""

    def __init__(self, dim: int, grid: bool):
        super().__init__()
        self.grid = grid
        self.gain = nn.Parameter(torch.ones(dim))
        self._tables: dict[tuple[int, str], torch.Tensor] = {}

    def table(self, tokens: int, device: torch.device) -> torch.Tensor:
        key = (tokens, str(device))
        if key not in self._tables:  # built once per token count and device, on the device
            make = grid_sinusoid if self.grid else sinusoid
            self._tables[key] = make(tokens, self.gain.shape[0], device)
        return self._tables[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, D] -> [B, N, D]."""
        return x + (self.table(x.shape[1], x.device) * self.gain).to(x.dtype)
