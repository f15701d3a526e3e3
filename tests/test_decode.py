from fractions import Fraction

import av
import numpy as np
import pytest

from pipeline.datasets import read_dataset
from pipeline.datasets.base import Clip
from pipeline.extract_config import IMAGE_FRAMES, SamplingConfig
from pipeline.synth.ssv2 import write_webm
from pipeline.video.clip_dataset import ClipFrames, read_clip
from pipeline.video.decode import ClipDecodeError, count_frames

IMAGE_SAMPLING = SamplingConfig(semantic_frames=IMAGE_FRAMES)  # the defaults, as an image backbone resolves them


def one_view(*args):
    """read_clip of a one-view sampling: its view axis, then that view's frames."""
    out = read_clip(*args)
    assert all(frames.shape[0] == 1 for frames in out.values())
    return {kind: frames[0] for kind, frames in out.items()}


def numbered_frames(count: int, height: int, width: int) -> np.ndarray:
    """Frame t is a flat grey of brightness 6*t, so a decoded frame tells which one it was."""
    return np.stack([np.full((height, width, 3), 6 * t, dtype=np.uint8) for t in range(count)])


def write_mp4(path, frames, fps):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


@pytest.mark.parametrize("height,width", [(120, 160), (160, 90), (75, 131)])  # landscape, portrait, odd
def test_read_clip_shapes_and_frame_choice(tmp_path, height, width):
    path = tmp_path / "v.webm"
    write_webm(path, numbered_frames(30, height, width))
    out = one_view(Clip("v", str(path)), SamplingConfig(motion_frames=16, semantic_frames=8), 64)
    assert out["motion"].shape == (16, 64, 64, 3) and out["semantic"].shape == (8, 64, 64, 3)
    brightness = out["motion"].reshape(16, -1).mean(axis=1) / 6
    expected = np.floor((np.arange(16) + 0.5) * 30 / 16)
    assert np.allclose(brightness, expected, atol=0.6)


def test_short_clip_repeats_frames(tmp_path):
    path = tmp_path / "short.webm"
    write_webm(path, numbered_frames(5, 64, 64))
    out = one_view(Clip("s", str(path)), IMAGE_SAMPLING, 32)
    levels = np.round(out["motion"].reshape(16, -1).mean(axis=1) / 6).astype(int)
    assert levels.tolist() == sorted(levels.tolist()) and set(levels.tolist()) == {0, 1, 2, 3, 4}


def test_odd_frame_rate_and_segment_by_seconds(tmp_path):
    path = tmp_path / "odd.mp4"
    write_mp4(path, numbered_frames(30, 64, 96), Fraction(30000, 1001))
    # 1.0 s .. 2.0 s at 29.97 fps: 30 frames exist, the segment holds frames 30.. which do not; use 0.5-0.9 s
    clip = Clip("seg", str(path), start=0.5, stop=0.9)
    assert count_frames(clip) == 12  # frames 15..26 have times in [0.5, 0.9)
    levels = np.round(
        one_view(clip, SamplingConfig(motion_frames=4, semantic_frames=2), 32)["motion"].reshape(4, -1).mean(axis=1) / 6
    )
    assert levels.min() >= 15 and levels.max() <= 26


def test_bad_files_raise_clear_errors(tmp_path):
    good = tmp_path / "good.webm"
    write_webm(good, numbered_frames(40, 120, 160))
    truncated = tmp_path / "truncated.webm"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    empty = tmp_path / "empty.webm"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    cases = {
        tmp_path / "missing.webm": "missing",
        empty: "empty file",
        garbage: "garbage.mp4: .*Invalid data",
        truncated: "truncated",
    }
    for path, words in cases.items():
        with pytest.raises(ClipDecodeError, match=words) as info:
            one_view(Clip(path.stem, str(path)), IMAGE_SAMPLING, 32)
        assert info.value.stage in ("open", "decode")


