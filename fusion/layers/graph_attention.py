"""Dense masked multi-head graph attention (GATv1, as torch_geometric's DenseGATConv) and its two uses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from fusion.layers.graph import (
    generate_space_time_positions,
    generate_spatial_positions,
    generate_temporal_positions,
    near_or_similar,
    space_time_neighbours,
    spatial_neighbours,
    temporal_neighbours,
)
from fusion.layers.keyed_dropout import keyed_dropout


class DenseGraphAttention(nn.Module):
    """GAT on a dense boolean adjacency: e_ij = LeakyReLU(a_src . W x_j + a_dst . W x_i), softmax over j in N(i)."""

    def __init__(self, dim: int, heads: int = 8, dropout: float = 0.0, negative_slope: float = 0.2):
        super().__init__()
        if dim % heads:
            raise ValueError(f"graph attention width {dim} is not divisible by {heads} heads")
        self.heads, self.dropout, self.negative_slope = heads, dropout, negative_slope
        self.lin = nn.Linear(dim, dim, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, 1, heads, dim // heads))
        self.att_dst = nn.Parameter(torch.empty(1, 1, heads, dim // heads))
        self.bias = nn.Parameter(torch.zeros(dim))
        nn.init.xavier_uniform_(self.lin.weight)
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)

    def forward(
        self, x: torch.Tensor, adj: torch.Tensor, return_attention: bool = False, prenorm: nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [B, N, D], adj: [B, N, N] bool -> ([B, N, D], attention [B, H, N, N] when asked, else None).

        While gradients are recorded and the weights are not asked for, the [B, H, N, N] scores and weights are
        recomputed in backward instead of being held from forward to backward (they dominate a training step's
        memory: 196 patches give 8 x 196 x 196 per clip); outputs and gradients are the same. `prenorm` (a
        block's LayerNorm) is applied to x first, inside the recomputed part: its [B, N, D] output is not held
        either, for no extra matmul."""
        if torch.is_grad_enabled() and not return_attention:
            return checkpoint(self._output, x, adj, prenorm, use_reentrant=False), None
        out, attention = self._attend(x, adj, prenorm)
        return out, attention if return_attention else None

    def _output(self, x: torch.Tensor, adj: torch.Tensor, prenorm: nn.Module | None) -> torch.Tensor:
        return self._attend(x, adj, prenorm)[0]

    def _attend(
        self, x: torch.Tensor, adj: torch.Tensor, prenorm: nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = prenorm(x) if prenorm is not None else x
        h = rearrange(self.lin(x), "b n (h c) -> b n h c", h=self.heads)
        src = rearrange((h * self.att_src).sum(-1), "b n h -> b h 1 n")
        dst = rearrange((h * self.att_dst).sum(-1), "b n h -> b h n 1")
        scores = F.leaky_relu(src + dst, self.negative_slope)
        # finfo.min rather than -inf: stays finite under fp16/bf16; self-loops keep every row non-empty.
        scores = scores.masked_fill(~adj.unsqueeze(1), torch.finfo(scores.dtype).min)
        # keyed: under checkpoint the recomputation draws the same key (the random state is restored for it)
        attention = keyed_dropout(scores.softmax(dim=-1), self.dropout, self.training)
        out = attention @ rearrange(h, "b n h c -> b h n c")
        return rearrange(out, "b h n c -> b n (h c)") + self.bias, attention


class _GraphBlock(nn.Module):
    """Pre-norm graph attention with a residual: x + GAT(LN(x), graph(x))."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attention = DenseGraphAttention(dim, heads, dropout)
        self._near: dict[tuple[int, str], torch.Tensor] = {}

    def neighbours(self, tokens: int, frames: int) -> torch.Tensor:
        """[N, N] bool: the fixed neighbourhood of `tokens` nodes (`frames`: how many frames they span)."""
        raise NotImplementedError

    def graph(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        """x: [B, N, D] -> [B, N, N]: the fixed neighbourhood (built once per size and device, kept on the
        device: no host work per step) OR similar features."""
        key = (x.shape[1], frames, str(x.device))
        if key not in self._near:
            self._near[key] = self.neighbours(x.shape[1], frames).to(x.device)
        return near_or_similar(self._near[key], x, self.similarity_threshold)

    def forward(
        self, x: torch.Tensor, return_attention: bool = False, edges_from: torch.Tensor | None = None, frames: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [B, N, D] -> ([B, N, D], attention [B, H, N, N] when asked, else None). The graph is built from
        `edges_from` when given (the features before position embeddings were added: positions must not make
        or break similarity edges), else from x; `frames` > 1: the N tokens are that many frames' grids."""
        out, attention = self.attention(
            x, self.graph(x if edges_from is None else edges_from, frames), return_attention, prenorm=self.norm
        )
        return x + out, attention


class SemanticGraphAttention(_GraphBlock):
    """Patches attend their grid neighbours and the patches whose features are similar; on per-frame tokens,
    also the same and neighbouring patches of frames within `frame_window`."""

    def __init__(
        self,
        dim: int = 768,
        heads: int = 8,
        dropout: float = 0.0,
        similarity_threshold: float = 0.8,
        radius: float = 1.5,
        frame_window: int = 1,
    ):
        super().__init__(dim, heads, dropout)
        self.similarity_threshold, self.radius, self.frame_window = similarity_threshold, radius, frame_window

    def neighbours(self, tokens: int, frames: int) -> torch.Tensor:
        if frames == 1:
            return spatial_neighbours(generate_spatial_positions(tokens), self.radius)
        positions = generate_space_time_positions(tokens, frames)
        return space_time_neighbours(positions, self.radius, self.frame_window)


class MotionGraphAttention(_GraphBlock):
    """Segments attend the segments within a temporal window and those with similar motion."""

    def __init__(
        self, dim: int = 512, heads: int = 8, dropout: float = 0.0, similarity_threshold: float = 0.8, window: int = 2
    ):
        super().__init__(dim, heads, dropout)
        self.similarity_threshold, self.window = similarity_threshold, window

    def neighbours(self, tokens: int, frames: int) -> torch.Tensor:
        return temporal_neighbours(generate_temporal_positions(tokens), self.window)
