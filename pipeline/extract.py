"""The extraction job: read a split, decode in workers, run both frozen backbones, write owned shards."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.backbones import BackboneSpec, build_backbone, get_spec
from pipeline.cache.layout import num_shards, open_or_create
from pipeline.cache.writer import ShardWriter
from pipeline.datasets import ClipList, read_dataset
from pipeline.devices import autocast, resolve_device, resolve_precision
from pipeline.extract_config import ExtractConfig
from pipeline.provenance import created_with, weights_identity
from pipeline.sharding import owned_shards
from pipeline.video.clip_dataset import ClipFrames
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

    @property
    def clips_per_second(self) -> float:
        return (self.extracted + self.failed) / self.seconds if self.seconds > 0 else 0.0


def backbone_specs(cfg: ExtractConfig) -> tuple[BackboneSpec, BackboneSpec]:
    semantic = get_spec(cfg.backbones.semantic, "semantic")
    motion = get_spec(
        cfg.backbones.motion, "motion", layer=cfg.backbones.motion_layer, frames=cfg.sampling.motion_frames
    )
    return semantic, motion


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
            "frames": cfg.sampling.semantic_frames if cfg.sampling.semantic_reduce == "mean" else 1,
            "reduce": cfg.sampling.semantic_reduce,
            "precision": precision,
        },
        "motion": {
            **motion.describe(),
            **weights_identity(b.motion_weights, motion.model, b.random_init, b.seed),
            "frames": cfg.sampling.motion_frames,
            "reduce": "spatial mean per segment",
            "precision": precision,
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
    }


def plan_batches(writer: ShardWriter, shards: list[int], batch_size: int) -> list[list[int]]:
    """Batches never straddle shards, so a restarted job computes every shard exactly as before."""
    batches = []
    for shard in shards:
        lo, hi = writer.rows(shard)
        batches.extend(list(range(start, min(start + batch_size, hi))) for start in range(lo, hi, batch_size))
    return batches


def prepare_cache(
    dataset: str, data_root: str | Path, split: str, cache: str | Path, cfg: ExtractConfig, limit: int | None = None
) -> tuple[ClipList, tuple[BackboneSpec, BackboneSpec], ShardWriter]:
    """Read the split and create (or reopen and check) its cache; nothing is decoded or loaded yet."""
    clips = read_dataset(dataset, data_root, split, limit)
    specs = backbone_specs(cfg)
    precision = resolve_precision(cfg.run.precision, resolve_device(cfg.run.device))
    source = {"dataset": dataset, "data_root": str(data_root), "split": split, "limit": limit}
    shapes = {spec.kind: (spec.tokens, spec.dim) for spec in specs}
    group = open_or_create(cache, clips, cfg.run.shard_size, shapes, cache_attrs(clips, cfg, specs, precision, source))
    return clips, specs, ShardWriter(cache, group)


def run_extraction(
    dataset: str,
    data_root: str | Path,
    split: str,
    cache: str | Path,
    cfg: ExtractConfig,
    shard: tuple[int, int] = (0, 1),
    limit: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    shards: list[int] | None = None,
) -> ExtractSummary:
    """Extract this job's shards of the split into `cache`: those with j mod N == K for `shard` = (K, N), or the
    explicit list `shards`. `on_progress(clips_handled, clips_todo)` is called per batch."""
    started = time.perf_counter()
    clips, specs, writer = prepare_cache(dataset, data_root, split, cache, cfg, limit)
    device = resolve_device(cfg.run.device)
    precision = resolve_precision(cfg.run.precision, device)
    mine = shards if shards is not None else owned_shards(num_shards(len(clips), cfg.run.shard_size), *shard)
    finished = writer.done_shards()
    todo = [j for j in mine if j not in finished]
    owned = sum(hi - lo for lo, hi in map(writer.rows, mine))
    skipped = sum(hi - lo for lo, hi in (writer.rows(j) for j in mine if j in finished))
    log.info(
        "%d clips in %d shards; this job owns %d shards, %d already done",
        len(clips),
        num_shards(len(clips), cfg.run.shard_size),
        len(mine),
        len(mine) - len(todo),
    )
    summary = ExtractSummary(len(clips), owned, 0, 0, skipped, 0.0)
    if todo:
        _extract_shards(clips, cfg, specs, device, precision, writer, todo, summary, on_progress, owned - skipped)
    summary.seconds = time.perf_counter() - started
    return summary


def _extract_shards(
    clips: ClipList,
    cfg: ExtractConfig,
    specs: tuple[BackboneSpec, BackboneSpec],
    device: torch.device,
    precision: str,
    writer: ShardWriter,
    todo: list[int],
    summary: ExtractSummary,
    on_progress: Callable[[int, int], None] | None,
    total: int,
) -> None:
    b = cfg.backbones
    models = {
        spec.kind: build_backbone(spec, getattr(b, f"{spec.kind}_weights"), b.random_init, b.seed).to(device)
        for spec in specs
    }
    frames = ClipFrames(clips.clips, cfg.sampling, max(spec.input_size for spec in specs), cfg.run.decode_timeout)
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
                    out = model(batch[kind].to(device, non_blocking=True))
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
        spec.kind: np.full((hi - lo, spec.tokens, spec.dim), np.nan, dtype=np.float16) for spec in specs
    }
    buffer.update(failures=[], pending=hi - lo)
    return buffer
