import numpy as np
import pytest
import torch

from pipeline.backbones import build_backbone, get_spec
from pipeline.core.errors import UserError


def semantic(name="dinov3_tiny"):
    return build_backbone(get_spec(name, "semantic"), None, True, 0)


def square_frames(top: int, left: int, size: int = 224, side: int = 32) -> torch.Tensor:
    frames = torch.full((1, 2, size, size, 3), 40, dtype=torch.uint8)
    frames[:, :, top : top + side, left : left + side] = 255
    return frames


@pytest.mark.parametrize("name", ["dinov3_tiny", pytest.param("dinov3_vitb16", marks=pytest.mark.slow)])
@pytest.mark.parametrize("corner", [(0, 0), (192, 192), (0, 192)])
def test_patch_tokens_are_row_major_14x14(name, corner):
    """A bright 32x32 square lights up exactly the 2x2 cells of the 14x14 map under it."""
    model = semantic(name)
    grid = model(square_frames(*corner))[0].reshape(14, 14, -1)
    distance = (grid - grid.reshape(196, -1).median(dim=0).values).norm(dim=-1)
    top4 = {divmod(int(i), 14) for i in distance.flatten().topk(4).indices}
    row, col = corner[0] // 16, corner[1] // 16
    assert top4 == {(row, col), (row, col + 1), (row + 1, col), (row + 1, col + 1)}


def test_no_cls_or_register_token_in_the_patches():
    model = semantic()
    frames = torch.randint(0, 256, (2, 1, 224, 224, 3), dtype=torch.uint8)
    out = model(frames)
    with torch.inference_mode():
        hidden = model.model(pixel_values=model.normalise(frames)).last_hidden_state
    assert hidden.shape[1] == 1 + 4 + 196 and out.shape == (2, 196, 64)
    assert torch.equal(out, hidden[:, 5:])
    for leading in range(5):  # CLS and the 4 registers appear nowhere in the output
        assert not torch.isclose(out, hidden[:, leading : leading + 1]).all(dim=-1).any()


def test_semantic_map_is_the_mean_over_frames():
    model = semantic()
    frames = torch.randint(0, 256, (1, 3, 224, 224, 3), dtype=torch.uint8)
    per_frame = torch.stack([model(frames[:, t : t + 1]) for t in range(3)]).mean(dim=0)
    assert torch.allclose(model(frames), per_frame, atol=1e-5)


def test_frames_are_resized_on_the_device_when_sizes_differ():
    model = build_backbone(get_spec("i3d_tiny", "motion", frames=16), None, True, 0)
    big = torch.randint(0, 256, (1, 16, 224, 224, 3), dtype=torch.uint8)
    assert model(big).shape == (1, 8, 64)


@pytest.mark.parametrize("layer,tokens,dim", [("res2", 16, 32), ("res3", 8, 64), ("res4", 8, 128), ("res5", 8, 256)])
def test_i3d_layers(layer, tokens, dim):
    spec = get_spec("i3d_tiny", "motion", layer=layer, frames=16)
    assert (spec.tokens, spec.dim) == (tokens, dim)
    model = build_backbone(spec, None, True, 0)
    out = model(torch.randint(0, 256, (2, 16, 112, 112, 3), dtype=torch.uint8))
    assert out.shape == (2, tokens, dim) and torch.isfinite(out).all()


def test_i3d_r50_res3_is_the_spatial_mean_of_blocks_3():
    from pytorchvideo.models.hub import i3d_r50

    spec = get_spec("i3d_r50", "motion", frames=16)
    assert (spec.tokens, spec.dim, spec.layer) == (8, 512, "res3")
    model = build_backbone(spec, None, True, 0)
    frames = torch.randint(0, 256, (1, 16, 224, 224, 3), dtype=torch.uint8)
    out = model(frames)
    torch.manual_seed(0)
    reference = i3d_r50(pretrained=False).eval()
    x = model.normalise(frames).view(1, 16, 3, 224, 224).transpose(1, 2)
    with torch.inference_mode():
        for block in reference.blocks[:4]:
            x = block(x)
    assert x.shape == (1, 512, 8, 28, 28)
    assert torch.allclose(out, x.mean(dim=(3, 4)).transpose(1, 2), atol=1e-4)


def test_frozen_and_seeded():
    a, b = semantic(), semantic()
    assert not any(p.requires_grad for p in a.parameters()) and not a.training
    frames = torch.randint(0, 256, (1, 1, 224, 224, 3), dtype=torch.uint8)
    assert torch.equal(a(frames), b(frames))
    other = build_backbone(get_spec("dinov3_tiny", "semantic"), None, True, 1)
    assert not torch.equal(a(frames), other(frames))


