"""The stored bytes that vouch for a cache's sizes, so that a forged or damaged number in its metadata is named
before it sizes a read, an allocation or a repair.

A cache's attrs and arrays' zarr.json state how many clips it holds, how many rows a shard has and how many
tokens a clip; each fact is also written, independently, in bytes no metadata edit changes:
- the clip count: the clip-id chunks (every chunk stores its full chunk length as a count, the last padded) and
  how many of them there are;
- the shard size: a stored `done` chunk (one per shard) decodes to exactly that many bytes;
- tokens x width: a stored feature chunk's Blosc header states its raw size, in a shard whose CRC-checked index
  (at the file's end, its length set by the shard size) holds.
Metadata edits are global, so one stored file of each array suffices. Only facts whose bytes are there are
checked (an unfinished cache has no done chunk and no shard yet); none of these reads is sized by metadata.
"""

from __future__ import annotations

import gzip
import itertools
import math
import os
from collections.abc import Iterator
from pathlib import Path

import google_crc32c
import numpy as np
import zarr
from numcodecs import Zstd
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, Endian, GzipCodec, ShardingCodec, ZstdCodec
from zarr.codecs.sharding import ShardingCodecIndexLocation

from pipeline.core.errors import UserError

EMPTY = 2**64 - 1  # an index entry of a chunk never written (all fill value: a failed clip's NaN row)
SAMPLES = 3  # stored shard files tried for an intact index before the token check gives up (all damaged)


def is_direct(array: zarr.Array) -> bool:
    """Whether the array has the layout `build_skeleton` gives every feature array (then its shard files are
    decoded and checked here and in pipeline.cache.shards)."""
    codecs = array.metadata.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return False
    sharding = codecs[0]
    inner, index = sharding.codecs, sharding.index_codecs
    return (
        array.dtype == np.float16
        and sharding.index_location == ShardingCodecIndexLocation.end
        and tuple(sharding.chunk_shape) == (1, *array.shape[1:])
        and len(inner) == 2
        and isinstance(inner[0], BytesCodec)
        and inner[0].endian in (None, Endian.little)
        and isinstance(inner[1], BloscCodec)
        and len(index) == 2
        and isinstance(index[0], BytesCodec)
        and isinstance(index[1], Crc32cCodec)
    )


def read_index(fd: int, size: int, chunks: int) -> np.ndarray | str:
    """A shard file's [chunks, 2] (offset, length) index, its CRC32C checked as Zarr checks it, or what is wrong."""
    length = chunks * 16 + 4
    if size < length:
        return f"the file is truncated ({size} bytes)"
    data = os.pread(fd, length, size - length)
    raw, stored = data[:-4], int(np.frombuffer(data[-4:], dtype="<u4")[0])
    if google_crc32c.value(raw) != stored:
        return "the shard index fails its CRC32C checksum (truncated or damaged)"
    return np.frombuffer(raw, dtype="<u8").reshape(chunks, 2)


def blosc_sizes(chunk: memoryview | bytes) -> tuple[int, int]:
    """(raw bytes, compressed bytes) from a Blosc chunk's 16-byte header."""
    return int.from_bytes(chunk[4:8], "little"), int.from_bytes(chunk[12:16], "little")


def check_stored_sizes(path: Path, arrays: dict[str, zarr.Array], n: int, shard_size: int, features: tuple) -> None:
    """One line (UserError) naming the first size in the metadata that the stored bytes contradict."""
    for name in features:
        array = arrays[name]
        rows = (array.shards or array.chunks)[0]
        if rows != shard_size:
            raise UserError(f"cache {path}: attrs shard_size {shard_size} disagrees with array {name}'s shards of "
                            f"{rows} rows")  # fmt: skip
        if array.shards and tuple(array.chunks) != (1, *array.shape[1:]):
            raise UserError(f"cache {path}: array {name} has shape {array.shape} but chunks of {array.chunks}, "
                            f"expected one clip a chunk {(1, *array.shape[1:])}")  # fmt: skip
    if arrays["done"].chunks[0] != shard_size:
        raise UserError(f"cache {path}: attrs shard_size {shard_size} disagrees with array done's chunks of "
                        f"{arrays['done'].chunks[0]} rows")  # fmt: skip
    _check_clip_count(path, arrays["clip_id"], n)
    _check_done_chunk(path, arrays["done"], shard_size)
    for name in features:
        if is_direct(arrays[name]):
            _check_chunk_bytes(path, name, arrays[name], shard_size)


