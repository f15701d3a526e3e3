"""`cli cache export --format hdf5` / `cli cache import`: one HDF5 dataset per feature, clip ids, labels and
`done`, the cache's attrs and failure lists as JSON; streamed shard by shard, never the whole cache in memory.
Export then import gives back the same cache, bit for bit."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cache.layout import (
    FEATURES,
    backbone_shapes_problem,
    build_skeleton,
    check_layout,
    is_count,
    num_shards,
    open_cache,
    shard_rows,
    shard_size_problem,
)
from pipeline.cache.reader import read_failures
from pipeline.cache.shards import CacheShards
from pipeline.cache.writer import write_failures_by_row
from pipeline.core import atomic
from pipeline.core.errors import NO_SPACE, UserError
from pipeline.core.paths import PROJECT_ROOT, require_space


def export_hdf5(cache: Path, out: Path) -> Path:
    """The cache as one HDF5 file at `out`, written by a child process beside it and renamed into place whole.

    HDF5 cannot be trusted after a write fails for want of space (h5py has been seen to segfault there), so the
    file is written in a process of its own: a disk that fills mid-write is one line naming `out` and the space
    left on its file system, nothing is left at `out`, and this process carries on to say so."""
    group = open_cache(cache)
    shards = CacheShards(cache, group)
    # Checked ahead against the features' uncompressed size (gzip makes float16 features little smaller); a disk
    # that another writer fills meanwhile is caught below.
    require_space(out, sum(shards.num_clips * math.prod(shards.shapes[name]) * 2 for name in FEATURES))
    with atomic.atomic_path(out) as staging:
        child = subprocess.run(
            # absolute: the writer runs in the project folder (to import the package), not in the caller's
            [sys.executable, "-m", "pipeline.cache.hdf5", str(Path(cache).absolute()), str(staging.absolute())],
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        if child.returncode != 0:
            if any(f"errno = {code}," in child.stderr or os.strerror(code) in child.stderr for code in NO_SPACE):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out))
            last = (child.stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
            raise RuntimeError(f"writing {out} failed in the HDF5 writer process ({child.returncode}): {last}")
    return out


def write_export(cache: Path, out: Path) -> None:
    """The HDF5 file itself (run in its own process by export_hdf5): one dataset per feature, streamed shard by
    shard, the other arrays, attrs and failure lists."""
    import h5py

    group = open_cache(cache)
    attrs = dict(group.attrs)
    shards = CacheShards(cache, group)
    with h5py.File(out, "w") as h5:
        for name in FEATURES:
            shape = (shards.num_clips, *shards.shapes[name])
            dataset = h5.create_dataset(
                name,
                shape=shape,
                dtype="float16",
                chunks=(1, *shape[1:]),
                compression="gzip",
                compression_opts=4,
                shuffle=True,
            )
            for shard in range(len(shards)):
                lo, hi = shards.rows(shard)
                dataset[lo:hi] = shards.read(name, shard)
        for field in ("clip_id", *attrs.get("meta_fields", [])):
            h5.create_dataset(field, data=np.asarray(group[field][:], dtype=object), dtype=h5py.string_dtype())
        h5.create_dataset("done", data=group["done"][:])
        for field in attrs.get("label_fields", []):
            h5.create_dataset(field, data=group[field][:])
        h5.attrs["gasm_cast_attrs"] = json.dumps(attrs)
        h5.attrs["gasm_cast_failures"] = json.dumps(read_failures(cache))


def _exported(h5: Any, source: Path) -> tuple[dict[str, Any], list[Any]]:
    """The export's attrs and failure records, checked against its datasets before anything is built: a forged
    or damaged file is one line, never a half-built cache or work sized by a forged number."""
    try:
        attrs, failures = json.loads(h5.attrs["gasm_cast_attrs"]), json.loads(h5.attrs["gasm_cast_failures"])
    except KeyError:
        raise UserError(f"{source} was not exported by gasm-cast (no gasm_cast_attrs attribute)") from None
    except (ValueError, TypeError):
        raise UserError(f"{source}: its gasm_cast attributes are not the JSON `cli cache export` writes") from None
    if not isinstance(attrs, dict) or not isinstance(failures, list):
        raise UserError(f"{source}: its gasm_cast attributes are not the JSON `cli cache export` writes")
    n, shard_size = attrs.get("num_clips"), attrs.get("shard_size")
    if not is_count(n):
        raise UserError(f"{source}: attrs num_clips {n!r} is not an integer >= 0")
    problem = shard_size_problem(shard_size)
    if problem:
        raise UserError(f"{source}: {problem}")
    fields = [*attrs.get("label_fields", []), *attrs.get("meta_fields", [])]
    for name in ("clip_id", "done", *FEATURES, *fields):
        if name not in h5 or not hasattr(h5[name], "shape") or h5[name].shape[:1] != (n,):
            found = h5[name].shape if name in h5 and hasattr(h5[name], "shape") else "missing"
            raise UserError(f"{source}: dataset {name!r} is {found}, expected {n} rows (attrs num_clips)")
    for name in FEATURES:
        if h5[name].ndim != 3 or h5[name].dtype != np.float16:
            raise UserError(f"{source}: dataset {name} is {h5[name].dtype} {h5[name].shape}, expected float16 3-D")
    problem = backbone_shapes_problem(attrs, {name: h5[name].shape[1:] for name in FEATURES})
    if problem:
        raise UserError(f"{source}: {problem}")
    for name in FEATURES:
        _check_stored_rows(h5[name], n, source)
    for name in attrs.get("label_fields", []):
        if h5[name].ndim != 1 or not np.issubdtype(h5[name].dtype, np.integer):
            raise UserError(f"{source}: label dataset {name} is {h5[name].dtype}, expected integers")
    if h5["done"].ndim != 1 or h5["done"].dtype != np.bool_:
        raise UserError(f"{source}: dataset done is {h5['done'].dtype}, expected bool")
    return attrs, failures


def _check_stored_rows(dataset: Any, n: int, source: Path) -> None:
    """The export writes every row as one gzip chunk: that many chunks are stored, and the first cannot hold more
    than deflate's largest ratio (1032:1) allows, so a forged width never sizes a read."""
    raw = math.prod(dataset.shape[1:]) * 2
    stored = dataset.id.get_num_chunks() if dataset.chunks == (1, *dataset.shape[1:]) else -1
    if stored != n:
        raise UserError(f"{source}: dataset {dataset.name.lstrip('/')} stores {max(stored, 0)} one-clip chunks, "
                        f"expected {n} (attrs num_clips), as `cli cache export` writes them")  # fmt: skip
    if n and raw > 1032 * dataset.id.get_chunk_info(0).size:
        raise UserError(f"{source}: dataset {dataset.name.lstrip('/')} declares {raw} bytes a clip, more than its "
                        f"stored chunk of {dataset.id.get_chunk_info(0).size} bytes can hold")  # fmt: skip


