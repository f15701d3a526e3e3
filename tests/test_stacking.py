"""Stacked sweep members: K models of one architecture stepped as one model. A stacked model's rows are what each
member computes alone (dropout masks included); stacked members end as the runs they are when each takes its own
step (which tests/test_sweep.py holds equal to standalone fuse-train runs), up to float rounding; a killed stacked
sweep resumes to the same results; a diverging member stops alone; other architectures step side by side."""

import json
import re
import signal
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT, signal_mid_epoch, small_caches

from cli import main
from fusion.data.cache_data import CacheData
from fusion.evaluation.evaluate import members_outputs_over, outputs_over
from fusion.layers.keyed_dropout import draw_key
from fusion.layers.stacked import draw_in_turn
from fusion.models.config import FusionConfig
from fusion.models.registry import build_model
from fusion.models.stacking import NotStackable, stack_models, unstack_into
from fusion.training.objective import task_loss

# Stacked and lone steps differ by the order of float sums (batched and single matrix products): after a few
# AdamW steps, weights within WEIGHTS and losses and metrics within LOSSES (measured: <= 1e-6 and <= 1.2e-7).
WEIGHTS, LOSSES = 1e-5, 1e-5


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return small_caches(tmp_path_factory.mktemp("stack-caches"), 64, 32, shard_size=32)


def _models(name: str, k: int, **changes) -> list[torch.nn.Module]:
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        cfg = FusionConfig(**{"dropout": 0.1 * (seed + 1), **changes})
        models.append(build_model(name, 24, 16, {"label": 7}, cfg))
    return models


GPU = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


STACKABLE = ["temporal_transformer", "late_fusion", "gasm_cast", "bcast_no_graph", "graph_full_width",
             "vanilla_cross_attention", "attentive_probe", "attentive_probe+probe_blocks", "semantic_only",
             "motion_only"]  # fmt: skip


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=GPU)])
@pytest.mark.parametrize("name", STACKABLE)
def test_a_stacked_model_computes_what_each_member_computes_alone_dropout_masks_included(name, device):
    k, batch = 3, 5
    name, _, probe = name.partition("+")  # attentive_probe+probe_blocks: V-JEPA 2's probe, blocks before the query
    models = [model.to(device) for model in _models(name, k, head="mlp", probe_blocks=1 if probe else 0)]
    inputs = [{"semantic": torch.randn(batch, 9, 24, device=device), "motion": torch.randn(batch, 4, 16, device=device)}
              for _ in range(k)]  # fmt: skip
    generators = [torch.Generator().manual_seed(100 + i) for i in range(k)]

    def draw(p):  # member i's dropout keys from its own generator, as its lone run draws them from the global one
        return [draw_key(g) if q else None for q, g in zip(p, generators)]

    stacked = stack_models(models, draw)
    together = stacked({key: torch.cat([x[key] for x in inputs]) for key in inputs[0]})["logits"]
    assert together.shape == (k * batch, 7)
    for i, model in enumerate(models):
        torch.manual_seed(100 + i)
        alone = model.train()(inputs[i])["logits"]
        assert torch.allclose(together[i * batch : (i + 1) * batch], alone, atol=1e-5), i
    # the masks draw: another draw gives other outputs (so the comparison above could fail)
    assert not torch.allclose(
        together, stacked({key: torch.cat([x[key] for x in inputs]) for key in inputs[0]})["logits"]
    )


def test_a_stacked_model_validates_each_member_as_alone(caches):
    data = CacheData(caches[1])
    semantic, motion = (data.spec.shapes[kind][1] for kind in ("semantic", "motion"))
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model("temporal_transformer", semantic, motion, data.spec.label_sizes, FusionConfig()))
    losses = [lambda out, target, s=s: task_loss(out, target, torch.nn.CrossEntropyLoss(label_smoothing=s))
              for s in (0.0, 0.1, 0.2)]  # fmt: skip
    together = members_outputs_over(stack_models(models, draw_in_turn), data, 8, torch.device("cpu"), "fp32", losses)
    for model, loss, stacked in zip(models, losses, together):
        alone = outputs_over(model, data, 8, torch.device("cpu"), "fp32", loss)
        assert torch.allclose(stacked.scores["logits"], alone.scores["logits"], atol=1e-5)
        assert torch.equal(stacked.targets["label"], alone.targets["label"]) and len(alone.targets["label"]) == 32
        assert stacked.loss == pytest.approx(alone.loss, abs=1e-6)
    assert together[0].loss != pytest.approx(together[2].loss, abs=1e-3)  # each member's own loss and weights


