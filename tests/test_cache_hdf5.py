"""cli cache export / import (pipeline/cache/hdf5.py): a cache and its HDF5 file round-trip bit for bit."""

import h5py
import numpy as np
from click.testing import CliRunner
from conftest import arrays_and_attrs

from cli import main
from pipeline.synth.features import make_feature_cache


def test_hdf5_export_import_round_trips_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths as a user types them, relative to where they are
    cache = make_feature_cache(
        tmp_path / "c", 37, "epic100", semantic=(9, 16), motion=(2, 8), shard_size=8, failed_rows=(4, 30)
    )
    runner = CliRunner()
    exported = runner.invoke(main, ["cache", "export", "c", "--out", "f.h5"])
    assert exported.exit_code == 0, exported.output
    with h5py.File(tmp_path / "f.h5", "r") as h5:
        assert h5["semantic"].shape == (37, 9, 16) and h5["verb"].shape == (37,) and h5["clip_id"].shape == (37,)
    result = runner.invoke(main, ["cache", "import", str(tmp_path / "f.h5"), "--cache", str(tmp_path / "back")])
    assert result.exit_code == 0, result.output
    (left, left_attrs), (right, right_attrs) = arrays_and_attrs(cache), arrays_and_attrs(tmp_path / "back")
    assert left.keys() == right.keys() and left_attrs == right_attrs
    for name in left:
        a, b = left[name], right[name]
        if a.dtype.kind == "f":
            assert a.tobytes() == b.tobytes(), name  # bit for bit, NaN rows included
        else:
            assert np.array_equal(a, b), name
    assert (cache / "failures" / "shard-000000.jsonl").read_text() == (
        tmp_path / "back" / "failures" / "shard-000000.jsonl"
    ).read_text()
    assert (
        runner.invoke(main, ["cache", "import", str(tmp_path / "f.h5"), "--cache", str(tmp_path / "back")]).exit_code
        == 2
    )
