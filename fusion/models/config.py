"""Every default of the fusion models, once. YAML configs list only overrides (unknown keys are errors)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.config_loading import setting

HEADS = ("linear", "mlp")
READOUTS = ("mean", "attention")
DEFAULT_MODEL = "gasm_cast"  # what fuse-train, sweeps and benches train when no --model is given


@dataclass
class FusionConfig:
    heads: int = setting(8, "Attention heads of every attention layer.", low=1)
    bottleneck_dim: int = setting(256, "B-CAST's shared width for semantic and motion tokens.", low=1)
    fusion_layers: int = setting(3, "Progressive B-CAST (or full-width) cross-attention layers.", low=1)
    dropout: float = setting(0.1, "Attention and classifier dropout.", low=0.0, high=1.0, high_open=True)
    similarity_threshold: float = setting(
        0.8, "Cosine similarity that adds a graph edge beyond the neighbourhood.", low=-1.0, high=1.0
    )
    spatial_radius: float = setting(1.5, "Grid distance of spatial neighbours (1.5: the 8 around a patch).", low=0.0)
    temporal_window: int = setting(2, "Segments with |i - j| <= window are neighbours.", low=0)
    frame_window: int = setting(
        1, "Per-frame caches: patches within spatial_radius in frames at most this far apart are neighbours.", low=0
    )
    late_hidden: int = setting(512, "Hidden width of the late-fusion MLP.", low=1)
    task_dim: int = setting(256, "Width of the verb / noun token branches.", low=1)
    # one token per branch would make cross-attention a plain linear map
    task_queries: int = setting(4, "Tokens per verb / noun branch.", low=2)
    readout: str = setting(
        "mean",
        "How the graph and cross-attention trunks pool a stream's tokens: their mean, or attention (a learned query "
        "per stream picks tokens out; for per-frame caches, where an object covers few of the tokens).",
        choices=READOUTS,
    )
    head: str = setting("linear", "Classifiers: one linear layer, or the design notes' 2-layer MLP.", choices=HEADS)
    head_hidden: int = setting(512, "Hidden width of the MLP classifiers (head: mlp).", low=1)
    transformer_layers: int = setting(2, "Layers of the temporal transformer trunk.", low=1)
    probe_blocks: int = setting(
        0,
        "attentive_probe: self-attention blocks over each stream's tokens before its query reads them out, the "
        "query then followed by an MLP (3: V-JEPA 2's evaluation probe, configs/probe_vjepa2.yaml); 0: the query "
        "alone.",
        low=0,
    )
    # without positions no trunk can tell a clip from its time-reversal (the temporal graph is symmetric)
    positions: bool = setting(
        True, "Position embeddings on patch (2-D grid; 3-D with frames) and segment (1-D time) tokens."
    )

    def problems(self) -> list[str]:
        return [
            f"{name} {getattr(self, name)} is not divisible by heads {self.heads}"
            for name in ("bottleneck_dim", "task_dim")
            if getattr(self, name) % self.heads
        ]
