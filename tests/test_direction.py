"""What per-frame tokens buy, on real pixels: clips that differ only in the direction a square moves (left, right,
up, down), through the `patch_pixels` backbone and extraction's own frame reduction. `gasm_cast` learns the
direction from per-frame tokens and cannot from the frame mean, which only tells horizontal from vertical.

The shapes are cut down to fit the suite (4 frames, each patch grid pooled to 2 x 2, no motion stream, 256
training clips); docs/fusion.md gives the same comparison at 8 x 49 tokens through `cli extract` and `cli
fuse-train`, with the commands."""

import numpy as np
import pytest
import torch

import pipeline.backbones.patch_pixels  # noqa: F401 - registers the backbone
from fusion.models.registry import build_model
from pipeline.backbones.base import build_backbone, get_spec
from pipeline.synth.render import MOTIONS, render_clip

FRAMES, POOL, SIZE = 4, 7, 224  # 14 x 14 patches pooled 7 x 7: a 2 x 2 grid a frame


def _tokens(clips: int, seed: int, reduce: str) -> tuple[torch.Tensor, torch.Tensor]:
    """[clips, FRAMES * 4, 64] ("frames") or [clips, 4, 64] ("mean") patch_pixels tokens, and the labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(clips) % len(MOTIONS)
    video = np.stack([render_clip(rng, "square", list(MOTIONS)[y], FRAMES, SIZE, SIZE) for y in labels])
    backbone = build_backbone(get_spec("patch_pixels", "semantic"), None, True, 0, reduce, POOL)
    # the backbone normalises uint8 frames as extraction gives them; its inference-mode output is cloned to train on
    return backbone(torch.from_numpy(video)).clone(), torch.from_numpy(labels)


def _validation_top1(reduce: str, steps: int = 300) -> float:
    train, labels = _tokens(256, 0, reduce)
    val, val_labels = _tokens(64, 1, reduce)
    mean, std = train.mean((0, 1)), train.std((0, 1)).clamp_min(1e-6)  # standardised as training does
    train, val = (train - mean) / std, (val - mean) / std
    if reduce == "frames":  # the time axis the data path gives models of a per-frame cache
        train, val = train.unflatten(1, (FRAMES, -1)), val.unflatten(1, (FRAMES, -1))
    torch.manual_seed(0)
    model = build_model("gasm_cast", 64, 16, {"label": len(MOTIONS)})
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    order = torch.Generator().manual_seed(0)
    no_motion = torch.zeros(32, 4, 16)
    for _ in range(steps):
        batch = torch.randperm(len(labels), generator=order)[:32]
        loss = torch.nn.functional.cross_entropy(model({"semantic": train[batch], "motion": no_motion})["logits"],
                                                 labels[batch])  # fmt: skip
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        logits = model({"semantic": val, "motion": torch.zeros(len(val), 4, 16)})["logits"]
    return float((logits.argmax(1) == val_labels).float().mean())


def test_the_frame_mean_holds_no_direction_but_the_axis():
    frames, labels = _tokens(8, 2, "frames")
    mean, _ = _tokens(8, 2, "mean")
    assert frames.shape == (8, FRAMES * 4, 64) and mean.shape == (8, 4, 64)
    assert torch.allclose(frames.unflatten(1, (FRAMES, -1)).mean(1), mean, atol=1e-5)  # the same clips


# slow (make test-all): 300 training steps each. The default tier checks the same at small size: the frame mean
# holds no direction (above), and a model's output depends on the frames' order (tests/test_frames.py).
@pytest.mark.slow
@pytest.mark.parametrize(("reduce", "low", "high"), [("frames", 0.9, 1.0), ("mean", 0.0, 0.6)])
def test_gasm_cast_learns_direction_from_per_frame_tokens_only(reduce, low, high):
    assert low <= _validation_top1(reduce) <= high
