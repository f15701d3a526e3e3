import numpy as np
import pytest

from pipeline.video.sampling import semantic_positions, uniform_indices


def test_uniform_indices_cover_the_clip_in_order():
    idx = uniform_indices(100, 16)
    assert idx.shape == (16,) and np.all(np.diff(idx) > 0) and idx[0] >= 0 and idx[-1] <= 99
    # segment centres: the first lies in the first 1/16th, the last in the last 1/16th
    assert idx[0] < 100 / 16 and idx[-1] >= 100 - 100 / 16


def test_short_clips_repeat_frames():
    idx = uniform_indices(5, 16)
    assert idx.shape == (16,) and set(idx.tolist()) == {0, 1, 2, 3, 4} and np.all(np.diff(idx) >= 0)


def test_semantic_center_and_errors():
    assert semantic_positions(9, 8, "center").tolist() == [4]
    assert semantic_positions(9, 8, "mean").shape == (8,)
    with pytest.raises(ValueError):
        semantic_positions(9, 8, "max")
    with pytest.raises(ValueError):
        uniform_indices(0, 4)