def _chunk_files(folder: Path) -> list[Path]:
    """The stored chunk files of a 1-D array (keys c/0, c/1, ...), in chunk order; one directory listing."""
    try:
        entries = [e for e in os.scandir(folder / "c") if e.is_file() and e.name.isdigit()]
    except FileNotFoundError:
        return []
    return [Path(e.path) for e in sorted(entries, key=lambda e: int(e.name))]


def _decoded(array: zarr.Array, file: Path, what: str) -> bytes | None:
    """A 1-D array's chunk file through its bytes-to-bytes codecs (zstd or gzip, as Zarr writes them), or None
    for codecs not decoded here."""
    data = file.read_bytes()
    for codec in reversed(array.metadata.codecs[1:]):
        try:
            if isinstance(codec, ZstdCodec):
                data = Zstd().decode(data)
            elif isinstance(codec, GzipCodec):
                data = gzip.decompress(data)
            else:
                return None
        except Exception as exc:  # noqa: BLE001 - a chunk that cannot be decoded is named, never a traceback
            raise UserError(f"{what}: chunk {file} cannot be decoded ({type(exc).__name__}: {exc})") from None
    return bytes(data)


def _check_clip_count(path: Path, array: zarr.Array, n: int) -> None:
    """The clip-id chunks are all written (ids are never empty): their number and stored lengths fix the count."""
    what, chunk = f"cache {path}: array clip_id", array.chunks[0]
    files = _chunk_files(path / "clip_id")
    expected = math.ceil(n / chunk) if chunk else 0
    if len(files) != expected:
        raise UserError(f"{what} declares {n} clips in {expected} chunk(s) of {chunk}, but {len(files)} chunk "
                        "file(s) are stored (attrs num_clips or the array's metadata were changed)")  # fmt: skip
    if files:
        data = _decoded(array, files[0], what)
        if data is not None:
            stored = int.from_bytes(data[:4], "little") if len(data) >= 4 else -1
            if stored != chunk:
                raise UserError(f"{what} declares chunks of {chunk} clips, but its first chunk stores {stored}")


def _check_done_chunk(path: Path, array: zarr.Array, shard_size: int) -> None:
    """A stored `done` chunk (bools, one byte a clip) decodes to shard_size bytes."""
    files = _chunk_files(path / "done")
    if files and isinstance(array.metadata.codecs[0], BytesCodec):
        data = _decoded(array, files[0], f"cache {path}: array done")
        if data is not None and len(data) != shard_size:
            raise UserError(f"cache {path}: attrs shard_size {shard_size} disagrees with the stored done chunk "
                            f"{files[0].name}, which holds {len(data)} rows")  # fmt: skip


def _check_chunk_bytes(path: Path, name: str, array: zarr.Array, shard_size: int) -> None:
    """The first written chunk of a shard file whose index holds states tokens x width x 2 raw bytes."""
    expected = math.prod(array.shape[1:]) * 2
    for file in itertools.islice(_shard_files(path / name, array), SAMPLES):
        with open(file, "rb") as handle:
            fd = handle.fileno()
            index = read_index(fd, os.fstat(fd).st_size, shard_size)
            if isinstance(index, str):
                continue  # damaged, or the shard size is forged: no evidence either way; try another file
            written = index[index[:, 0] != EMPTY]
            if not len(written):
                continue
            raw, _ = blosc_sizes(os.pread(fd, 16, int(written[0, 0])))
        if raw != expected:
            tokens, width = array.shape[1:]
            raise UserError(f"cache {path}: array {name} declares {tokens} x {width} values a clip ({expected} "
                            f"bytes), but its stored chunks hold {raw} bytes a clip")  # fmt: skip
        return


def _shard_files(folder: Path, array: zarr.Array) -> Iterator[Path]:
    """The stored shard files of a feature array, in shard order (one directory listing)."""
    try:
        shards = sorted(int(e.name) for e in os.scandir(folder / "c") if e.name.isdigit())
    except FileNotFoundError:
        return
    for shard in shards:
        file = folder / array.metadata.encode_chunk_key((shard, 0, 0))
        if file.is_file():
            yield file
