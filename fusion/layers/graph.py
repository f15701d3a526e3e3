"""Node positions and adjacency for the patch graph (14x14 grid; frames x grid on per-frame caches) and the
segment graph (8 segments).

Adjacency is boolean `[B, N, N]`, `adj[b, i, j]` True when node i attends node j, built per sample and
batched, always with self-loops (a row with no True would make the softmax NaN). Sizes come from the input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def generate_spatial_positions(num_patches: int = 196) -> torch.Tensor:
    """-> [N, 2] (row, column) of each patch of a square, row-major grid."""
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f"{num_patches} patches do not form a square grid")
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=1).float()


def generate_space_time_positions(num_tokens: int, frames: int) -> torch.Tensor:
    """-> [F * P, 3] (frame, row, column) of each patch of `frames` square grids, frame-major."""
    if num_tokens % frames:
        raise ValueError(f"{num_tokens} tokens do not split into {frames} frames")
    grid = generate_spatial_positions(num_tokens // frames)
    frame = torch.arange(frames, dtype=torch.float32).repeat_interleave(len(grid)).unsqueeze(1)
    return torch.cat([frame, grid.repeat(frames, 1)], dim=1)


def generate_temporal_positions(num_segments: int = 8) -> torch.Tensor:
    """-> [T, 1] index of each temporal segment (i3d_r50 turns 16 frames into 8 segments of 2 frames)."""
    return torch.arange(num_segments, dtype=torch.float32).unsqueeze(1)


def _similar(features: torch.Tensor, threshold: float) -> torch.Tensor:
    """features: [B, N, D] -> [B, N, N] cosine similarity above `threshold` (no gradient: structure only).

    In fp32 even under autocast (which would run the matmul in bf16/fp16): edges near the threshold must not
    depend on the device or precision a model is trained or evaluated with."""
    with torch.autocast(features.device.type, enabled=False):
        unit = F.normalize(features.detach().float(), dim=-1)
        return unit @ unit.transpose(1, 2) > threshold


def _with_self_loops(adj: torch.Tensor) -> torch.Tensor:
    return adj | torch.eye(adj.shape[-1], dtype=torch.bool, device=adj.device)


def near_or_similar(near: torch.Tensor, features: torch.Tensor, similarity_threshold: float) -> torch.Tensor:
    """near: [N, N] fixed neighbourhood, features: [B, N, D] -> [B, N, N]: near OR similar, with self-loops."""
    return _with_self_loops(near.unsqueeze(0) | _similar(features, similarity_threshold))


def spatial_neighbours(positions: torch.Tensor, radius: float) -> torch.Tensor:
    """positions: [N, 2] -> [N, N] grid neighbours within `radius`."""
    return torch.cdist(positions, positions) <= radius


def space_time_neighbours(positions: torch.Tensor, radius: float, frame_window: int) -> torch.Tensor:
    """positions: [N, 3] (frame, row, column) -> [N, N]: grid neighbours within `radius` in frames at most
    `frame_window` apart (the same patch in a neighbouring frame included)."""
    near_in_space = torch.cdist(positions[:, 1:], positions[:, 1:]) <= radius
    near_in_time = torch.cdist(positions[:, :1], positions[:, :1]) <= frame_window
    return near_in_space & near_in_time


def temporal_neighbours(positions: torch.Tensor, adjacency_window: int) -> torch.Tensor:
    """positions: [T, 1] -> [T, T] segments within `adjacency_window` of each other."""
    return torch.cdist(positions, positions) <= adjacency_window


def build_spatial_graph(
    positions: torch.Tensor, features: torch.Tensor, similarity_threshold: float = 0.8, radius: float = 1.5
) -> torch.Tensor:
    """positions: [N, 2], features: [B, N, D] -> [B, N, N]: grid neighbours within `radius` OR similar patches."""
    return near_or_similar(spatial_neighbours(positions, radius), features, similarity_threshold)


def build_temporal_graph(
    positions: torch.Tensor, features: torch.Tensor, adjacency_window: int = 2, similarity_threshold: float = 0.8
) -> torch.Tensor:
    """positions: [T, 1], features: [B, T, D] -> [B, T, T]: |i - j| <= window OR similar segments."""
    return near_or_similar(temporal_neighbours(positions, adjacency_window), features, similarity_threshold)