def test_dataset_item_reports_failures_instead_of_raising(tmp_path):
    frames = ClipFrames([Clip("m", str(tmp_path / "nope.webm"))], IMAGE_SAMPLING, 32, timeout=5)
    item = frames[0]
    assert item["stage"] == "open" and "does not exist" in item["error"]


def test_real_fixture_videos_decode(real_fixtures):
    videos = sorted((real_fixtures / "videos").rglob("*.*"))
    videos = [v for v in videos if v.suffix in {".mp4", ".avi", ".webm"}]
    assert len(videos) >= 8
    for video in videos:
        out = one_view(Clip(video.stem, str(video)), IMAGE_SAMPLING, 64)
        assert out["motion"].shape == (16, 64, 64, 3), video
        assert out["motion"].std() > 0, f"{video} decoded to flat frames"


def test_real_no_duration_webm_counts_frames(real_fixtures):
    video = real_fixtures / "videos" / "edge_cases" / "moviepy_no_duration.webm"
    assert count_frames(Clip("nd", str(video))) == 74


def test_real_ssv2_mini_and_epic_frames(real_fixtures, tmp_path):
    from conftest import real_epic_frames_root

    for clip in read_dataset("ssv2", real_fixtures / "ssv2-mini", "train").clips:
        assert 47 <= count_frames(clip) <= 58
    epic = read_dataset("epic100", real_epic_frames_root(real_fixtures, tmp_path), "validation")
    out = one_view(epic.clips[0], IMAGE_SAMPLING, 224)
    assert out["motion"].shape == (16, 224, 224, 3) and np.array_equal(out["motion"][0], out["motion"][-1])


def test_truncated_mp4_with_header_first_is_a_failure(tmp_path):
    path = tmp_path / "full.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(50):
            image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ClipDecodeError, match="truncated|Invalid|error"):
        one_view(Clip("cut", str(cut)), IMAGE_SAMPLING, 32)


def reference_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """The reference preprocessing, written independently of the video path: a full-size RGB frame, its centre
    square (offsets even), resized to `size` by PIL with its antialiased bilinear filter (as image processors do)."""
    from PIL import Image

    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2 // 2 * 2, (width - side) // 2 // 2 * 2
    square = rgb[top : top + side, left : left + side]
    return np.asarray(Image.fromarray(square).resize((size, size), Image.BILINEAR)).astype(int)


def textured_frames(count: int, height: int, width: int) -> np.ndarray:
    """Smooth colour waves that move: content with structure at several scales, as real frames have."""
    y, x = np.mgrid[0:height, 0:width] / 12.0
    frames = [np.stack([np.sin(x + t / 3 + c) * np.cos(y * (c + 1) / 2 - t / 5) for c in range(3)], axis=-1)
              for t in range(count)]  # fmt: skip
    return ((np.stack(frames) + 1) * 127.5).astype(np.uint8)


@pytest.mark.parametrize("height,width", [(120, 200), (200, 110), (240, 427)])
def test_video_frames_match_the_reference_preprocessing(tmp_path, height, width):
    from pipeline.video.sampling import uniform_indices

    path = tmp_path / "t.webm"
    write_webm(path, textured_frames(20, height, width))
    out = one_view(Clip("t", str(path)), SamplingConfig(motion_frames=4, semantic_frames=2), 64)
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    for k, position in enumerate(uniform_indices(len(decoded), 4)):
        assert (
            np.abs(out["motion"][k].astype(int) - reference_square(decoded[position], 64)).mean() < 1.5
        )  # measured <= 0.65


def test_real_clips_match_the_reference_preprocessing(real_fixtures):
    from pipeline.video.sampling import uniform_indices

    for clip in read_dataset("ssv2", real_fixtures / "ssv2-mini", "train").clips:
        out = one_view(clip, IMAGE_SAMPLING, 224)
        with av.open(clip.source) as container:
            decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        for k, position in enumerate(uniform_indices(len(decoded), 16)):
            assert (
                np.abs(out["motion"][k].astype(int) - reference_square(decoded[position], 224)).mean() < 1.5
            )  # measured <= 0.2
