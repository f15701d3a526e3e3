"""Forged or damaged cache files are one line and exit status 2 before any work, never a traceback, a hang or an
allocation sized by a forged number; a forged HDF5 import leaves nothing behind."""

import json
import os
import shutil
from pathlib import Path

import pytest
import zarr
from click.testing import CliRunner
from conftest import small_caches

from cli import main

DIMS = {"semantic": (4, 8), "motion": (2, 4)}


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return small_caches(tmp_path_factory.mktemp("caches"), 32, 16, dims=DIMS, failed_rows=(3,))


def _failure(path: Path, line: str) -> None:
    with (path / "failures" / "shard-000000.jsonl").open("a") as handle:
        handle.write(line + "\n")


def _attr(key, value):
    return lambda path: zarr.open_group(str(path), mode="r+").attrs.update({key: value})


def _array_meta(name, key, value):
    def forge(path):
        meta_path = path / name / "zarr.json"
        meta = json.loads(meta_path.read_text())
        meta[key] = value(meta[key]) if callable(value) else value
        meta_path.write_text(json.dumps(meta))

    return forge


FORGERIES = {
    "row -1": (
        lambda p: _failure(p, json.dumps({"clip_id": "train-000031", "row": -1, "stage": "decode", "error": "x"})),
        "row -1 is not a row of the cache",
    ),  # fmt: skip
    "row of another clip": (
        lambda p: _failure(p, json.dumps({"clip_id": "train-000007", "row": 6, "stage": "decode", "error": "x"})),
        "row 6 holds clip train-000006, not train-000007",
    ),  # fmt: skip
    "garbage failure line": (lambda p: _failure(p, "{not json"), "shard-000000.jsonl:2 is not JSON"),
    "failure without keys": (lambda p: _failure(p, '{"row": 1}'), "expected an object with clip_id, row, stage"),
    "shard_size 0": (_attr("shard_size", 0), "attrs shard_size 0 is not an integer in 1..65536"),
    "num_clips 10**15": (_attr("num_clips", 10**15), "expected 1000000000000000 rows (attrs num_clips)"),
    "label field of no array": (_attr("label_fields", ["label", "nope"]), "array 'nope' is missing"),
    "float64 features": (_array_meta("semantic", "data_type", "float64"), "array semantic is float64"),
    "negative shape": (_array_meta("motion", "shape", lambda s: [-5, *s[1:]]), "cache "),
}


@pytest.mark.parametrize("forgery", FORGERIES, ids=list(FORGERIES))
@pytest.mark.parametrize("command", ["verify", "stats", "fuse-train"])
def test_forged_cache_is_one_line(caches, tmp_path, forgery, command):
    forge, words = FORGERIES[forgery]
    cache = Path(shutil.copytree(caches[0], tmp_path / "train"))
    forge(cache)
    args = {
        "verify": ["cache", "verify", str(cache)],
        "stats": ["cache", "stats", str(cache)],
        "fuse-train": [
            "fuse-train",
            "--cache",
            str(cache),
            "--val-cache",
            str(caches[1]),
            "--out",
            str(tmp_path / "run"),
            "--model",
            "late_fusion",
            "--device",
            "cpu",
            "--no-progress",
        ],  # fmt: skip
    }[command]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.output, result.exception)
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and words in last, result.output
    assert not (tmp_path / "run").exists()


def test_a_forged_hdf5_import_leaves_nothing_behind(caches, tmp_path):
    import h5py

    exported = tmp_path / "c.h5"
    assert CliRunner().invoke(main, ["cache", "export", str(caches[0]), "--out", str(exported)]).exit_code == 0
    with h5py.File(exported, "r+") as h5:
        attrs = json.loads(h5.attrs["gasm_cast_attrs"])
        h5.attrs["gasm_cast_attrs"] = json.dumps({**attrs, "num_clips": 10**15})
    result = CliRunner().invoke(main, ["cache", "import", str(exported), "--cache", str(tmp_path / "imported")])
    assert result.exit_code == 2 and "expected 1000000000000000 rows" in result.output, result.output
    with h5py.File(exported, "r+") as h5:
        failures = json.loads(h5.attrs["gasm_cast_failures"])
        h5.attrs["gasm_cast_attrs"] = json.dumps(attrs)
        h5.attrs["gasm_cast_failures"] = json.dumps([{**failures[0], "row": 5}])  # row 5 is another clip
    result = CliRunner().invoke(main, ["cache", "import", str(exported), "--cache", str(tmp_path / "imported")])
    assert result.exit_code == 2 and "row 5 holds clip train-000005, not train-000003" in result.output
    assert sorted(os.listdir(tmp_path)) == ["c.h5"]
