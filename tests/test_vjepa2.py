"""V-JEPA 2 and DINOv3 weights saved by transformers: the adapters equal transformers' own model and processor
on the same frames, read the architecture from the weights, and their caches go through extract and sweep."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from pipeline.backbones import build_backbone, get_spec
from pipeline.core.errors import UserError
from pipeline.datasets import DataSource
from pipeline.extract_config import SamplingConfig
from pipeline.video.clip_dataset import read_clip

# Not vjepa2_tiny's architecture (64 wide, 2 blocks, 128 px): the adapter must take it from config.json.
SAVED = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, crop_size=96, patch_size=16,
             tubelet_size=2, mlp_ratio=4.0)  # fmt: skip
SIZE = int(96 * 256 / 224)  # the processor's shortest edge before its 96 px centre crop: 109
GRID = 96 // 16


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def saved_vjepa2(tmp_path_factory):
    from transformers import VJEPA2Config, VJEPA2Model

    torch.manual_seed(5)
    config = VJEPA2Config(**SAVED, pred_hidden_size=32, pred_num_hidden_layers=1, pred_num_attention_heads=4)
    folder = tmp_path_factory.mktemp("weights") / "vjepa2"
    VJEPA2Model(config).save_pretrained(folder)
    return folder


def reference_steps(folder, frames: torch.Tensor, hidden: int | None = None) -> torch.Tensor:
    """transformers' own V-JEPA 2 on uint8 frames [T, S, S, 3]: -> [T / 2, GRID * GRID, D] (the encoder's normed
    output, or block `hidden`'s output)."""
    from transformers import VJEPA2Model, VJEPA2VideoProcessor

    pixels = VJEPA2VideoProcessor(crop_size=SAVED["crop_size"])(frames.numpy(), return_tensors="pt")
    model = VJEPA2Model.from_pretrained(folder).eval()
    with torch.inference_mode():
        out = model(pixel_values_videos=pixels["pixel_values_videos"], skip_predictor=True, output_hidden_states=True)
    tokens = out.last_hidden_state if hidden is None else out.hidden_states[hidden]
    return tokens[0].unflatten(0, (frames.shape[0] // 2, GRID * GRID))


def adapter(folder, kind: str, frames: int, reduce: str = "mean", pool: int = 1, layer: str | None = None):
    spec = get_spec("vjepa2_tiny", kind, layer=layer, frames=frames, weights=str(folder))
    if kind == "semantic":
        from pipeline.backbones.base import semantic_spec

        spec = semantic_spec(spec, frames, reduce, pool)
    return spec, build_backbone(spec, str(folder), False, 0, reduce, pool)


def check_equals_transformers(folder, frames: torch.Tensor) -> None:
    """Both slots, every reduction and 2x2 pooling, against the reference's tokens rearranged by hand."""
    reference = reference_steps(folder, frames)  # [steps, 36, 48]
    steps = frames.shape[0] // 2
    spec, motion = adapter(folder, "motion", frames.shape[0])
    assert (spec.tokens, spec.dim, spec.input_size, spec.arch["crop_size"]) == (steps, 48, SIZE, 96)
    assert (motion(frames[None])[0] - reference.mean(dim=1)).abs().max() <= 1e-4
    _, every = adapter(folder, "semantic", frames.shape[0], "frames")
    assert (every(frames[None])[0] - reference.flatten(0, 1)).abs().max() <= 1e-4
    _, mean = adapter(folder, "semantic", frames.shape[0], "mean")
    assert (mean(frames[None])[0] - reference.mean(dim=0)).abs().max() <= 1e-4
    spec, pooled = adapter(folder, "semantic", frames.shape[0], "frames", 2)
    blocks = reference.reshape(steps, GRID // 2, 2, GRID // 2, 2, 48).mean(dim=(2, 4)).reshape(steps * 9, 48)
    assert spec.tokens == steps * 9 and (pooled(frames[None])[0] - blocks).abs().max() <= 1e-4


def test_vjepa2_equals_transformers_model_and_processor(saved_vjepa2):
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, SIZE, SIZE, 3), dtype=np.uint8))
    check_equals_transformers(saved_vjepa2, frames)


def test_vjepa2_equals_transformers_on_real_clips(saved_vjepa2, real_fixtures):
    """Frames of real SSv2 clips as extraction decodes them (the centre square at the backbone's input size)."""
    clips = DataSource("ssv2", real_fixtures / "ssv2-mini", "validation").read().clips[:2]
    for clip in clips:
        frames = read_clip(clip, SamplingConfig(semantic_frames=16), SIZE)["motion"][0]
        check_equals_transformers(saved_vjepa2, torch.from_numpy(frames))


