"""Where a token sits: sinusoidal positions of the patch grid (2-D; frame, row and column on per-frame tokens)
or of the segments in time (1-D), scaled per channel by a learned gain. Without them every trunk is blind to
order: graph attention, cross-attention and mean pooling all give a clip and its time-reversal the same output."""

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


def space_time_sinusoid(tokens: int, frames: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """-> [tokens, dim] for `frames` equal square grids, frame-major. Each channel pair is a sinusoid of one
    direction through (frame, row, column), at the wavelengths of `sinusoid`: every channel mixes time and place.
    A code with separate time and place channels would not do: summed over the tokens an object covers (graph
    attention and mean pooling sum), it keeps where the object was and when, but not where it was when, which
    is what a direction of motion is. The directions are fixed (seed 0), so the table is the same everywhere."""
    per_frame = tokens // frames
    side = math.isqrt(per_frame)
    frame = torch.arange(frames, dtype=torch.float32).repeat_interleave(per_frame)
    place = torch.arange(per_frame)
    coordinates = torch.stack([frame, (place // side).float().repeat(frames), (place % side).float().repeat(frames)])
    directions = torch.nn.functional.normalize(
        torch.randn(3, (dim + 1) // 2, generator=torch.Generator().manual_seed(0)), dim=0
    )
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angle = (coordinates.T @ directions) * frequency  # [tokens, ceil(dim / 2)]
    table = torch.zeros(tokens, dim)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return table.to(device)


class PositionEmbedding(nn.Module):
    """x + positions * gain. The table is sized from the tokens given (any cache's counts); the per-channel gain
    starts at 1 and is learned, so a model can weigh where against what."""

    def __init__(self, dim: int, grid: bool):
        super().__init__()
        self.grid = grid
        self.gain = nn.Parameter(torch.ones(dim))
        self._tables: dict[tuple[int, int, str], torch.Tensor] = {}

    def table(self, tokens: int, device: torch.device, frames: int = 1) -> torch.Tensor:
        key = (tokens, frames, str(device))
        if key not in self._tables:  # built once per token count and device, on the device
            dim = self.gain.shape[-1]
            if frames > 1:
                self._tables[key] = space_time_sinusoid(tokens, frames, dim, device)
            else:
                self._tables[key] = (grid_sinusoid if self.grid else sinusoid)(tokens, dim, device)
        return self._tables[key]

    def forward(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        """x: [B, N, D] -> [B, N, D]; `frames` > 1: the N tokens are that many frames' grids, frame-major."""
        return x + (self.table(x.shape[1], x.device, frames) * self.gain).to(x.dtype)
