import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fusion.layers import BottleneckCrossAttention
from fusion.layers.recomputed_linear import linear_after


def _pair(pre_kind: str):
    torch.manual_seed(0)
    pre = nn.LayerNorm(24) if pre_kind == "layernorm" else F.gelu
    if isinstance(pre, nn.LayerNorm):  # not the identity transform, so its gradients are tested too
        nn.init.normal_(pre.weight)
        nn.init.normal_(pre.bias)
    return pre, nn.Linear(24, 16)


def _grads(pre, linear, x, fn, dtype: torch.dtype | None):
    x = x.clone().requires_grad_()
    params = list(linear.parameters()) + (list(pre.parameters()) if isinstance(pre, nn.Module) else [])
    with torch.autocast(x.device.type, dtype or torch.bfloat16, enabled=dtype is not None):
        y = fn(x)
    (y.float() * torch.linspace(-1, 1, y.shape[-1], device=y.device)).sum().backward()
    grads = [x.grad] + [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    return y.detach(), grads


GPU = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("pre_kind", ["layernorm", "gelu"])
@pytest.mark.parametrize(
    ("device", "dtype"),
    [
        ("cpu", None),
        ("cpu", torch.bfloat16),
        pytest.param("cuda", torch.float16, marks=GPU),
        pytest.param("cuda", torch.bfloat16, marks=GPU),
    ],
)
def test_outputs_and_gradients_equal_the_plain_composition(pre_kind, device, dtype):
    """In fp32 and under the training's autocast (the LayerNorm in fp32, the Linear in bf16/fp16)."""
    pre, linear = _pair(pre_kind)
    if isinstance(pre, nn.Module):
        pre.to(device)
    linear.to(device)
    x = torch.randn(3, 7, 24, device=device)
    y_plain, g_plain = _grads(pre, linear, x, lambda t: linear(pre(t)), dtype)
    y_ours, g_ours = _grads(pre, linear, x, lambda t: linear_after(pre, t, linear), dtype)
    assert y_ours.dtype == y_plain.dtype == (dtype or torch.float32)
    assert torch.equal(y_ours, y_plain)
    for ours, plain in zip(g_ours, g_plain, strict=True):
        assert ours.dtype == plain.dtype
        torch.testing.assert_close(ours, plain, atol=1e-5, rtol=1e-5)


def _saved_bytes(fn, x) -> int:
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return sum(storages.values())


@pytest.mark.parametrize("pre_kind", ["layernorm", "gelu"])
def test_only_the_input_is_held_for_backward_and_the_flops_are_unchanged(pre_kind):
    pre, linear = _pair(pre_kind)
    x = torch.randn(64, 50, 24, requires_grad=True)
    params = sum(p.numel() * 4 for p in linear.parameters()) + (
        sum(p.numel() * 4 for p in pre.parameters()) if isinstance(pre, nn.Module) else 0
    )
    plain = _saved_bytes(lambda t: linear(pre(t)), x)
    ours = _saved_bytes(lambda t: linear_after(pre, t, linear), x)
    assert plain >= 2 * x.numel() * 4  # autograd holds x and pre(x)
    assert ours <= x.numel() * 4 + params  # x alone (and the weights)
    counts = []
    for fn in (lambda t: linear(pre(t)), lambda t: linear_after(pre, t, linear)):
        with FlopCounterMode(display=False) as counter:
            fn(x).sum().backward()
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0


def test_a_bcast_layer_trains_as_before():
    """The layer with recomputed LayerNorm/GELU against the same weights composed plainly."""
    torch.manual_seed(0)
    layer = BottleneckCrossAttention(32, 16, bottleneck_dim=8, heads=2)
    for expand in (layer.sem_expand, layer.mot_expand):  # non-zero, so every path carries gradient
        nn.init.normal_(expand.weight)
    semantic, motion = torch.randn(2, 10, 32), torch.randn(2, 4, 16)

    def plain(s, m):
        sc, mc = layer.sem_compress(layer.sem_norm(s)), layer.mot_compress(layer.mot_norm(m))
        s_att, m_att = layer.sem_to_mot(sc, mc)[0], layer.mot_to_sem(mc, sc)[0]
        return s + layer.sem_expand(F.gelu(s_att)), m + layer.mot_expand(F.gelu(m_att))

    results = []
    for fn in (plain, lambda s, m: layer(s, m)[0]):
        s, m = semantic.clone().requires_grad_(), motion.clone().requires_grad_()
        out_s, out_m = fn(s, m)
        (out_s.sum() + (out_m**2).sum()).backward()
        results.append([out_s, out_m, s.grad, m.grad] + [p.grad.clone() for p in layer.parameters()])
        layer.zero_grad(set_to_none=True)
    for ours, reference in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