def test_unstacking_gives_each_member_its_own_weights_back():
    models = _models("temporal_transformer", 2)
    before = [[p.detach().clone() for p in m.parameters()] for m in models]
    stacked = stack_models(models, draw_in_turn)
    with torch.no_grad():
        for p in stacked.parameters():
            p[1].add_(1.0)  # only member 1's slice
    unstack_into(stacked, models)
    assert all(torch.equal(a, b) for a, b in zip(before[0], models[0].parameters()))
    assert all(torch.equal(a + 1.0, b) for a, b in zip(before[1], models[1].parameters()))


def test_models_with_other_layers_do_not_stack_and_say_which_module():
    models = []
    for seed in range(2):
        torch.manual_seed(seed)
        models.append(build_model("gasm_cast", 24, 16, {"verb": 3, "noun": 4}, FusionConfig()))
    with pytest.raises(NotStackable, match=r"head \(VerbNounHead\) has no stacked form"):
        stack_models(models, draw_in_turn)


def _sweep(caches, spec: Path, out: Path, *extra, epochs: int = 2) -> list[str]:
    return ["sweep", "--spec", str(spec), "--cache", str(caches[0]), "--val-cache", str(caches[1]), "--out", str(out),
            "--epochs", str(epochs), "--no-progress", *extra]  # fmt: skip


# two seeds of the Phase 2 model and a third member with its own lr, dropout and no clipping; augmentation on
SPEC = (
    "base:\n  model: temporal_transformer\n  overrides:\n"
    "    data: {batch_size: 16, token_dropout: 0.2, mixup_alpha: 0.2}\n    device: cpu\n"
    "members: [{}, {changes: {optim.lr: 0.003, model.dropout: 0.3, optim.grad_clip: 0.0}}]\n"
    "seeds: [0, 1]\n"
)
MEMBERS = ["temporal_transformer-seed0", "temporal_transformer-seed1",
           "temporal_transformer-dropout0.3-grad_clip0-lr0.003-seed0"]  # fmt: skip


def _run(out: Path, member: str) -> tuple[dict, dict]:
    return (json.loads((out / "runs" / member / "metrics.json").read_text()),
            torch.load(out / "runs" / member / "last.pt", weights_only=True))  # fmt: skip


def _same_run(a: Path, b: Path, member: str) -> None:
    (metrics_a, state_a), (metrics_b, state_b) = _run(a, member), _run(b, member)
    for key, value in metrics_a["last"].items():
        assert metrics_b["last"][key] == pytest.approx(value, rel=LOSSES, abs=LOSSES), (member, key)
    for key, weights in state_a["model"].items():
        other = state_b["model"][key]
        if key.endswith("self_attn.in_proj_bias"):  # [query; key; value] biases
            # The key bias gets no gradient (softmax ignores a shift shared by every key), so AdamW scales its
            # rounding noise to full-size steps: it differs by up to lr x steps, and changes no output.
            third = len(weights) // 3
            weights, other = (
                torch.cat([weights[:third], weights[2 * third :]]),
                torch.cat([other[:third], other[2 * third :]]),
            )
        if key.endswith(".k.bias"):  # a cross-attention's key bias: the same, no gradient (see above)
            continue
        assert torch.allclose(weights, other, atol=WEIGHTS), (member, key)
    moments = zip(state_a["optimizer"]["state"].values(), state_b["optimizer"]["state"].values())
    assert all(int(x["step"]) == int(y["step"]) for x, y in moments)


