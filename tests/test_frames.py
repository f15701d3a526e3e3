"""Fusion over space and time: every model takes per-frame semantic tokens [B, F, P, D]; positions and the
semantic graph know the frames; frame-averaged tokens [B, P, D] give what they gave before per-frame tokens
existed."""

import pytest
import torch

from fusion.layers.graph import generate_space_time_positions, space_time_neighbours
from fusion.layers.positions import PositionEmbedding
from fusion.models.registry import MODELS, build_model

# sum |logits| (or |verb| + |noun|) of each model at seed 0 on the inputs below, recorded with the code of
# commit 8c4b353, before per-frame tokens existed: frame-averaged caches must go on giving these.
BEFORE = {
    "label": {"gasm_cast": 8.731144, "gasm_cast_independent": 8.731144, "vanilla_cross_attention": 5.343648,
              "bcast_no_graph": 6.109076, "graph_full_width": 7.901513, "late_fusion": 2.520397,
              "temporal_transformer": 4.127237, "temporal_transformer_cross_task": 4.127237,
              "semantic_only": 4.013465, "motion_only": 8.64429},
    "verb_noun": {"gasm_cast": 13.087096, "gasm_cast_independent": 9.382854, "vanilla_cross_attention": 14.60253,
                  "bcast_no_graph": 11.072303, "graph_full_width": 13.763642, "late_fusion": 12.892721,
                  "temporal_transformer": 15.8076, "temporal_transformer_cross_task": 12.997652,
                  "semantic_only": 17.268237, "motion_only": 14.835907},
}  # fmt: skip
LABELS = {"label": {"label": 5}, "verb_noun": {"verb": 4, "noun": 6}}


def _outputs(name, task, semantic, motion):
    torch.manual_seed(0)
    model = build_model(name, semantic.shape[-1], motion.shape[-1], LABELS[task]).eval()
    with torch.no_grad():
        return model({"semantic": semantic, "motion": motion})


def _total(out):
    return sum(float(out[k].double().abs().sum()) for k in (("logits",) if "logits" in out else ("verb", "noun")))


@pytest.mark.parametrize("task", ["label", "verb_noun"])
def test_frame_averaged_tokens_give_what_they_gave_before(task):
    for name in BEFORE[task]:  # the models that existed then
        g = torch.Generator().manual_seed(1)
        semantic, motion = torch.randn(3, 16, 32, generator=g), torch.randn(3, 4, 16, generator=g)
        assert _total(_outputs(name, task, semantic, motion)) == pytest.approx(BEFORE[task][name], rel=1e-5), name


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_takes_per_frame_tokens(name):
    g = torch.Generator().manual_seed(2)
    frames, motion = torch.randn(2, 4, 9, 32, generator=g), torch.randn(2, 4, 16, generator=g)
    for task in LABELS:
        out = _outputs(name, task, frames, motion)
        keys = {"logits": (2, 5)} if task == "label" else {"verb": (2, 4), "noun": (2, 6), "action": (2, 24)}
        assert {k: tuple(out[k].shape) for k in keys} == keys and all(out[k].isfinite().all() for k in keys)
        # one frame in a time axis is a frame-averaged map
        single = _outputs(name, task, frames[:, :1], motion)
        assert all(torch.equal(single[k], _outputs(name, task, frames[:, 0], motion)[k]) for k in keys)


@pytest.mark.parametrize("name", ["gasm_cast", "vanilla_cross_attention", "semantic_only", "graph_full_width"])
def test_with_positions_the_order_of_frames_matters(name):
    g = torch.Generator().manual_seed(3)
    frames, motion = torch.randn(2, 4, 9, 32, generator=g), torch.randn(2, 4, 16, generator=g)
    forward, backward = (_outputs(name, "label", x, motion)["logits"] for x in (frames, frames.flip(1)))
    assert not torch.allclose(forward, backward, atol=1e-4)


def test_patches_join_the_same_and_neighbouring_patches_of_nearby_frames():
    positions = generate_space_time_positions(3 * 9, 3)  # 3 frames of a 3x3 grid
    assert positions.shape == (27, 3) and positions[9 + 4].tolist() == [1.0, 1.0, 1.0]
    near = space_time_neighbours(positions, radius=1.0, frame_window=1)
    centre = 9 + 4  # frame 1, row 1, column 1
    assert near[centre, 4] and near[centre, 18 + 4]  # the same patch one frame before and after
    assert near[centre, 9 + 1] and not near[centre, 9 + 0]  # a grid neighbour, not a diagonal at radius 1
    far = space_time_neighbours(generate_space_time_positions(4 * 9, 4), radius=1.0, frame_window=1)
    assert not far[4, 18 + 4]  # two frames apart


def test_space_time_positions_tell_frames_and_patches_apart():
    embedding = PositionEmbedding(32, grid=True)
    table = embedding.table(4 * 9, torch.device("cpu"), frames=4)
    assert table.shape == (36, 32)
    assert len({tuple(row.tolist()) for row in table}) == 36  # every (frame, patch) its own code
    assert torch.equal(embedding.table(9, torch.device("cpu")), embedding.table(9, torch.device("cpu"), frames=1))


@pytest.mark.parametrize("name", ["gasm_cast", "vanilla_cross_attention", "semantic_only", "motion_only"])
def test_an_attention_readout_pools_each_stream_with_a_learned_query(name):
    from fusion.models.config import FusionConfig

    g = torch.Generator().manual_seed(4)
    frames, motion = torch.randn(2, 4, 9, 32, generator=g), torch.randn(2, 4, 16, generator=g)
    torch.manual_seed(0)
    model = build_model(name, 32, 16, {"label": 5}, FusionConfig(readout="attention")).eval()
    assert any(n.startswith("trunk.readouts.") for n, _ in model.named_parameters())
    with torch.no_grad():
        logits = model({"semantic": frames, "motion": motion})["logits"]
    assert logits.shape == (2, 5) and logits.isfinite().all()


def test_synthetic_direction_only_videos_differ_only_in_direction(tmp_path):
    import json

    from click.testing import CliRunner

    from cli import main

    result = CliRunner().invoke(main, ["synth", "--dataset", "ssv2", "--direction-only", "--out", str(tmp_path / "d"),
                                       "--train", "4", "--validation", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    labels = json.loads((tmp_path / "d" / "labels.json").read_text())
    assert sorted(labels) == ["Moving square downwards", "Moving square left to right", "Moving square right to left",
                              "Moving square upwards"]  # fmt: skip
    refused = CliRunner().invoke(main, ["synth", "--dataset", "epic100", "--direction-only", "--out", str(tmp_path)])
    assert refused.exit_code == 2 and "--direction-only" in refused.output


def test_bench_fusion_takes_per_frame_shapes():
    from click.testing import CliRunner

    from cli import main

    args = ["bench", "fusion", "--semantic-shape", "2x9x32", "--motion-shape", "4x16", "--batch-sizes", "2",
            "--repeats", "1", "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "semantic 2x9x32" in " ".join(result.output.split()) and "gasm_cast" in result.output
    bad = CliRunner().invoke(main, [*args[:3], "2x9x32x1", *args[4:]])
    assert bad.exit_code == 2 and "FRAMESxTOKENSxDIM" in bad.output
    narrow = CliRunner().invoke(main, [*args[:3], "4x9", *args[4:]])  # 9 wide: not a multiple of 8 heads
    assert narrow.exit_code == 2 and "Traceback" not in narrow.output and "8 attention heads" in narrow.output
