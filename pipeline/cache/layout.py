"""Create or reopen a cache directory (one Zarr v3 group per dataset split) and check it fits the run.

Creation is atomic: the skeleton (arrays, clip ids, labels, attrs) is built in a temporary sibling directory
and renamed into place, so concurrent array jobs agree on one cache and a loser simply opens the winner's.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from pipeline.cache.anchors import check_stored_sizes
from pipeline.core.config_loading import leaf_differences
from pipeline.core.defaults import SHARD_SIZE_MAX
from pipeline.core.errors import UserError
from pipeline.datasets.base import ClipList

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FEATURES = ("semantic", "motion")
# Attributes that must be identical for a run to add to an existing cache.
IDENTITY_KEYS = ("schema_version", "dataset", "split", "num_clips", "shard_size", "manifest_sha256", "backbones")


def manifest_sha256(clips: ClipList) -> str:
    digest = hashlib.sha256()
    for clip in clips.clips:
        digest.update(f"{clip.clip_id}\t{clip.source}\t{clip.start}\t{clip.stop}\n".encode())
    return digest.hexdigest()


def num_shards(num_clips: int, shard_size: int) -> int:
    return -(-num_clips // shard_size)


def shard_rows(shard: int, shard_size: int, num_clips: int) -> tuple[int, int]:
    return shard * shard_size, min((shard + 1) * shard_size, num_clips)


def done_shards(done: np.ndarray, shard_size: int) -> list[int]:
    """Shards whose every row is done, given the whole `done` column."""
    return [
        j for j in range(num_shards(len(done), shard_size)) if done[slice(*shard_rows(j, shard_size, len(done)))].all()
    ]


def _compressor() -> BloscCodec:
    return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


def build_skeleton(
    path: Path,
    clip_ids: np.ndarray,
    labels: dict[str, np.ndarray],
    shard_size: int,
    shapes: dict[str, tuple[int, int]],
    attrs: dict[str, Any],
    meta: dict[str, np.ndarray] | None = None,
) -> zarr.Group:
    """Every array of an empty cache at `path` (features unwritten, `done` all false), with its attrs. `meta`:
    per-clip string arrays (attrs["meta_fields"] names them)."""
    n = len(clip_ids)
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    for name, (tokens, dim) in shapes.items():
        # Failed clips keep NaN rows: a consumer that ignores the failure list fails loudly, not silently.
        root.create_array(
            name,
            shape=(n, tokens, dim),
            chunks=(1, tokens, dim),
            shards=(shard_size, tokens, dim),
            dtype="float16",
            fill_value=np.nan,
            compressors=_compressor(),
        )
    root.create_array("clip_id", shape=(n,), dtype=str)[:] = np.asarray(clip_ids, dtype=str)
    for field, values in (meta or {}).items():
        root.create_array(field, shape=(n,), dtype=str)[:] = np.asarray(values, dtype=str)
    for field, values in labels.items():
        root.create_array(field, shape=(n,), dtype="int32", fill_value=-1)[:] = np.asarray(values, dtype=np.int32)
    root.create_array("done", shape=(n,), chunks=(shard_size,), dtype="bool", fill_value=False)
    root.create_group("failures")  # a member group, so Zarr does not warn about an unknown folder
    root.attrs.update(attrs)
    return root


def open_or_create(
    path: str | Path,
    clips: ClipList,
    shard_size: int,
    shapes: dict[str, tuple[int, int]],
    attrs: dict[str, Any],
    create: bool = True,
) -> zarr.Group | None:
    """The cache group at `path`, created from `clips` if absent (None if absent and not `create`); refused if
    a different run made it, unless that run wrote nothing (no shard done, no failure): then it is taken over."""
    path = Path(path)
    attrs = {
        "schema_version": SCHEMA_VERSION,
        "num_clips": len(clips),
        "shard_size": shard_size,
        "manifest_sha256": manifest_sha256(clips),
        **attrs,
    }
    if not (path / "zarr.json").exists():
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UserError(f"cache {path} exists and is not empty, but is not a gasm-cast cache (no zarr.json)")
        if not create:
            return None
        _build_in_place(path, clips, shard_size, shapes, attrs)
    group = _open_group(path, "r+")
    check_cache(group, path)
    differences = identity_differences(dict(group.attrs), attrs)
    if differences and not _written(group, path):
        log.warning("cache %s was created by a run that wrote nothing (%s): taking it over", path, differences[0])
        _build_in_place(path, clips, shard_size, shapes, attrs, replace=True)
        group = _open_group(path, "r+")
        differences = identity_differences(dict(group.attrs), attrs)
    if differences:
        raise UserError(
            f"cache {path} was made by a different run (there -> now: {'; '.join(differences)}). "
            "Use a new --cache path, or re-run with the settings that made it."
        )
    return group


def _build_in_place(
    path: Path,
    clips: ClipList,
    shard_size: int,
    shapes: dict[str, tuple[int, int]],
    attrs: dict[str, Any],
    replace: bool = False,
) -> None:
    """Build the skeleton beside `path` and rename it into place, so concurrent jobs agree on one cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    labels = {f: [c.labels.get(f, -1) for c in clips.clips] for f in clips.label_fields}
    meta = {f: np.array([c.meta.get(f, "") for c in clips.clips], dtype=str) for f in clips.meta_fields}
    clip_ids = np.array([c.clip_id for c in clips.clips], dtype=str)
    build_skeleton(staging, clip_ids, labels, shard_size, shapes, attrs, meta)
    try:
        if replace:
            retired = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, retired)
            shutil.rmtree(retired, ignore_errors=True)
        elif path.exists():
            path.rmdir()
        os.rename(staging, path)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another job created it first: use theirs