def test_vjepa2_taps_a_block_and_groups_frames_in_tubelets(saved_vjepa2):
    frames = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8))
    spec, motion = adapter(saved_vjepa2, "motion", 4, layer="block2")
    assert spec.layer == "block2" and len(motion.steps.encoder.layer) == 2
    reference = reference_steps(saved_vjepa2, frames, hidden=2)
    assert (motion(frames[None])[0] - reference.mean(dim=1)).abs().max() <= 1e-4
    with pytest.raises(UserError, match="blocks 1..3"):
        adapter(saved_vjepa2, "motion", 4, layer="block4")
    with pytest.raises(UserError, match="unknown V-JEPA 2 layer 'res3'"):
        get_spec("vjepa2_tiny", "motion", layer="res3", frames=16)
    with pytest.raises(UserError, match="multiple of 2, got 15"):
        get_spec("vjepa2_tiny", "motion", frames=15)
    published = get_spec("vjepa2_vitl", "motion", frames=16)
    assert (published.tokens, published.dim, published.input_size) == (8, 1024, 292)


def test_dinov3_equals_transformers_and_reads_its_architecture(tmp_path):
    """Weights of another size under the dinov3_vitl16 name: the spec follows their config.json."""
    from transformers import DINOv3ViTConfig, DINOv3ViTImageProcessor, DINOv3ViTModel

    torch.manual_seed(2)
    config = DINOv3ViTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)
    DINOv3ViTModel(config).save_pretrained(tmp_path / "dino")
    spec = get_spec("dinov3_vitl16", "semantic", weights=str(tmp_path / "dino"))
    assert (spec.dim, spec.tokens, spec.arch["num_hidden_layers"]) == (48, 196, 2)
    assert get_spec("dinov3_vitl16", "semantic").dim == 1024
    model = build_backbone(spec, str(tmp_path / "dino"), False, 0, "frames", 1)
    frames = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (1, 2, 224, 224, 3), dtype=np.uint8))
    pixels = DINOv3ViTImageProcessor()(list(frames[0].numpy()), return_tensors="pt")["pixel_values"]
    reference = DINOv3ViTModel.from_pretrained(tmp_path / "dino").eval()
    with torch.inference_mode():
        tokens = reference(pixel_values=pixels).last_hidden_state[:, 1 + config.num_register_tokens :]
    assert (model(frames)[0] - tokens.flatten(0, 1)).abs().max() <= 1e-4


@pytest.fixture(scope="module")
def spacetime_caches(ssv2_root, tmp_path_factory):
    """`cli extract` of V-JEPA 2 space-time tokens (16 frames: 8 steps of 8x8, pooled 2x2) beside I3D."""
    out = tmp_path_factory.mktemp("vjepa2-cli")
    config = out / "frames.yaml"
    config.write_text("sampling: {semantic_reduce: frames, semantic_pool: 2}\n")
    caches = []
    for split in ("train", "validation"):
        cache = out / split
        result = run("extract", "--dataset", "ssv2", "--data-root", ssv2_root, "--split", split, "--cache", cache,
                     "--config", config, "--semantic", "vjepa2_tiny", "--motion", "i3d_tiny", "--random-init",
                     "--workers", 0, "--device", "cpu", "--shard-size", 4)  # fmt: skip
        assert result.exit_code == 0, result.output
        caches.append(cache)
    return caches, result.output


def test_extract_states_the_vjepa2_cache_and_cache_tools_take_it(spacetime_caches):
    (train, validation), output = spacetime_caches
    assert "semantic 128x64, motion 8x64" in output  # 8 steps x 16 pooled patches, before anything is written
    attrs = json.loads((train / "zarr.json").read_text())["attributes"]["backbones"]["semantic"]
    assert (attrs["frames"], attrs["steps"], attrs["grid"], attrs["layer"]) == (16, 8, 4, "last_hidden_state")
    assert run("cache", "verify", "--deep", train).exit_code == 0
    assert run("cache", "stats", train).exit_code == 0
    info = run("cache", "info", train)
    assert info.exit_code == 0 and "vjepa2_tiny" in info.output


def test_sweep_runs_on_vjepa2_caches(spacetime_caches, tmp_path):
    (train, validation), _ = spacetime_caches
    spec = tmp_path / "spec.yaml"
    spec.write_text("base:\n  overrides:\n    data: {batch_size: 4}\n    device: cpu\n"
                    "members: [{model: gasm_cast}, {model: attentive_probe}]\n")  # fmt: skip
    result = run("sweep", "--spec", spec, "--cache", train, "--val-cache", validation, "--out", tmp_path / "sweep",
                 "--epochs", 1, "--no-progress", "--select-on", "validation")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert len(summary["members"]) == 2
