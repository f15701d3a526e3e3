"""`cli bench extract`: decode-only, model-only and end-to-end clips/s on generated SSv2-layout clips.

End-to-end at >= 0.8 x model-only means decoding is hidden behind compute; far below means the run is
decode-bound (add workers) or starved by the CPU the workers share with the model.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from pipeline.backbones import build_backbone
from pipeline.datasets import read_dataset
from pipeline.devices import autocast, resolve_device, resolve_precision
from pipeline.extract import backbone_specs, run_extraction
from pipeline.extract_config import ExtractConfig
from pipeline.video.clip_dataset import ClipFrames
from pipeline.video.loader import decoded_batches


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


def _decode_only(cfg: ExtractConfig, data: Path, size: int) -> float:
    clips = read_dataset("ssv2", data, "train").clips
    frames = ClipFrames(clips, cfg.sampling, size, cfg.run.decode_timeout)
    batches = [
        list(range(i, min(i + cfg.run.batch_size, len(clips)))) for i in range(0, len(clips), cfg.run.batch_size)
    ]
    started, count = time.perf_counter(), 0
    for batch in decoded_batches(frames, batches, cfg.run.workers, pin=False):
        count += len(batch["rows"])
    return count / (time.perf_counter() - started)


def _model_only(cfg: ExtractConfig, clips: int, size: int) -> float:
    device = resolve_device(cfg.run.device)
    precision = resolve_precision(cfg.run.precision, device)
    b = cfg.backbones
    models = [
        (build_backbone(spec, None, True, b.seed).to(device), frames)
        for spec, frames in zip(backbone_specs(cfg), (cfg.sampling.semantic_frames, cfg.sampling.motion_frames))
    ]
    inputs = [
        torch.randint(0, 256, (cfg.run.batch_size, frames, size, size, 3), dtype=torch.uint8) for _, frames in models
    ]
    batches = max(1, clips // cfg.run.batch_size - 1)
    for step in range(batches + 1):
        if step == 1:  # the first batch warms up allocators and kernels
            started = time.perf_counter()
        with autocast(device, precision):
            for (model, _), x in zip(models, inputs):
                model(x.to(device, non_blocking=True)).float().cpu()
    return batches * cfg.run.batch_size / (time.perf_counter() - started)


def bench_extract(cfg: ExtractConfig, clips: int, work_dir: Path | None) -> None:
    """`cfg`: backbones (random init), batch size, workers and device to measure; shards of two batches."""
    from pipeline.synth.ssv2 import make_ssv2

    cfg = replace(
        cfg,
        backbones=replace(cfg.backbones, random_init=True),
        run=replace(cfg.run, shard_size=cfg.run.batch_size * 2),
    )
    semantic, motion, batch_size, workers = (
        cfg.backbones.semantic, cfg.backbones.motion, cfg.run.batch_size, cfg.run.workers
    )  # fmt: skip
    size = max(spec.input_size for spec in backbone_specs(cfg))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work_dir or tmp)
        data = work / "data"
        if not (data / "train.json").exists():
            make_ssv2(data, train=clips, validation=0, test=0)
        decode = _decode_only(cfg, data, size)
        model = _model_only(cfg, clips, size)
        marks: list[tuple[float, int, float]] = []
        run_extraction(
            "ssv2",
            data,
            "train",
            work / f"cache-{time.time_ns()}",
            cfg,
            on_progress=lambda done, total: marks.append((time.perf_counter(), done, _rss_mb())),
        )
    # From the first batch's arrival on, as in model-only: excludes model building and warm-up.
    end_to_end = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0]) if len(marks) > 1 else float("nan")
    table = Table(
        title=f"bench extract: {semantic} + {motion}, batch {batch_size}, {workers} workers, {clips} clips, "
        f"{torch.get_num_threads()} torch threads"
    )
    for column in ("stage", "clips/s", "x model-only"):
        table.add_column(column, justify="right")
    for name, rate in (("decode only", decode), ("model only", model), ("end to end", end_to_end)):
        table.add_row(name, f"{rate:.2f}", f"{rate / model:.2f}")
    first_shard = next((rss for _, done, rss in marks if done >= cfg.run.shard_size), marks[0][2])
    table.add_row("RSS after first shard (MB)", f"{first_shard:.0f}", "")
    table.add_row("RSS at end (MB)", f"{marks[-1][2]:.0f}", f"{marks[-1][2] / first_shard:.2f} x first")
    Console(width=max(Console().width, 120)).print(table)
