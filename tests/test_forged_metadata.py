"""A cache whose metadata lies is refused in one line (exit 2) by every command, in bounded memory, and no byte
of it changes: the stored bytes vouch for the clip count, the shard size and the tokens a clip
(pipeline/cache/anchors.py)."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT, small_caches

from cli import main

BIG = 10**12


def snapshot(cache: Path) -> dict[str, str]:
    """Every file of a cache and its sha256."""
    files = [f for f in cache.rglob("*") if f.is_file()]
    return {str(f.relative_to(cache)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def forge(cache: Path, node: str, change) -> None:
    """Edit the zarr.json of `node` ("" for the group) with `change(meta)`, as a hand with an editor would."""
    file = cache / node / "zarr.json"
    meta = json.loads(file.read_text())
    change(meta)
    file.write_text(json.dumps(meta))


def set_attr(key, value):
    return lambda meta: meta["attributes"].__setitem__(key, value)


def set_rows(rows):
    def change(meta):
        meta["shape"][0] = rows

    return change


def set_chunk_rows(rows):
    def change(meta):
        meta["chunk_grid"]["configuration"]["chunk_shape"][0] = rows

    return change


@pytest.fixture
def cache(tmp_path):
    return small_caches(tmp_path, 20, 6, shard_size=8)[0]


def refused(cache: Path, *args: str, words: str) -> None:
    before = snapshot(cache)
    for command in (["cache", "info"], ["cache", "verify"], ["cache", "verify", "--deep"], ["cache", "repair"]):
        result = CliRunner().invoke(main, [*command, str(cache), *args])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and words in lines[0], (command, result.output)
    assert snapshot(cache) == before


@pytest.mark.parametrize(
    ("size", "words"),
    [
        (10**15, "attrs shard_size 1000000000000000 is not an integer in 1..65536"),
        (4096, "attrs shard_size 4096 disagrees with array semantic's shards of 8 rows"),
    ],
)
def test_a_forged_shard_size_is_named_and_repair_deletes_nothing(cache, size, words):
    forge(cache, "", set_attr("shard_size", size))
    refused(cache, words=words)


def test_a_shard_size_forged_everywhere_in_the_metadata_is_caught_by_the_stored_done_chunks(cache):
    forge(cache, "", set_attr("shard_size", 16))
    for name in ("semantic", "motion"):
        forge(cache, name, set_chunk_rows(16))  # the shard shape; the inner chunk stays one clip
    forge(cache, "done", set_chunk_rows(16))
    refused(cache, words="attrs shard_size 16 disagrees with the stored done chunk 0, which holds 8 rows")


def test_a_forged_clip_count_is_caught_by_the_clip_id_chunks(cache):
    forge(cache, "", set_attr("num_clips", BIG))
    for name in ("semantic", "motion", "clip_id", "label", "done"):
        forge(cache, name, set_rows(BIG))
    refused(cache, words=f"array clip_id declares {BIG} clips in")
    forge(cache, "clip_id", set_chunk_rows(BIG))  # one chunk of the forged size: its stored count still says 20
    refused(cache, words=f"array clip_id declares chunks of {BIG} clips, but its first chunk stores 20")


def test_forged_token_counts_are_caught_by_the_stored_chunks(cache):
    def widen(meta):
        meta["shape"][2] = 10**10
        meta["chunk_grid"]["configuration"]["chunk_shape"][2] = 10**10
        meta["codecs"][0]["configuration"]["chunk_shape"][2] = 10**10

    forge(cache, "semantic", widen)
    refused(cache, words="semantic features are stored as (16, 10000000000) a clip, but attrs backbones.semantic "
                         "makes 16 tokens x 32 wide")  # fmt: skip

    def backbone(meta):
        meta["attributes"]["backbones"]["semantic"]["dim"] = 10**10

    forge(cache, "", backbone)  # the attrs agree with the forged shape: the stored chunks still do not
    refused(cache, words="array semantic declares 16 x 10000000000 values a clip (320000000000 bytes), but its "
                         "stored chunks hold 1024 bytes a clip")  # fmt: skip


def test_inner_chunks_that_do_not_hold_one_clip_are_refused(cache):
    forge(cache, "semantic", lambda meta: meta["codecs"][0]["configuration"]["chunk_shape"].__setitem__(0, 2))
    refused(cache, words="expected one clip a chunk (1, 16, 32)")


def test_a_label_out_of_range_is_named(cache):
    import zarr

    zarr.open_group(str(cache), mode="r+")["label"][0] = 10**9
    refused(cache, words="label label of row 0 is 1000000000, but attrs label_names.label lists 12 classes")


def test_forged_sizes_are_refused_in_bounded_memory(tmp_path):
    """With 2 GiB of address space beyond what the imported libraries map, each command ends in one line (no
    MemoryError traceback, no allocation sized by the forged count)."""
    train, val = small_caches(tmp_path, 20, 6, shard_size=8)
    forge(train, "", set_attr("num_clips", BIG))
    for name in ("semantic", "motion", "clip_id", "label", "done"):
        forge(train, name, set_rows(BIG))
    before = snapshot(train)
    launch = (
        "import resource, sys, torch, zarr, h5py; from cli import main; "
        "mapped = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize(); "
        "resource.setrlimit(resource.RLIMIT_AS, (mapped + (2 << 30), mapped + (2 << 30))); "
        "sys.argv[0] = 'cli'; main()"
    )
    commands = [
        ["cache", "info", train],
        ["cache", "stats", train],
        ["cache", "repair", train],
        ["fuse-train", "--cache", train, "--val-cache", val, "--model", "late_fusion", "--out", tmp_path / "run"],
    ]
    for command in commands:
        done = subprocess.run([sys.executable, "-c", launch, *map(str, command)], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        lines = [line for line in done.stderr.splitlines() if line.strip() and "WARNING" not in line]
        assert done.returncode == 2 and len(lines) == 1 and "clip_id declares" in lines[0], (command, done.stderr)
    assert snapshot(train) == before and not (tmp_path / "run").exists()


def forged_export(cache: Path, out: Path, change) -> Path:
    """The cache exported by `cli cache export`, then changed by `change(h5file, attrs)` (attrs saved after)."""
    import h5py

    file = out / "forged.h5"
    assert (
        CliRunner().invoke(main, ["cache", "export", str(cache), "--format", "hdf5", "--out", str(file)]).exit_code == 0
    )
    with h5py.File(file, "r+") as h5:
        attrs = json.loads(h5.attrs["gasm_cast_attrs"])
        change(h5, attrs)
        h5.attrs["gasm_cast_attrs"] = json.dumps(attrs)
    return file


def replace(name, data):
    def change(h5, attrs):
        del h5[name]
        h5.create_dataset(name, data=data)

    return change


def huge_semantic(h5, attrs):
    del h5["semantic"]
    h5.create_dataset("semantic", shape=(20, 16, 10**10), dtype="float16", chunks=(1, 1, 2**20))
    attrs["backbones"]["semantic"]["dim"] = 10**10


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda h5, attrs: attrs.__setitem__("shard_size", 10**12), "attrs shard_size 1000000000000 is not an integer"),
        (replace("label", [b"1"] * 20), "label dataset label is object, expected integers"),
        (replace("done", [0.5] * 20), "dataset done is float64, expected bool"),
        (huge_semantic, "dataset semantic stores 0 one-clip chunks, expected 20"),
    ],
)
def test_forged_hdf5_exports_are_refused_before_anything_is_built(cache, tmp_path, change, words):
    source = forged_export(cache, tmp_path, change)
    result = CliRunner().invoke(main, ["cache", "import", str(source), "--cache", str(tmp_path / "back")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and words in lines[0], result.output
    assert not (tmp_path / "back").exists()


def test_a_bare_zarr_group_is_not_taken_for_a_cache(ssv2_root, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    before = snapshot(bare)
    tiny = str(ROOT / "configs" / "extract_tiny.yaml")
    args = ["extract", "--dataset", "ssv2", "--data-root", str(ssv2_root), "--split", "validation", "--cache",
            str(bare), "--config", tiny, "--workers", "0", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "has schema_version None, expected 1 (is it a gasm-cast cache?)" in lines[0]
    assert snapshot(bare) == before
