"""Verb and noun token sequences attending each other (bidirectional), each followed by an FFN."""

from __future__ import annotations

import torch
from torch import nn

from fusion.layers.attention import CrossAttention


class CrossTaskAttention(nn.Module):
    """verb' = verb + FFN(LN(verb + Attn(verb -> noun))), and the same for nouns.

    Each branch must hold several tokens: with one key per branch the softmax is identically 1 and the
    "attention" is a fixed linear map of the other branch.
    """

    def __init__(self, dim: int = 256, heads: int = 8, dropout: float = 0.0):
        super().__init__()
        self.verb_norm, self.noun_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.verb_to_noun = CrossAttention(dim, heads, dropout=dropout)
        self.noun_to_verb = CrossAttention(dim, heads, dropout=dropout)
        self.verb_ffn, self.noun_ffn = (
            nn.Sequential(
                nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
            )
            for _ in range(2)
        )

    def forward(
        self, verb: torch.Tensor, noun: torch.Tensor, return_attention: bool = False
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], dict[str, torch.Tensor] | None]:
        """verb: [B, Qv, D], noun: [B, Qn, D] -> ((same shapes), {"verb_to_noun": [B, H, Qv, Qn],
        "noun_to_verb": [B, H, Qn, Qv]} when asked, else None)."""
        if verb.shape[1] < 2 or noun.shape[1] < 2:
            raise ValueError("cross-task attention needs at least 2 tokens per branch")
        v, n = self.verb_norm(verb), self.noun_norm(noun)
        v_att, v_weights = self.verb_to_noun(v, n, return_attention)
        n_att, n_weights = self.noun_to_verb(n, v, return_attention)
        outputs = verb + self.verb_ffn(verb + v_att), noun + self.noun_ffn(noun + n_att)
        return outputs, ({"verb_to_noun": v_weights, "noun_to_verb": n_weights} if return_attention else None)
