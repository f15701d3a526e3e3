import pytest
import torch

from fusion.layers import DenseGraphAttention, MotionGraphAttention, SemanticGraphAttention
from fusion.layers.graph import build_spatial_graph, generate_spatial_positions


def grid_adjacency(n=49):
    return build_spatial_graph(generate_spatial_positions(n), torch.randn(1, n, 4), similarity_threshold=2.0)


def test_a_node_ignores_nodes_outside_its_neighbourhood():
    torch.manual_seed(0)
    layer = DenseGraphAttention(32, heads=4).eval()
    adj = grid_adjacency().expand(2, -1, -1)
    x = torch.randn(2, 49, 32)
    out, attention = layer(x, adj, return_attention=True)
    outside = (~adj[0, 0]).nonzero().flatten()
    inside = adj[0, 0].nonzero().flatten()
    changed = x.clone()
    changed[:, outside] += torch.randn(2, len(outside), 32) * 10
    assert torch.allclose(layer(changed, adj)[0][:, 0], out[:, 0], atol=1e-6)
    changed = x.clone()
    changed[:, inside[-1]] += 10
    assert not torch.allclose(layer(changed, adj)[0][:, 0], out[:, 0], atol=1e-3)
    assert torch.all(attention[:, :, 0, outside] == 0)
    assert torch.allclose(attention.sum(-1), torch.ones(()))


def test_semantic_block_is_local_when_no_features_are_similar():
    torch.manual_seed(0)
    block = SemanticGraphAttention(32, heads=4, similarity_threshold=2.0).eval()
    x = torch.randn(1, 196, 32)
    far = x.clone()
    far[0, 100] += 5  # patch (7, 2), far from patch 0
    assert torch.allclose(block(far)[0][0, 0], block(x)[0][0, 0], atol=1e-6)
    out, attention = block(x, return_attention=True)
    assert out.shape == (1, 196, 32) and attention.shape == (1, 4, 196, 196)


def test_agrees_with_torch_geometric_dense_gat():
    pyg = pytest.importorskip("torch_geometric.nn")
    torch.manual_seed(0)
    ours = DenseGraphAttention(48, heads=6).eval()
    with torch.no_grad():
        ours.bias.normal_()
    reference = pyg.DenseGATConv(48, 8, heads=6, concat=True).eval()
    reference.lin.weight.data.copy_(ours.lin.weight)
    reference.att_src.data.copy_(ours.att_src)
    reference.att_dst.data.copy_(ours.att_dst)
    reference.bias.data.copy_(ours.bias)
    x = torch.randn(3, 49, 48)
    adj = build_spatial_graph(generate_spatial_positions(49), x, similarity_threshold=0.2)
    expected = reference(x, adj.float(), add_loop=True)
    assert torch.allclose(ours(x, adj)[0], expected, atol=1e-5)


def test_motion_block_and_bf16_masking_stays_finite():
    block = MotionGraphAttention(64, heads=8, window=1, similarity_threshold=2.0)
    x = torch.randn(4, 8, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, attention = block(x, return_attention=True)
    assert torch.isfinite(out).all() and torch.isfinite(attention).all()
    assert torch.all(attention[:, :, 0, 2:] == 0)


@pytest.mark.parametrize("with_prenorm", [False, True])
def test_recomputed_graph_attention_has_the_dense_gradients_and_holds_far_less(with_prenorm):
    """Training recomputes the [B, H, N, N] scores and weights (and a block's LayerNorm) in backward: the same
    outputs and gradients (dropout included) as keeping them, a fraction of the memory held between forward and
    backward."""
    torch.manual_seed(0)
    layer = DenseGraphAttention(32, heads=4, dropout=0.2).train()
    prenorm = torch.nn.LayerNorm(32) if with_prenorm else None
    parameters = list(layer.parameters()) + (list(prenorm.parameters()) if prenorm else [])
    adj = grid_adjacency().expand(2, -1, -1)
    results = []
    for direct in (True, False):
        x = torch.randn(2, 49, 32, generator=torch.Generator().manual_seed(1)).requires_grad_()
        saved: dict[int, int] = {}

        def pack(t, saved=saved):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        for parameter in parameters:
            parameter.grad = None
        torch.manual_seed(2)  # the same dropout draws on both paths
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = layer._attend(x, adj, prenorm)[0] if direct else layer(x, adj, prenorm=prenorm)[0]
        out.square().sum().backward()
        results.append((out.detach(), x.grad, [p.grad.clone() for p in parameters], sum(saved.values())))
    (out_a, gx_a, gp_a, held_a), (out_b, gx_b, gp_b, held_b) = results
    assert torch.allclose(out_a, out_b) and torch.allclose(gx_a, gx_b, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(gp_a, gp_b))
    assert held_b < 0.25 * held_a
