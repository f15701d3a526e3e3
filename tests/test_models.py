import pytest
import torch

from fusion.layers import BottleneckCrossAttention, CrossTaskAttention
from fusion.models.heads import action_scores
from fusion.models.registry import MODELS, PARAMETER_BUDGET, build_model, count_trainable

LABELS = {"ssv2": {"label": 174}, "epic": {"verb": 97, "noun": 300}}
DIMS = [(196, 768, 8, 512), (49, 384, 4, 256)]


def batch(b, ns, ds, nm, dm, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"semantic": torch.randn(b, ns, ds, generator=g), "motion": torch.randn(b, nm, dm, generator=g)}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("task", list(LABELS))
@pytest.mark.parametrize("dims", DIMS, ids=["196x768-8x512", "49x384-4x256"])
def test_shapes_finite_and_every_parameter_learns(name, task, dims):
    ns, ds, nm, dm = dims
    torch.manual_seed(0)
    model = build_model(name, ds, dm, LABELS[task])
    data = batch(3, *dims)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    learned: set[str] = set()
    for _ in range(2):  # zero-initialised expansions pass gradient to the rest only after one step
        optimizer.zero_grad()
        out = model(data)
        if task == "ssv2":
            assert set(out) == {"logits"} and out["logits"].shape == (3, 174)
            loss = out["logits"].logsumexp(-1).mean() - out["logits"][:, 0].mean()
        else:
            assert set(out) == {"verb", "noun", "action"}
            assert (
                out["verb"].shape == (3, 97) and out["noun"].shape == (3, 300) and out["action"].shape == (3, 97 * 300)
            )
            loss = (
                out["verb"].logsumexp(-1).mean()
                + out["noun"].logsumexp(-1).mean()
                - out["verb"][:, 1].mean()
                - out["noun"][:, 2].mean()
            )
        assert all(torch.isfinite(v).all() for v in out.values())
        loss.backward()
        learned |= {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        optimizer.step()
    silent = [n for n, p in model.named_parameters() if p.requires_grad and n not in learned]
    assert not silent, f"parameters without gradient: {silent}"


@pytest.mark.parametrize("name", list(MODELS))
def test_deterministic_under_a_seed_and_finite_under_bf16(name):
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        model = build_model(name, 768, 512, LABELS["epic"]).eval()
        outs.append(model(batch(2, 196, 768, 8, 512))["verb"])
    assert torch.equal(outs[0], outs[1])
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch(2, 196, 768, 8, 512))
    assert all(torch.isfinite(v.float()).all() for v in out.values())


@pytest.mark.parametrize("task", list(LABELS))
def test_every_model_is_under_the_budget(task):
    for name in MODELS:
        assert count_trainable(build_model(name, 768, 512, LABELS[task])) < PARAMETER_BUDGET, name


def test_bcast_starts_as_identity_and_reports_attention():
    layer = BottleneckCrossAttention(768, 512, 256, heads=8)
    sem, mot = torch.randn(2, 196, 768), torch.randn(2, 8, 512)
    (s, m), attention = layer(sem, mot, return_attention=True)
    assert torch.equal(s, sem) and torch.equal(m, mot)
    assert attention["sem_to_mot"].shape == (2, 8, 196, 8) and attention["mot_to_sem"].shape == (2, 8, 8, 196)
    assert torch.allclose(attention["sem_to_mot"].sum(-1), torch.ones(()), atol=1e-5)


def test_cross_task_attends_several_tokens_with_unequal_weights():
    torch.manual_seed(0)
    layer = CrossTaskAttention(64, heads=4).eval()
    verb, noun = torch.randn(2, 4, 64), torch.randn(2, 5, 64)
    (v, n), attention = layer(verb, noun, return_attention=True)
    assert v.shape == verb.shape and n.shape == noun.shape
    weights = attention["verb_to_noun"]
    assert weights.shape == (2, 4, 4, 5) and attention["noun_to_verb"].shape == (2, 4, 5, 4)
    assert torch.allclose(weights.sum(-1), torch.ones(()), atol=1e-5)
    assert weights.std(dim=-1).min() > 1e-3  # not uniform over the keys
    with pytest.raises(ValueError, match="at least 2 tokens"):
        layer(verb[:, :1], noun)


def test_epic_model_cross_task_attention_over_query_tokens():
    torch.manual_seed(0)
    model = build_model("gasm_cast", 768, 512, LABELS["epic"]).eval()
    attention = model(batch(2, 196, 768, 8, 512), return_attention=True)["attention"]["cross_task"]["verb_to_noun"]
    assert attention.shape[-1] > 1 and attention.shape[-2] > 1 and attention.std(dim=-1).min() > 1e-4


def test_action_scores_are_the_outer_product():
    verb, noun = torch.randn(2, 3), torch.randn(2, 4)
    scores = action_scores(verb, noun)
    assert scores.shape == (2, 12) and torch.allclose(scores.sum(-1), torch.ones(2))
    expected = verb.softmax(-1)[0, 2] * noun.softmax(-1)[0, 1]
    assert torch.isclose(scores[0, 2 * 4 + 1], expected)


def test_flop_count_includes_fused_attention_on_cpu():
    """The fused (SDPA) path counts as many FLOPs as the explicit matmuls it replaces, not zero."""
    from fusion.layers.attention import CrossAttention
    from fusion.models.costs import _flops, _step

    class Explicit(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def forward(self, queries, context):
            return self.layer(queries, context, return_attention=True)[0]

    torch.manual_seed(0)
    layer = CrossAttention(64, 4)
    inputs = (torch.randn(2, 196, 64), torch.randn(2, 8, 64))
    fused, explicit = _flops(_step(layer, inputs, "fp32")), _flops(_step(Explicit(layer), inputs, "fp32"))
    assert fused == pytest.approx(explicit, rel=0.05)


def test_the_vjepa2_evaluation_probe_is_a_configuration_of_attentive_probe():
    """configs/probe_vjepa2.yaml: 3 self-attention blocks, then one learned query, 16 heads, on each stream; the
    default attentive_probe keeps its parameters (and so its checkpoints)."""
    from pathlib import Path

    from fusion.training.config import training_config

    cfg = training_config("default", Path(__file__).parents[1] / "configs" / "probe_vjepa2.yaml", {}).model
    torch.manual_seed(0)
    model = build_model("attentive_probe", 64, 32, LABELS["ssv2"], cfg)
    probe = model.trunk.readouts["semantic"]
    assert len(probe.blocks.layers) == 3 and probe.blocks.layers[0].self_attn.heads == 16
    assert probe.readout.attend.heads == 16 and probe.readout.query.shape == (1, 1, 64)
    data = batch(3, 32, 64, 8, 32)
    out = model(data)["logits"]
    assert out.shape == (3, 174) and torch.isfinite(out).all()
    out.logsumexp(-1).mean().backward()
    assert all(p.grad is not None for name, p in model.named_parameters() if "blocks" in name)
    default = build_model("attentive_probe", 64, 32, LABELS["ssv2"])
    assert not any("blocks" in name or "mlp" in name for name, _ in default.named_parameters())
