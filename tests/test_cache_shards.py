"""The one feature read path (pipeline/cache/shards.py) against Zarr's own decoding, bit for bit, and its refusal
of damaged files."""

import numpy as np
import pytest
import zarr

from pipeline.cache.layout import build_skeleton
from pipeline.cache.shards import CacheShards, ShardUnreadable
from pipeline.synth.features import make_feature_cache


@pytest.fixture
def cache(tmp_path):
    # 70 clips in shards of 16: the last shard is partial; one clip is a failed (never written, NaN) row
    path = make_feature_cache(tmp_path / "c", 70, "ssv2", semantic=(9, 24), motion=(3, 16), shard_size=16)
    group = zarr.open_group(str(path), mode="r+")
    group["semantic"][20:21] = np.full((1, 9, 24), np.nan, np.float16)
    return path


def _same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint16), b.view(np.uint16))


def test_direct_reads_equal_zarr_bit_for_bit(cache):
    shards = CacheShards(cache)
    assert all(shards._direct.values())  # the cache layout is decoded here, not through Zarr
    group = zarr.open_group(str(cache), mode="r")
    assert len(shards) == 5
    for shard in range(len(shards)):
        lo, hi = shards.rows(shard)
        for name in ("semantic", "motion"):
            assert _same(shards.read(name, shard), group[name][lo:hi])
    assert np.isnan(shards.read("semantic", 1)[4]).all()
    for lo, hi in ((0, 70), (15, 17), (33, 34), (64, 70), (5, 5)):
        assert _same(shards.read_range("motion", lo, hi), group["motion"][lo:hi])


@pytest.mark.parametrize(
    "picks, chunk_reads",
    [([0, 1, 2, 3, 5], 1), ([0, 15], 2), ([0, 7, 15], 3), ([5], 1), ([], 0), ([2, 3, 4, 6, 7, 8, 10, 12, 14], 1)],
)
def test_picked_rows_equal_zarr_whether_dense_or_sparse(cache, picks, chunk_reads, monkeypatch):
    """Dense picks are read as one span, sparse ones (a process's share) chunk by chunk: the same bytes."""
    import pipeline.cache.shards as module

    monkeypatch.setattr(module, "THREADS", 1)
    reads = []
    pread = module.os.pread
    monkeypatch.setattr(module.os, "pread", lambda fd, n, at: reads.append(n) or pread(fd, n, at))
    picks = np.array(picks, dtype=np.int64)
    group = zarr.open_group(str(cache), mode="r")
    shards = CacheShards(cache)  # opening checks one stored file of each array (pipeline/cache/anchors.py)
    for name in ("semantic", "motion"):
        reads.clear()
        assert _same(shards.read(name, 1, picks), group[name][16:32][picks])
        assert len(reads) == 1 + chunk_reads  # the index, then the chunks' bytes
    assert np.isnan(CacheShards(cache).read("semantic", 1, np.array([4]))).all()  # row 20: never written


def test_unwritten_shards_read_as_nan(tmp_path):
    ids = np.array([f"c{i}" for i in range(10)])
    build_skeleton(
        tmp_path / "e",
        ids,
        {"label": np.zeros(10)},
        4,
        {"semantic": (2, 3), "motion": (1, 2)},
        {"num_clips": 10, "shard_size": 4},
    )
    shards = CacheShards(tmp_path / "e", zarr.open_group(str(tmp_path / "e"), mode="r"))
    assert not shards.stored(1)
    block = shards.read("semantic", 2)
    assert block.shape == (2, 2, 3) and np.isnan(block).all()


@pytest.mark.parametrize("damage", ["truncate", "index", "chunk"])
def test_damaged_files_are_refused(cache, damage):
    shards = CacheShards(cache)
    file = shards.file("semantic", 2)
    data = bytearray(file.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "index":
        data[-20] ^= 0xFF  # inside the (offset, length) index: its CRC32C no longer matches
    else:
        index = np.frombuffer(bytes(data[-(16 * 16 + 4) : -4]), "<u8").reshape(16, 2)
        data[int(index[3, 0]) + 12] ^= 0x01  # chunk 3's Blosc header no longer states its stored size
    file.write_bytes(bytes(data))
    with pytest.raises(ShardUnreadable, match="semantic/c/2/0/0"):
        shards.read("semantic", 2)
    assert _same(shards.read("semantic", 1), zarr.open_group(str(cache), mode="r")["semantic"][16:32])


def test_other_layouts_are_read_through_zarr(tmp_path):
    root = zarr.open_group(str(tmp_path / "plain"), mode="w", zarr_format=3)
    values = np.random.default_rng(0).standard_normal((10, 2, 3)).astype(np.float16)
    for name in ("semantic", "motion"):
        root.create_array(name, shape=(10, 2, 3), chunks=(4, 2, 3), dtype="float16")[:] = values
    root.attrs.update({"num_clips": 10, "shard_size": 4})
    shards = CacheShards(tmp_path / "plain", root)
    assert not any(shards._direct.values())
    assert _same(shards.read_range("semantic", 3, 9), values[3:9])
