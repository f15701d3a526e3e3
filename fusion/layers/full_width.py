"""The plain baseline: bidirectional cross-attention at each stream's own width (no bottleneck)."""

from __future__ import annotations

import torch
from torch import nn

from fusion.layers.attention import CrossAttention


class FullWidthCrossAttention(nn.Module):
    """Patches attend segments at 768-d, segments attend patches at 512-d, each added back residually."""

    def __init__(self, sem_dim: int = 768, mot_dim: int = 512, heads: int = 8, dropout: float = 0.0):
        super().__init__()
        self.sem_norm, self.mot_norm = nn.LayerNorm(sem_dim), nn.LayerNorm(mot_dim)
        self.sem_to_mot = CrossAttention(sem_dim, heads, kv_dim=mot_dim, dropout=dropout)
        self.mot_to_sem = CrossAttention(mot_dim, heads, kv_dim=sem_dim, dropout=dropout)

    def forward(
        self, semantic: torch.Tensor, motion: torch.Tensor, return_attention: bool = False
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], dict[str, torch.Tensor] | None]:
        """semantic: [B, Ns, Ds], motion: [B, Nm, Dm] -> ((same shapes), attention dict when asked, else None)."""
        s, m = self.sem_norm(semantic), self.mot_norm(motion)
        s_att, s_weights = self.sem_to_mot(s, m, return_attention)
        m_att, m_weights = self.mot_to_sem(m, s, return_attention)
        outputs = semantic + s_att, motion + m_att
        return outputs, ({"sem_to_mot": s_weights, "mot_to_sem": m_weights} if return_attention else None)
