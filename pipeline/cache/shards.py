"""Reading a cache's feature shards: the one way every consumer (training data, stats, export, merge, verify,
repair, predict) reads features.

A shard is one Zarr v3 shard file per feature: a clip per inner chunk, Blosc-compressed, and an index of
(offset, length) pairs at its end checked by CRC32C. Zarr decodes such a file chunk by chunk through its codec
pipeline at a few hundred clips/s; here the file is read once, its index checked exactly as Zarr checks it, and
the chunks decompressed by parallel threads (Blosc releases the GIL) straight into the output array. Arrays
with any other layout are read through Zarr. Either way a damaged file raises `ShardUnreadable`, never returns
wrong rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zarr
from numcodecs import blosc

from pipeline.cache.anchors import EMPTY, blosc_sizes, is_direct, read_index
from pipeline.cache.layout import FEATURES, num_shards, open_cache, shard_rows

THREADS = max(1, len(os.sched_getaffinity(0)))  # decompression threads: the cores this process may use
_pool: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="shards")
    return _pool


class ShardUnreadable(Exception):
    """A stored shard file cannot be decoded (truncated, failed checksum, corrupt chunk)."""

    def __init__(self, name: str, key: str, detail: str):
        super().__init__(f"{name}/{key}: {detail}")


class CacheShards:
    """The feature shards of the cache at `path` (`group`: the open group, if the caller has it)."""

    def __init__(self, path: str | Path, group: zarr.Group | None = None):
        self.path = Path(path)
        self.group = group if group is not None else open_cache(self.path)
        self.num_clips = int(self.group.attrs["num_clips"])
        self.shard_size = int(self.group.attrs["shard_size"])
        self.arrays = {name: self.group[name] for name in FEATURES}
        self.shapes = {name: tuple(array.shape[1:]) for name, array in self.arrays.items()}
        self._direct = {name: is_direct(array) for name, array in self.arrays.items()}

    def __len__(self) -> int:
        return num_shards(self.num_clips, self.shard_size)

    def rows(self, shard: int) -> tuple[int, int]:
        return shard_rows(shard, self.shard_size, self.num_clips)

    def key(self, name: str, shard: int) -> str:
        return self.arrays[name].metadata.encode_chunk_key((shard, 0, 0))

    def file(self, name: str, shard: int) -> Path:
        return self.path / name / self.key(name, shard)

    def stored(self, shard: int) -> bool:
        """Whether any feature file of the shard exists (extraction wrote it, finished or not)."""
        return any(self.file(name, shard).exists() for name in FEATURES)

    def read(self, name: str, shard: int, picks: np.ndarray | None = None) -> np.ndarray:
        """[rows of the shard, tokens, dim] float16 of one feature; NaN rows where nothing was written. With
        `picks` (ascending row offsets within the shard), only those rows are read and decoded."""
        lo, hi = self.rows(shard)
        try:
            if not self._direct[name]:
                return self.arrays[name][lo:hi] if picks is None else self.arrays[name][lo:hi][picks]
            return self._decode(name, shard, np.arange(hi - lo) if picks is None else picks)
        except ShardUnreadable:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoding failure of stored bytes means the same: damaged
            raise ShardUnreadable(name, self.key(name, shard), f"{type(exc).__name__}: {exc}") from None

    def read_shard(self, shard: int, picks: np.ndarray | None = None) -> dict[str, np.ndarray]:
        return {name: self.read(name, shard, picks) for name in FEATURES}

    def read_range(self, name: str, lo: int, hi: int) -> np.ndarray:
        """Rows [lo, hi) of one feature, from whole-shard reads."""
        first, last = lo // self.shard_size, (hi - 1) // self.shard_size
        parts = [self.read(name, shard) for shard in range(first, last + 1)] if hi > lo else []
        start = first * self.shard_size
        return np.concatenate(parts)[lo - start : hi - start] if parts else np.empty((0, *self.shapes[name]), "<f2")

    def _decode(self, name: str, shard: int, picks: np.ndarray) -> np.ndarray:
        """The chunks `picks` of a shard, in that order."""
        shape = self.shapes[name]
        out = np.empty((len(picks), *shape), dtype="<f2")
        key = self.key(name, shard)
        try:
            fd = os.open(self.file(name, shard), os.O_RDONLY)
        except FileNotFoundError:
            out.fill(np.nan)  # never written: the fill value, as Zarr reads it
            return out
        try:
            size = os.fstat(fd).st_size
            index = read_index(fd, size, self.shard_size)
            if isinstance(index, str):
                raise ShardUnreadable(name, key, index)
            end = size - index.nbytes - 4  # where the chunk data ends and the index begins
            chunk_bytes = out[0].nbytes if len(out) else 0

            def decode(part: np.ndarray) -> None:
                """Each thread reads its rows' chunks (no GIL): the byte span holding them with one pread, or
                chunk by chunk when they are a sparse pick of it, and decodes them."""
                offsets, lengths = index[picks[part], 0], index[picks[part], 1]
                written = offsets != EMPTY
                if (offsets[written] + lengths[written] > end).any():
                    raise ShardUnreadable(name, key, "a chunk lies beyond the chunk data (truncated file?)")
                span, first = None, 0
                if written.any():
                    first = int(offsets[written].min())
                    span_bytes = int((offsets + lengths)[written].max()) - first
                    if span_bytes <= 2 * lengths[written].sum():
                        span = memoryview(os.pread(fd, span_bytes, first))
                for at, offset, length, present in zip(part, offsets, lengths, written):
                    if not present:
                        out[at].fill(np.nan)
                        continue
                    offset, length = int(offset), int(length)
                    if span is None:
                        chunk = memoryview(os.pread(fd, length, offset))
                    else:
                        chunk = span[offset - first : offset - first + length]
                    # Blosc's header states the chunk's raw and compressed sizes; Blosc itself would decode a
                    # short buffer without complaint, so both are checked against the index and the shape.
                    if len(chunk) < 16 or blosc_sizes(chunk) != (chunk_bytes, length):
                        raise ShardUnreadable(name, key, f"chunk {picks[at]} is damaged or truncated")
                    blosc.decompress(chunk, out[at].reshape(-1).view(np.uint8))

            parts = [p for p in np.array_split(np.arange(len(picks)), THREADS) if len(p)]
            for future in [_threads().submit(decode, part) for part in parts]:
                future.result()
        finally:
            os.close(fd)
        return out


def map_rows(function: Callable[[np.ndarray], np.ndarray], block: np.ndarray) -> np.ndarray:
    """`function` over groups of `block`'s rows in the decompression threads (numpy releases the GIL on large
    arrays), its per-row results concatenated."""
    parts = [p for p in np.array_split(np.arange(len(block)), THREADS) if len(p)]
    futures = [_threads().submit(function, block[p[0] : p[-1] + 1]) for p in parts]
    return np.concatenate([f.result() for f in futures]) if futures else function(block)