def test_bad_backbone_names_and_weights(tmp_path):
    with pytest.raises(UserError, match="unknown semantic backbone 'vit_huge'"):
        get_spec("vit_huge", "semantic")
    with pytest.raises(UserError, match="unknown I3D layer 'res9'"):
        get_spec("i3d_r50", "motion", layer="res9", frames=16)
    with pytest.raises(UserError, match="I3D weights .* do not exist"):
        build_backbone(get_spec("i3d_tiny", "motion", frames=16), str(tmp_path / "nope.pyth"), False, 0)
    with pytest.raises(UserError, match="could not load DINOv3 weights"):
        build_backbone(get_spec("dinov3_tiny", "semantic"), str(tmp_path / "nope"), False, 0)


def test_i3d_loads_a_local_checkpoint(tmp_path):
    spec = get_spec("i3d_tiny", "motion", frames=16)
    source = build_backbone(spec, None, True, 3)
    from pytorchvideo.models.hub import i3d_r50

    torch.manual_seed(3)
    full = i3d_r50(pretrained=False, **spec.arch)
    torch.save({"model_state": full.state_dict()}, tmp_path / "i3d.pyth")
    loaded = build_backbone(spec, str(tmp_path / "i3d.pyth"), False, 0)
    frames = torch.randint(0, 256, (1, 16, 112, 112, 3), dtype=torch.uint8)
    assert torch.equal(loaded(frames), source(frames))


def test_dinov3_loads_a_local_directory(tmp_path):
    model = semantic()
    model.model.save_pretrained(tmp_path / "dino")
    loaded = build_backbone(get_spec("dinov3_tiny", "semantic"), str(tmp_path / "dino"), False, 0)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 1, 224, 224, 3), dtype=np.uint8))
    assert torch.equal(loaded(frames), model(frames))


def test_hub_weights_offline_are_one_line_at_once_without_trying_the_hub(monkeypatch, tmp_path):
    from huggingface_hub import constants
    from transformers import DINOv3ViTModel

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(DINOv3ViTModel, "from_pretrained", lambda *a, **k: pytest.fail("the hub was tried"))
    spec = get_spec("dinov3_vitb16", "semantic")
    with pytest.raises(UserError, match="not in the local Hugging Face cache, and HF_HUB_OFFLINE is set"):
        build_backbone(spec, "some-org/not-cached-here", False, 0)


@pytest.mark.parametrize("name", ["dinov3_tiny", "patch_pixels"])
def test_a_semantic_backbone_keeps_frames_pooled_or_averaged(name):
    """The frame mean (the default) is the mean of the per-frame maps; `frames` keeps each frame, frame-major;
    pooling averages 2x2 blocks of each frame's 14x14 grid."""
    from pipeline.backbones.base import semantic_spec

    frames = torch.cat([square_frames(0, 0), square_frames(192, 192)], dim=1)  # 4 frames: 2 top-left, 2 bottom-right
    per_frame = build_backbone(get_spec(name, "semantic"), None, True, 0, "frames", 1)(frames)
    mean = build_backbone(get_spec(name, "semantic"), None, True, 0)(frames)
    assert per_frame.shape[1:] == (4 * 196, per_frame.shape[2]) and mean.shape[1] == 196
    assert torch.allclose(per_frame.unflatten(1, (4, 196)).mean(dim=1), mean, atol=1e-5)
    pooled = build_backbone(get_spec(name, "semantic"), None, True, 0, "frames", 2)(frames).unflatten(1, (4, 49))
    grid = per_frame.unflatten(1, (4, 14, 14))
    assert torch.allclose(pooled[:, 1, 0], grid[:, 1, :2, :2].mean(dim=(1, 2)), atol=1e-5)
    assert semantic_spec(get_spec(name, "semantic"), 8, "frames", 2).tokens == 8 * 49
    with pytest.raises(UserError, match="does not divide the 14x14 patch grid"):
        semantic_spec(get_spec(name, "semantic"), 8, "frames", 3)


def test_patch_pixels_tokens_are_where_the_object_is():
    model = build_backbone(get_spec("patch_pixels", "semantic"), None, True, 0, "frames", 1)
    tokens = model(square_frames(96, 32)).unflatten(1, (2, 14, 14))[0, 0]
    changed = (tokens - tokens[0, 13]).norm(dim=-1) > 1e-3  # against a background patch
    assert changed.nonzero().tolist() == [[6, 2], [6, 3], [7, 2], [7, 3]]
    with pytest.raises(UserError, match="has no weights"):
        build_backbone(get_spec("patch_pixels", "semantic"), "weights.pt", False, 0)