def test_stacked_members_equal_the_runs_that_step_alone(caches, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    stacked = CliRunner().invoke(main, _sweep(caches, spec, tmp_path / "S"))
    assert stacked.exit_code == 0, stacked.output
    assert "4 runs of temporal_transformer step as one stacked model" in stacked.output
    alone = CliRunner().invoke(main, _sweep(caches, spec, tmp_path / "A", "--no-stack"))
    assert alone.exit_code == 0 and "stacked model" not in alone.output, alone.output
    for member in MEMBERS:
        _same_run(tmp_path / "S", tmp_path / "A", member)


@pytest.mark.parametrize("model", ["gasm_cast", "attentive_probe"])
def test_stacked_cross_stream_members_equal_the_runs_that_step_alone(caches, tmp_path, model):
    """Graph attention, B-CAST and the attentive probe's readouts, stacked: seeds and an lr / dropout change."""
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.replace("temporal_transformer", model).replace(", optim.grad_clip: 0.0", ""))
    stacked = CliRunner().invoke(main, _sweep(caches, spec, tmp_path / "S"))
    assert stacked.exit_code == 0, stacked.output
    assert f"4 runs of {model} step as one stacked model" in stacked.output
    alone = CliRunner().invoke(main, _sweep(caches, spec, tmp_path / "A", "--no-stack"))
    assert alone.exit_code == 0 and "stacked model" not in alone.output, alone.output
    for member in (f"{model}-seed0", f"{model}-seed1", f"{model}-dropout0.3-lr0.003-seed0"):
        _same_run(tmp_path / "S", tmp_path / "A", member)


def test_a_killed_stacked_sweep_resumes_to_the_same_results(caches, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.replace("batch_size: 16", "batch_size: 4"))  # 15 steps an epoch: time to land mid-epoch
    command = [sys.executable, str(ROOT / "cli.py"), *_sweep(caches, spec, tmp_path / "K", epochs=4)]
    # SIGTERM mid-epoch: every member of the stack writes its last.pt where it stands and the sweep stops
    signal_mid_epoch(command, tmp_path / "K" / "runs" / MEMBERS[0], signal.SIGTERM, 143, delay=0.05)
    assert CliRunner().invoke(main, _sweep(caches, spec, tmp_path / "K", epochs=4)).exit_code == 0
    assert CliRunner().invoke(main, _sweep(caches, spec, tmp_path / "W", epochs=4)).exit_code == 0
    for member in MEMBERS:
        _same_run(tmp_path / "K", tmp_path / "W", member)


def test_a_diverging_stacked_member_stops_alone_and_the_others_finish_as_they_would(caches, tmp_path):
    text = SPEC.replace("optim.lr: 0.003", "optim.lr: 1.0e+30")
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    stacked = CliRunner().invoke(main, _sweep(caches, spec, tmp_path / "S"))
    assert stacked.exit_code == 1 and "2 member(s) stopped, the others finished" in stacked.output, stacked.output
    for seed in (0, 1):  # both seeds of the diverging configuration stop; the two others stack on without them
        diverged = f"temporal_transformer-dropout0.3-grad_clip0-lr1e_30-seed{seed}"
        assert diverged in stacked.output.splitlines()[-1]
        assert not (tmp_path / "S" / "runs" / diverged / "metrics.json").exists()
    assert CliRunner().invoke(main, _sweep(caches, spec, tmp_path / "A", "--no-stack")).exit_code == 1
    for member in MEMBERS[:2]:
        _same_run(tmp_path / "S", tmp_path / "A", member)


def test_bench_sweep_times_every_way_and_its_inline_members_step_together(caches):
    result = CliRunner().invoke(main, ["bench", "sweep", "--cache", str(caches[0]), "--val-cache", str(caches[1]),
                                       "--members", "2", "--epochs", "1", "--model", "gasm_cast",
                                       "--batch-size", "16"])  # fmt: skip
    assert result.exit_code == 0, result.output
    for row in ("stacked", "lockstep", "one after another", "separate fuse-train processes"):
        assert re.search(rf"│\s+{row} │\s+[0-9.]+ │", result.output), row  # the row and its wall time
    # as in `cli sweep`: one data order, so the lockstep rows are one group (not a group per member)
    assert "2 runs of gasm_cast step as one stacked model" in result.output
    assert "lockstep groups" not in result.output