def _written(group: zarr.Group, path: Path) -> bool:
    """Whether any shard of the cache was finished or any failure recorded (then it is never replaced)."""
    return bool(group["done"][:].any()) or any((path / "failures").glob("shard-*.jsonl"))


def identity_differences(found: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Every leaf of the identity attributes that differs, as 'key: there -> now'."""
    return leaf_differences({k: found.get(k) for k in IDENTITY_KEYS}, {k: wanted.get(k) for k in IDENTITY_KEYS})


def _open_group(path: Path, mode: str) -> zarr.Group:
    try:
        return zarr.open_group(str(path), mode=mode, zarr_format=3)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise UserError(f"cache {path}: zarr.json is unreadable or corrupt ({type(exc).__name__}: {exc})") from None


def open_cache(path: str | Path, mode: str = "r") -> zarr.Group:
    path = Path(path)
    if not path.exists():
        raise UserError(f"cache {path} does not exist; make one with `cli extract`")
    if not (path / "zarr.json").is_file():
        raise UserError(f"{path} is not a gasm-cast cache (no zarr.json); make one with `cli extract`")
    group = _open_group(path, mode)
    check_cache(group, path)
    return group


def check_cache(group: zarr.Group, path: Path) -> None:
    """An opened group is a cache of this schema whose metadata agrees with itself and its stored bytes."""
    if group.attrs.get("schema_version") != SCHEMA_VERSION:
        version = group.attrs.get("schema_version")
        raise UserError(f"cache {path} has schema_version {version!r}, expected {SCHEMA_VERSION} (is it a "
                        "gasm-cast cache?)")  # fmt: skip
    check_layout(group, path)


def is_count(value: Any, low: int = 0) -> bool:
    """An integer >= `low` as JSON holds it (not a bool, not a float): what a forged attr or record is checked by."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def subset_limit(attrs: dict[str, Any]) -> int | None:
    """The --limit the cache was extracted with (only the first N clips of its split), or None: the whole split."""
    return ((attrs.get("config") or {}).get("source") or {}).get("limit")


def semantic_frames(attrs: dict[str, Any]) -> Any:
    """How many time steps a cache's semantic tokens span: a `frames` cache holds that many grids a clip,
    step-major (a step is a frame of an image backbone, a tubelet of a video transformer: attrs `steps`); every
    other cache one map (1). Checked by check_layout; raw here so a forged value is named there."""
    semantic = (attrs.get("backbones") or {}).get("semantic") or {}
    if semantic.get("reduce") != "frames":
        return 1
    return semantic["steps"] if "steps" in semantic else semantic.get("frames")


def cache_views(attrs: dict[str, Any]) -> Any:
    """How many views of a clip its feature rows hold, view-major along the token axis (spatial-major within:
    view 0 is the centre square on the centred sampling grid); 1 for caches without views. Checked by
    check_layout; raw here so a forged value is named there."""
    views = ((attrs.get("backbones") or {}).get("semantic") or {}).get("views")
    if views is None:
        return 1
    if not isinstance(views, dict) or not is_count(views.get("spatial"), 1) or not is_count(views.get("temporal"), 1):
        return views
    return views["spatial"] * views["temporal"]


def shard_size_problem(shard_size: Any) -> str | None:
    """What is wrong with a shard size read from a cache or an export, or None."""
    if not is_count(shard_size, 1) or shard_size > SHARD_SIZE_MAX:
        return f"attrs shard_size {shard_size!r} is not an integer in 1..{SHARD_SIZE_MAX}"
    return None


def backbone_shapes_problem(attrs: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Whether each feature's stored (tokens, width) is what its backbone's attrs say it makes (tokens of one
    view times the views), or None. Attrs without tokens and width (hand-made caches) are not checked."""
    views = cache_views(attrs)
    for name, shape in shapes.items():
        backbone = (attrs.get("backbones") or {}).get(name) or {}
        tokens, dim = backbone.get("tokens"), backbone.get("dim")
        if is_count(tokens, 1) and is_count(dim, 1) and is_count(views, 1) and tuple(shape) != (tokens * views, dim):
            return (f"{name} features are stored as {tuple(shape)} a clip, but attrs backbones.{name} makes "
                    f"{tokens} tokens x {dim} wide (x {views} views)")  # fmt: skip
    return None


def check_layout(group: zarr.Group, path: Path) -> None:
    """The attrs agree with the arrays (from their metadata alone: nothing is read or allocated by a forged
    number): one line naming the first disagreement, before any work."""
    attrs = group.attrs
    shard_size = attrs.get("shard_size")
    problem = shard_size_problem(shard_size)
    if problem:
        raise UserError(f"cache {path}: {problem}")
    try:
        arrays = dict(group.arrays())
    except (ValueError, KeyError, TypeError, OSError) as exc:  # an array's zarr.json forged or damaged
        raise UserError(f"cache {path}: an array's metadata is unreadable ({type(exc).__name__}: {exc})") from None
    n = attrs.get("num_clips")
    if not is_count(n):
        raise UserError(f"cache {path}: attrs num_clips {n!r} is not a non-negative integer")
    fields = [*attrs.get("label_fields", []), *attrs.get("meta_fields", [])]
    for name in ("clip_id", "done", *FEATURES, *fields):
        if name not in arrays:
            raise UserError(f"cache {path}: array {name!r} is missing (the attrs or the layout name it)")
        shape = arrays[name].shape
        if not shape or shape[0] != n or any(size < 1 for size in shape[1:]):
            raise UserError(f"cache {path}: array {name} has shape {shape}, expected {n} rows (attrs num_clips)")
    for name in FEATURES:
        array = arrays[name]
        if array.ndim != 3 or array.dtype != np.float16:
            raise UserError(f"cache {path}: array {name} is {array.dtype} {array.shape}, expected float16 [clips, "
                            "tokens, width]")  # fmt: skip
    views = cache_views(dict(attrs))
    for name in FEATURES:
        if not is_count(views, 1) or arrays[name].shape[1] % views:
            raise UserError(f"cache {path}: attrs backbones.semantic.views {views!r} does not divide its "
                            f"{arrays[name].shape[1]} {name} tokens into views")  # fmt: skip
    problem = backbone_shapes_problem(dict(attrs), {name: arrays[name].shape[1:] for name in FEATURES})
    if problem:
        raise UserError(f"cache {path}: {problem}")
    frames, tokens = semantic_frames(dict(attrs)), arrays["semantic"].shape[1] // views
    if not is_count(frames, 1) or tokens % frames:
        raise UserError(f"cache {path}: attrs backbones.semantic.frames/steps {frames!r} does not divide its "
                        f"{tokens} semantic tokens into frames")  # fmt: skip
    for name in attrs.get("label_fields", []):
        if arrays[name].ndim != 1 or not np.issubdtype(arrays[name].dtype, np.integer):
            raise UserError(f"cache {path}: label array {name} is {arrays[name].dtype}, expected integers")
    if arrays["done"].dtype != np.bool_:
        raise UserError(f"cache {path}: array done is {arrays['done'].dtype}, expected bool")
    check_stored_sizes(path, arrays, n, shard_size, FEATURES)
    check_labels(path, {name: arrays[name] for name in attrs.get("label_fields", [])}, attrs.get("label_names"))


def check_labels(path: Path, labels: dict[str, Any], names: Any) -> None:
    """Every label is -1 (none) or a class of its field's class list: a forged label never reaches a loss."""
    for field, array in labels.items():
        classes = (names or {}).get(field) if isinstance(names, dict) else None
        if not isinstance(classes, list) or not classes:
            continue  # caches made before class lists were required: the highest label sets the count
        values = np.asarray(array[:])
        bad = np.flatnonzero((values < -1) | (values >= len(classes)))
        if len(bad):
            raise UserError(f"cache {path}: label {field} of row {int(bad[0])} is {int(values[bad[0]])}, but "
                            f"attrs label_names.{field} lists {len(classes)} classes (0..{len(classes) - 1}, "
                            "or -1 for none)")  # fmt: skip
