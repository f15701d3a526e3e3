"""Stacking: K models of one architecture and shapes as one model over their batches laid end to end
([K * B, ...], member-major), built from the layers of fusion/layers/stacked.py, for training them in one step.

A model stacks when every module that holds weights or draws randomness has a stacked form here, and every other
module is one whose own forward treats each sample alone (listed below): then member k's rows of the stacked
output are what member k alone computes on its batch. Models with other layers (the verb/noun heads) do not
stack; a sweep steps them side by side instead.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from fusion.layers.attention import CrossAttention
from fusion.layers.bottleneck import BottleneckCrossAttention
from fusion.layers.encoder import Encoder, EncoderLayer, SelfAttention
from fusion.layers.full_width import FullWidthCrossAttention
from fusion.layers.graph_attention import DenseGraphAttention, MotionGraphAttention, SemanticGraphAttention
from fusion.layers.keyed_dropout import KeyedDropout
from fusion.layers.positions import PositionEmbedding
from fusion.layers.readout import AttentionReadout, ProbeReadout
from fusion.layers.stacked import (
    Draw,
    StackedDropout,
    StackedLayerNorm,
    StackedLinear,
    StackedPositionEmbedding,
    StackedSelfAttention,
)
from fusion.layers.stacked_attention import StackedAttentionReadout, StackedCrossAttention, StackedGraphAttention
from fusion.models.heads import ClassifierHead
from fusion.models.registry import FusionModel
from fusion.models.trunks import (
    AttentiveProbeTrunk,
    CrossStreamTrunk,
    LateFusionTrunk,
    SingleStreamTrunk,
    TemporalTransformerTrunk,
)

STACKED: dict[type, Callable[[list, Draw], nn.Module]] = {
    nn.Linear: lambda members, draw: StackedLinear(members),
    nn.LayerNorm: lambda members, draw: StackedLayerNorm(members),
    KeyedDropout: StackedDropout,
    SelfAttention: StackedSelfAttention,
    PositionEmbedding: lambda members, draw: StackedPositionEmbedding(members),
    CrossAttention: StackedCrossAttention,
    AttentionReadout: StackedAttentionReadout,
    DenseGraphAttention: StackedGraphAttention,
}
# modules with no weights of their own whose forward treats each sample alone and draws nothing itself (a graph
# block builds each sample's graph from that sample's tokens; B-CAST's recomputed Linear computes plainly when
# its layers are stacked)
PER_SAMPLE = (nn.Sequential, nn.ModuleDict, nn.ModuleList, nn.GELU, nn.ReLU, nn.Identity, Encoder, EncoderLayer,
              FusionModel, TemporalTransformerTrunk, LateFusionTrunk, ClassifierHead, CrossStreamTrunk,
              SingleStreamTrunk, AttentiveProbeTrunk, SemanticGraphAttention, MotionGraphAttention,
              BottleneckCrossAttention, FullWidthCrossAttention, ProbeReadout)  # fmt: skip


class NotStackable(Exception):
    """The models cannot run as one stacked model (the message says which module stops it)."""


def _stack(members: list[nn.Module], draw: Draw, where: str) -> nn.Module:
    first = members[0]
    kind = type(first)
    if any(type(m) is not kind for m in members):
        raise NotStackable(f"{where}: the members' modules differ")
    if kind in STACKED:
        try:
            return STACKED[kind](members, draw)
        except NotImplementedError as exc:
            raise NotStackable(f"{where}: {exc}") from None
    if kind not in PER_SAMPLE or first._parameters or first._buffers:
        raise NotStackable(f"{where or 'the model'} ({kind.__name__}) has no stacked form")
    clone = copy.copy(first)
    clone._parameters, clone._buffers = {}, {}
    clone._modules = {}
    for name, child in first._modules.items():
        path = f"{where}.{name}" if where else name
        clone._modules[name] = None if child is None else _stack([m._modules[name] for m in members], draw, path)
    return clone


def stack_models(models: list[nn.Module], draw: Draw) -> nn.Module:
    """K models of one architecture -> one model: [K * B, ...] inputs -> [K * B, ...] outputs, in training mode.
    Raises NotStackable. The stacked model holds copies of the weights (see `unstack_into`)."""
    shapes = [[(name, p.shape) for name, p in m.named_parameters()] for m in models]
    if any(s != shapes[0] for s in shapes):
        raise NotStackable("the models' parameters differ in names or shapes")
    stacked = _stack(models, draw, "")
    names = [name for name, _ in stacked.named_parameters()]
    if names != [name for name, _ in shapes[0]]:  # a stacked layer must keep its layer's parameter names
        raise NotStackable(f"stacked parameters {names} do not match the model's")
    return stacked.train()


def unstack_into(stacked: nn.Module, models: list[nn.Module]) -> None:
    """Copy each member's slice of the stacked weights into its own model."""
    with torch.no_grad():
        for name, weights in stacked.named_parameters():
            for k, model in enumerate(models):
                model.get_parameter(name).copy_(weights[k])
