import pytest
import torch

from fusion.layers.graph import (
    build_spatial_graph,
    build_temporal_graph,
    generate_spatial_positions,
    generate_temporal_positions,
)


def test_positions():
    spatial = generate_spatial_positions()
    assert spatial.shape == (196, 2) and spatial[15].tolist() == [1.0, 1.0] and spatial[-1].tolist() == [13.0, 13.0]
    assert generate_spatial_positions(49).shape == (49, 2)
    assert generate_temporal_positions().squeeze(1).tolist() == list(range(8))
    with pytest.raises(ValueError, match="square"):
        generate_spatial_positions(50)


def test_spatial_graph_neighbours_and_similarity():
    positions = generate_spatial_positions(16)  # 4x4
    features = torch.randn(2, 16, 8)
    adj = build_spatial_graph(positions, features, similarity_threshold=2.0)  # threshold > 1: no similarity edges
    assert adj.shape == (2, 16, 16) and adj.dtype == torch.bool
    assert adj[0].diagonal().all()
    assert adj[0, 0].sum() == 4 and adj[0, 5].sum() == 9  # corner: itself + 3; interior: itself + 8
    assert not adj[0, 0, 15]
    features[1, 15] = features[1, 0]  # make opposite corners identical in sample 1 only
    adj = build_spatial_graph(positions, features, similarity_threshold=0.99)
    assert adj[1, 0, 15] and adj[1, 15, 0] and not adj[0, 0, 15]


def test_temporal_graph_window():
    adj = build_temporal_graph(
        generate_temporal_positions(8), torch.randn(3, 8, 4), adjacency_window=2, similarity_threshold=2.0
    )
    i, j = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    assert torch.equal(adj[0], (i - j).abs() <= 2)
    assert adj[:, torch.arange(8), torch.arange(8)].all()


def test_similarity_edges_do_not_depend_on_autocast():
    """Patches with cosine similarity near the 0.8 threshold: a bf16 matmul would flip some of their edges."""
    torch.manual_seed(0)
    base = torch.randn(4, 1, 768)
    features = base + 0.5 * torch.randn(4, 196, 768)  # pairwise cosine around 0.8
    positions = generate_spatial_positions(196)
    exact = build_spatial_graph(positions, features, similarity_threshold=0.8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = build_spatial_graph(positions, features, similarity_threshold=0.8)
    assert 0.05 < exact.float().mean() < 0.95  # the threshold really splits these pairs
    assert torch.equal(exact, under_autocast)


def test_layers_build_the_same_graphs_from_their_cached_neighbourhoods():
    from fusion.layers.graph_attention import MotionGraphAttention, SemanticGraphAttention

    torch.manual_seed(0)
    patches, segments = torch.randn(3, 49, 16), torch.randn(3, 6, 8)
    semantic, motion = SemanticGraphAttention(16, 2, similarity_threshold=0.3), MotionGraphAttention(8, 2, window=1)
    for _ in range(2):  # the second call reuses the neighbourhood kept on the device
        assert torch.equal(
            semantic.graph(patches), build_spatial_graph(generate_spatial_positions(49), patches, 0.3, 1.5)
        )
        assert torch.equal(
            motion.graph(segments), build_temporal_graph(generate_temporal_positions(6), segments, 1, 0.8)
        )
    assert semantic.graph(patches[:, :16]).shape == (3, 16, 16)  # another token count, another neighbourhood
