"""A Linear layer fed by an elementwise or per-row function (LayerNorm, GELU) that holds only the function's
input for backward and recomputes its output there.

Autograd would keep both the function's input (for the function's own backward) and its output (for the
Linear's weight gradient): for B-CAST's 768-d LayerNorm -> 256-d compression that is two `[B, 196, 768]`
tensors per layer. Recomputing the function in backward is elementwise work only: the two backward matmuls
are the Linear's usual ones, so the FLOPs are unchanged, and outputs and gradients are the same (tested).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class _RecomputedLinear(torch.autograd.Function):
    """y = linear(pre(x), weight, bias), saving x (and pre's parameters) rather than pre(x)."""

    @staticmethod
    def forward(  # noqa: ANN205 - autograd.Function signature
        ctx,  # noqa: ANN001
        pre: Callable[..., torch.Tensor],
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *pre_params: torch.Tensor,
    ):
        z = pre(x, *pre_params)
        y = F.linear(z, weight, bias)  # under autocast, in the autocast dtype, as nn.Linear would be
        ctx.pre, ctx.pre_dtype, ctx.has_bias = pre, z.dtype, bias is not None
        ctx.save_for_backward(x, weight, *pre_params)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        x, weight, *pre_params = ctx.saved_tensors
        with torch.enable_grad():
            inputs = [x.detach().requires_grad_(ctx.needs_input_grad[1])]
            inputs += [p.detach().requires_grad_(need) for p, need in zip(pre_params, ctx.needs_input_grad[4:])]
            # the forward's dtypes: autocast may have run pre in fp32 and the Linear in bf16/fp16
            z = ctx.pre(*(t.to(ctx.pre_dtype) if t.is_floating_point() else t for t in inputs))
        rows, flat_grad = z.detach().to(grad.dtype).reshape(-1, z.shape[-1]), grad.reshape(-1, grad.shape[-1])
        grad_weight = (flat_grad.t() @ rows).to(weight.dtype) if ctx.needs_input_grad[2] else None
        grad_bias = flat_grad.sum(0).to(weight.dtype) if ctx.has_bias and ctx.needs_input_grad[3] else None
        wanted = [t for t in inputs if t.requires_grad]
        grads_in = iter(())
        if wanted:
            grad_z = (grad @ weight.to(grad.dtype)).to(z.dtype)
            grads_in = iter(torch.autograd.grad(z, wanted, grad_z))
        input_grads = [next(grads_in) if t.requires_grad else None for t in inputs]
        return None, input_grads[0], grad_weight, grad_bias, *input_grads[1:]


def _layer_norm(norm: nn.LayerNorm) -> Callable[..., torch.Tensor]:
    return lambda x, weight, bias: F.layer_norm(x, norm.normalized_shape, weight, bias, norm.eps)


def linear_after(pre: nn.LayerNorm | Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, linear: nn.Linear):
    """linear(pre(x)) for `pre` a LayerNorm (with an affine transform) or a parameter-free elementwise function
    (F.gelu): x [..., Din] -> [..., Dout]. While gradients are recorded, only x is held for backward; K stacked
    members' layers (fusion/layers/stacked.py: no nn.Linear) compute it plainly."""
    if not torch.is_grad_enabled() or not isinstance(linear, nn.Linear):
        return linear(pre(x))
    if isinstance(pre, nn.LayerNorm):
        return _RecomputedLinear.apply(_layer_norm(pre), x, linear.weight, linear.bias, pre.weight, pre.bias)
    return _RecomputedLinear.apply(pre, x, linear.weight, linear.bias)
