"""Every default of the fusion models, once. YAML configs list only overrides (unknown keys are errors)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FusionConfig:
    heads: int = 8
    bottleneck_dim: int = 256  # B-CAST's shared space for 768-d semantic and 512-d motion tokens
    fusion_layers: int = 3  # progressive B-CAST (or full-width) layers
    dropout: float = 0.1  # attention and classifier dropout
    similarity_threshold: float = 0.8  # cosine similarity that adds a graph edge beyond the neighbourhood
    spatial_radius: float = 1.5  # grid distance of spatial neighbours: 1.5 = the 8 around a patch
    temporal_window: int = 2  # segments |i - j| <= window are neighbours
    late_hidden: int = 512  # hidden width of the late-fusion MLP
    task_dim: int = 256  # width of the verb / noun token branches
    task_queries: int = 4  # tokens per verb / noun branch (one token would make cross-attention a linear map)
