"""cli cache merge (pipeline/cache/merge.py): caches of the same features concatenate; others are refused."""

import json

import numpy as np
from click.testing import CliRunner
from conftest import arrays_and_attrs

from cli import main
from pipeline.synth.features import make_feature_cache


def test_merge_concatenates_and_refuses_mismatches(tmp_path):
    a = make_feature_cache(tmp_path / "a", 10, "ssv2", semantic=(4, 8), motion=(2, 4), shard_size=4, failed_rows=(9,))
    b = make_feature_cache(tmp_path / "b", 7, "ssv2", semantic=(4, 8), motion=(2, 4), split="validation", shard_size=4)
    result = CliRunner().invoke(
        main, ["cache", "merge", str(a), str(b), "--out", str(tmp_path / "m"), "--shard-size", "5"]
    )
    assert result.exit_code == 0, result.output
    merged, attrs = arrays_and_attrs(tmp_path / "m")
    (left, _), (right, _) = arrays_and_attrs(a), arrays_and_attrs(b)
    for name in ("semantic", "motion", "label", "clip_id", "done"):
        expected = np.concatenate([left[name], right[name]])
        assert np.array_equal(merged[name], expected, equal_nan=expected.dtype.kind == "f"), name
    assert attrs["num_clips"] == 17 and attrs["split"] == "train+validation" and attrs["shard_size"] == 5
    assert [
        json.loads(line)["row"]
        for line in (tmp_path / "m" / "failures" / "shard-000001.jsonl").read_text().splitlines()
    ] == [9]
    duplicate = CliRunner().invoke(main, ["cache", "merge", str(a), str(a), "--out", str(tmp_path / "d")])
    assert duplicate.exit_code == 2 and "more than one of the caches" in duplicate.output
    other = make_feature_cache(tmp_path / "o", 5, "ssv2", semantic=(4, 16), motion=(2, 4), shard_size=4)
    mismatch = CliRunner().invoke(main, ["cache", "merge", str(a), str(other), "--out", str(tmp_path / "x")])
    assert mismatch.exit_code == 2 and "'backbones' differ" in mismatch.output
