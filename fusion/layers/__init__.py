"""Attention layers: dense graph attention, cross-attention, B-CAST, full-width cross-attention, cross-task;
position embeddings, attention readout."""

from fusion.layers.attention import CrossAttention
from fusion.layers.bottleneck import BottleneckCrossAttention
from fusion.layers.cross_task import CrossTaskAttention
from fusion.layers.full_width import FullWidthCrossAttention
from fusion.layers.graph_attention import DenseGraphAttention, MotionGraphAttention, SemanticGraphAttention
from fusion.layers.positions import PositionEmbedding
from fusion.layers.readout import AttentionReadout

__all__ = [
    "CrossAttention",
    "BottleneckCrossAttention",
    "CrossTaskAttention",
    "FullWidthCrossAttention",
    "DenseGraphAttention",
    "MotionGraphAttention",
    "SemanticGraphAttention",
    "PositionEmbedding",
    "AttentionReadout",
]