def import_hdf5(source: Path, cache: Path) -> Path:
    import h5py

    if Path(cache).exists():
        raise UserError(f"{cache} already exists: import into a new cache path")
    try:
        h5 = h5py.File(source, "r")
    except OSError as exc:
        raise UserError(f"{source} is not a readable HDF5 file: {exc}") from None
    with h5:
        attrs, failures = _exported(h5, source)
        shard_size, n = attrs["shard_size"], attrs["num_clips"]
        labels = {field: h5[field][:] for field in attrs.get("label_fields", [])}
        shapes = {name: tuple(h5[name].shape[1:]) for name in FEATURES}
        strings = {
            field: np.array([c.decode() if isinstance(c, bytes) else c for c in h5[field][:]], dtype=str)
            for field in ("clip_id", *attrs.get("meta_fields", []))
        }
        clip_ids = strings.pop("clip_id")
        # Built beside the cache path and renamed into place once whole and checked: a killed or refused import
        # leaves nothing at the cache path.
        with atomic.staged_folder(cache, "imported cache") as staging:
            group = build_skeleton(staging, clip_ids, labels, shard_size, shapes, attrs, strings)
            for shard in range(num_shards(n, shard_size)):
                lo, hi = shard_rows(shard, shard_size, n)
                for name in FEATURES:
                    group[name][lo:hi] = h5[name][lo:hi]
            try:
                write_failures_by_row(staging, failures, shard_size)
            except (KeyError, TypeError, ValueError, AttributeError):
                raise UserError(f"{source}: a failure record has no integer row") from None
            read_failures(staging, clip_ids)  # every record names its own row's clip
            group["done"][:] = h5["done"][:]
            check_layout(group, staging)
    return Path(cache)


if __name__ == "__main__":  # export_hdf5's writer process: CACHE OUT
    write_export(Path(sys.argv[1]), Path(sys.argv[2]))
