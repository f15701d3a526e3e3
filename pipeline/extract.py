"""The extraction job: read a split, decode in workers, run both frozen backbones, write owned shards."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.backbones import REGISTRY, BackboneSpec, build_backbone, get_spec
from pipeline.backbones.base import semantic_spec
from pipeline.cache.claims import ShardClaims
from pipeline.cache.layout import num_shards, open_or_create, shard_rows
from pipeline.cache.writer import ShardWriter
from pipeline.core.config_loading import validate
from pipeline.core.devices import autocast, resolve_device, resolve_precision
from pipeline.core.errors import UserError
from pipeline.core.paths import output_folder
from pipeline.core.progress import log as progress
from pipeline.core.progress import size_text
from pipeline.core.provenance import created_with, weights_identity
from pipeline.datasets import ClipList, DataSource
from pipeline.extract_config import ExtractConfig, decoder_threads, with_backbone_defaults
from pipeline.sharding import owned_shards
from pipeline.video.clip_dataset import ClipFrames
from pipeline.video.frames import FRAME_RESIZE
from pipeline.video.loader import decoded_batches

log = logging.getLogger(__name__)


@dataclass
class ExtractSummary:
    clips: int  # rows of the cache
    owned: int  # rows in this job's shards
    extracted: int
    failed: int
    skipped: int  # rows in owned shards that were already done
    seconds: float
    busy: int = 0  # rows in owned shards that another running process was extracting: left to it

    @property
    def clips_per_second(self) -> float:
        return (self.extracted + self.failed) / self.seconds if self.seconds > 0 else 0.0


def backbone_specs(
    cfg: ExtractConfig, weights: dict[str, str | None] | None = None
) -> tuple[BackboneSpec, BackboneSpec]:
    """The two backbones' specs with their outputs as the cache keeps them (tokens after pooling and frames), for
    the architecture of the weights (`weights` by kind, else the config's; none with random init)."""
    cfg = with_backbone_defaults(cfg)
    s, b = cfg.sampling, cfg.backbones
    if weights is None:
        weights = {"semantic": b.semantic_weights, "motion": b.motion_weights}
    if b.random_init:
        weights = {}
    semantic = get_spec(b.semantic, "semantic", frames=s.semantic_frames, weights=weights.get("semantic"))
    semantic = semantic_spec(semantic, s.semantic_frames, s.semantic_reduce, s.semantic_pool)
    motion = get_spec(b.motion, "motion", layer=b.motion_layer, frames=s.motion_frames, weights=weights.get("motion"))
    return semantic, motion


def semantic_layout(cfg: ExtractConfig, semantic: BackboneSpec) -> dict[str, int]:
    """What a cache records beyond a frame-averaged map (and only then, so caches made before time was kept
    describe themselves as they did): the pooling, each step's grid side and, for a video transformer's tokens
    (a step per tubelet of frames), the steps."""
    s = cfg.sampling
    if s.semantic_reduce != "frames" and s.semantic_pool == 1:
        return {}
    steps = s.semantic_frames // semantic.tubelet if s.semantic_reduce == "frames" else 1
    layout = {"pool": s.semantic_pool, "grid": math.isqrt(semantic.tokens // steps)}
    return {**layout, "steps": steps} if semantic.tubelet > 1 and s.semantic_reduce == "frames" else layout


def views_layout(cfg: ExtractConfig) -> dict[str, Any]:
    """A multi-view cache's views, in both backbones' attributes (a one-view cache records none, as before views)."""
    s = cfg.sampling
    return {"views": {"spatial": s.spatial_views, "temporal": s.temporal_views}} if s.views > 1 else {}


def build_backbones(cfg: ExtractConfig, specs: tuple[BackboneSpec, ...], weights: dict[str, str | None]) -> dict:
    """{kind: frozen backbone} for `specs`, the image backbone keeping its frames as the sampling config says."""
    b, s = cfg.backbones, cfg.sampling
    return {spec.kind: build_backbone(spec, weights.get(spec.kind), b.random_init, b.seed, s.semantic_reduce,
                                      s.semantic_pool) for spec in specs}  # fmt: skip


def cache_attrs(
    clips: ClipList,
    cfg: ExtractConfig,
    specs: tuple[BackboneSpec, BackboneSpec],
    precision: str,
    source: dict[str, Any],
) -> dict[str, Any]:
    semantic, motion = specs
    b = cfg.backbones
    backbones = {
        "semantic": {
            **semantic.describe(),
            **weights_identity(b.semantic_weights, semantic.model, b.random_init, b.seed),
            "frames": cfg.sampling.semantic_frames if cfg.sampling.semantic_reduce != "center" else 1,
            "reduce": cfg.sampling.semantic_reduce,
            **semantic_layout(cfg, semantic),
            **views_layout(cfg),
            "precision": precision,
            "frame_resize": FRAME_RESIZE,
        },
        "motion": {
            **motion.describe(),
            **weights_identity(b.motion_weights, motion.model, b.random_init, b.seed),
            "frames": cfg.sampling.motion_frames,
            "reduce": "spatial mean per segment",
            **views_layout(cfg),
            "precision": precision,
            "frame_resize": FRAME_RESIZE,
        },
    }
    return {
        "dataset": clips.dataset,
        "split": clips.split,
        "created_with": created_with(),
        "config": {**dataclasses.asdict(cfg), "source": source},
        "backbones": backbones,
        "label_fields": list(clips.label_fields),
        "label_names": clips.label_names,
        "meta_fields": list(clips.meta_fields),
        **clips.attrs,
    }


def plan_batches(writer: ShardWriter, shards: list[int], batch_size: int) -> list[list[int]]:
    """Batches never straddle shards, so a restarted job computes every shard exactly as before."""
    batches = []
    for shard in shards:
        lo, hi = writer.rows(shard)
        batches.extend(list(range(start, min(start + batch_size, hi))) for start in range(lo, hi, batch_size))
    return batches


def weights_problem(cfg: ExtractConfig) -> str | None:
    """A named local weights path that does not exist (hub ids and 'pretrained' are checked when loading)."""
    if cfg.backbones.random_init:
        return None
    for option, weights in (
        ("--semantic-weights", cfg.backbones.semantic_weights),
        ("--motion-weights", cfg.backbones.motion_weights),
    ):
        if weights is None or weights == "pretrained" or Path(weights).exists():
            continue
        name = cfg.backbones.semantic if option == "--semantic-weights" else cfg.backbones.motion
        hub = name in REGISTRY and REGISTRY[name].hub  # else its weights can only be a local file
        if weights.startswith(("/", ".", "~")) or not hub:
            return f"{option} {weights} does not exist"
    return None


class CacheTarget:
    """A split read and described for its cache: the clip list, the backbone specs and the cache's attributes.
    Nothing is created until `open(create=True)`."""

    def __init__(
        self,
        source: DataSource,
        cache: str | Path,
        cfg: ExtractConfig,
        precision: str,
    ):
        cfg = with_backbone_defaults(validate(cfg))
        problem = weights_problem(cfg)
        if problem:
            raise UserError(problem)
        self.path, self.cfg = Path(output_folder(cache, "--cache")), cfg
        self.clips = source.read()
        self.specs = backbone_specs(cfg)
        self.attrs = cache_attrs(self.clips, cfg, self.specs, precision, source.record())
        # every view's tokens one after another along the token axis (view-major)
        self.shapes = {spec.kind: (spec.tokens * cfg.sampling.views, spec.dim) for spec in self.specs}

    def open(self, create: bool) -> ShardWriter | None:
        """The cache's writer, after checking it was made by this run; None when absent and not `create`."""
        group = open_or_create(self.path, self.clips, self.cfg.run.shard_size, self.shapes, self.attrs, create)
        return None if group is None else ShardWriter(self.path, group)


def run_extraction(
    source: DataSource,
    cache: str | Path,
    cfg: ExtractConfig,
    shard: tuple[int, int] = (0, 1),
    on_progress: Callable[[int, int], None] | None = None,
    shards: list[int] | None = None,
    retry_failed: bool = False,
) -> ExtractSummary:
    """Extract this job's shards of the source's clips into `cache`: those with j mod N == K for `shard` = (K, N),
    or the explicit list `shards`. With `retry_failed`, also its finished shards
    that list failed clips (redone whole, so they equal an uninterrupted run's). `on_progress(clips_handled,
    clips_todo)` is called per batch.

    Backbones are loaded before the cache is created, so bad weights leave nothing behind."""
    started = time.perf_counter()
    device = resolve_device(cfg.run.device)
    precision = resolve_precision(cfg.run.precision, device)
    target = CacheTarget(source, cache, cfg, precision)
    clips, cfg = target.clips, target.cfg
    writer = target.open(create=False)
    total_shards = num_shards(len(clips), cfg.run.shard_size)
    mine = shards if shards is not None else owned_shards(total_shards, *shard)
    finished = writer.done_shards() if writer else set()
    retry = (writer.failed_shards() & finished & set(mine)) if writer and retry_failed else set()
    todo = [j for j in mine if j not in finished or j in retry]
    rows = [shard_rows(j, cfg.run.shard_size, len(clips)) for j in mine]
    owned = sum(hi - lo for lo, hi in rows)
    skipped = sum(hi - lo for (lo, hi), j in zip(rows, mine) if j not in todo)
    log.info(
        "%d clips in %d shards; this job owns %d shards, %d already done%s",
        len(clips),
        total_shards,
        len(mine),
        len(mine) - len(todo) + len(retry),
        f", {len(retry)} with failed clips to retry" if retry else "",
    )
    summary = ExtractSummary(len(clips), owned, 0, 0, skipped, 0.0)
    if todo:
        b = cfg.backbones
        weights = {"semantic": b.semantic_weights, "motion": b.motion_weights}
        models = {kind: model.to(device) for kind, model in build_backbones(cfg, target.specs, weights).items()}
        # Once the backbones loaded (bad weights stay one line), before anything is written.
        per_clip = sum(tokens * dim * 2 for tokens, dim in target.shapes.values())  # float16
        views = cfg.sampling.views
        shapes = ", ".join(f"{kind} {tokens // views}x{dim}" for kind, (tokens, dim) in target.shapes.items())
        if views > 1:  # each number says what it counts: a view, a clip (all its views), the cache
            progress.info("cache size: %d clips x %d views x %s a view (%s a view, float16) = %s in all (%s a clip, "
                          "%s a view of every clip); backbone time %dx one view's", len(clips), views,
                          size_text(per_clip // views), shapes, size_text(per_clip * len(clips)),
                          size_text(per_clip), size_text(per_clip // views * len(clips)), views)  # fmt: skip
        else:
            progress.info("cache size: %d clips x %s (%s, float16) = %s", len(clips), size_text(per_clip), shapes,
                          size_text(per_clip * len(clips)))  # fmt: skip
        writer = writer or target.open(create=True)
        claims = ShardClaims(target.path)
        try:
            # Never a shard that another process is extracting (two identical commands, an array task run twice),
            # nor one it finished since this job looked.
            claimed = claims.claim(todo)
            busy = [j for j in todo if j not in claimed]
            retry &= set(claimed)
            writer.reopen(retry)
            done_now = writer.done_shards()
            todo = [j for j in claimed if j not in done_now]
            summary.busy = sum(hi - lo for lo, hi in map(writer.rows, busy))
            summary.skipped += sum(hi - lo for lo, hi in map(writer.rows, set(claimed) - set(todo)))
            if busy:
                log.warning(
                    "%d shards of this job are being extracted by another running process: left to it", len(busy)
                )
            if todo:
                _extract_shards(clips, cfg, target.specs, models, device, precision, writer, todo, summary, on_progress)
        finally:
            claims.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _extract_shards(
    clips: ClipList,
    cfg: ExtractConfig,
    specs: tuple[BackboneSpec, BackboneSpec],
    models: dict[str, torch.nn.Module],
    device: torch.device,
    precision: str,
    writer: ShardWriter,
    todo: list[int],
    summary: ExtractSummary,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    total = sum(hi - lo for lo, hi in map(writer.rows, todo))
    size = max(spec.input_size for spec in specs)
    frames = ClipFrames(clips.clips, cfg.sampling, size, cfg.run.decode_timeout, decoder_threads(cfg.run))
    batches = plan_batches(writer, todo, cfg.run.batch_size)
    shard_of = {row: j for j in todo for row in range(*writer.rows(j))}
    buffer: dict[str, Any] | None = None
    handled = 0
    for batch in decoded_batches(frames, batches, cfg.run.workers, pin=device.type == "cuda"):
        rows = batch["rows"] + [f["row"] for f in batch["failures"]]
        shard = shard_of[rows[0]]
        if buffer is None:
            buffer = _new_buffer(writer, shard, specs)
        lo = writer.rows(shard)[0]
        if batch["rows"]:
            with autocast(device, precision):
                for kind, model in models.items():
                    out = model.views(batch[kind].to(device, non_blocking=True))
                    buffer[kind][np.asarray(batch["rows"]) - lo] = out.to(torch.float16).cpu().numpy()
        for failure in batch["failures"]:
            clip = clips.clips[failure["row"]]
            log.warning("failed %s (%s) at %s: %s", clip.clip_id, clip.source, failure["stage"], failure["error"])
            buffer["failures"].append(
                {
                    "clip_id": clip.clip_id,
                    "path": clip.source,
                    "row": failure["row"],
                    "stage": failure["stage"],
                    "error": failure["error"],
                }
            )
        buffer["pending"] -= len(rows)
        summary.extracted += len(batch["rows"])
        summary.failed += len(batch["failures"])
        handled += len(rows)
        if buffer["pending"] == 0:
            writer.write(shard, {kind: buffer[kind] for kind in models}, buffer["failures"])
            buffer = None
        if on_progress:
            on_progress(handled, total)


def _new_buffer(writer: ShardWriter, shard: int, specs: tuple[BackboneSpec, BackboneSpec]) -> dict[str, Any]:
    lo, hi = writer.rows(shard)
    buffer: dict[str, Any] = {
        spec.kind: np.full((hi - lo, *writer.group[spec.kind].shape[1:]), np.nan, dtype=np.float16) for spec in specs
    }
    buffer.update(failures=[], pending=hi - lo)
    return buffer
