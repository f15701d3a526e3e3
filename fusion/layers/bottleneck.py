"""B-CAST: bidirectional cross-attention between semantic and motion tokens in a shared narrow space."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion.layers.attention import CrossAttention
from fusion.layers.recomputed_linear import linear_after


class BottleneckCrossAttention(nn.Module):
    """Compress 768-d patches and 512-d segments to 256-d, cross-attend both ways there, expand back, add.

    The expansions start at zero, so a stack of these layers starts as the identity and learns to mix. The
    LayerNorm and GELU outputs feeding the compressions and expansions are recomputed in backward rather than
    held (`linear_after`): same outputs and gradients, no extra matmul.
    """

    def __init__(
        self, sem_dim: int = 768, mot_dim: int = 512, bottleneck_dim: int = 256, heads: int = 8, dropout: float = 0.0
    ):
        super().__init__()
        self.sem_norm, self.mot_norm = nn.LayerNorm(sem_dim), nn.LayerNorm(mot_dim)
        self.sem_compress, self.mot_compress = nn.Linear(sem_dim, bottleneck_dim), nn.Linear(mot_dim, bottleneck_dim)
        self.sem_to_mot = CrossAttention(bottleneck_dim, heads, dropout=dropout)  # patch queries, segment keys
        self.mot_to_sem = CrossAttention(bottleneck_dim, heads, dropout=dropout)  # segment queries, patch keys
        self.sem_expand, self.mot_expand = nn.Linear(bottleneck_dim, sem_dim), nn.Linear(bottleneck_dim, mot_dim)
        for expand in (self.sem_expand, self.mot_expand):
            nn.init.zeros_(expand.weight)
            nn.init.zeros_(expand.bias)

    def forward(
        self, semantic: torch.Tensor, motion: torch.Tensor, return_attention: bool = False
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], dict[str, torch.Tensor] | None]:
        """semantic: [B, Ns, Ds], motion: [B, Nm, Dm] -> ((same shapes), {"sem_to_mot": [B, H, Ns, Nm],
        "mot_to_sem": [B, H, Nm, Ns]} when asked, else None)."""
        s = linear_after(self.sem_norm, semantic, self.sem_compress)
        m = linear_after(self.mot_norm, motion, self.mot_compress)
        s_att, s_weights = self.sem_to_mot(s, m, return_attention)
        m_att, m_weights = self.mot_to_sem(m, s, return_attention)
        outputs = (
            semantic + linear_after(F.gelu, s_att, self.sem_expand),
            motion + linear_after(F.gelu, m_att, self.mot_expand),
        )
        return outputs, ({"sem_to_mot": s_weights, "mot_to_sem": m_weights} if return_attention else None)
