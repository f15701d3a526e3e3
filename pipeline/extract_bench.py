"""`cli bench extract`: decode-only, model-only and end-to-end clips/s, on generated SSv2-layout clips or on
a real dataset split (its clips repeated until the timing is stable).

End-to-end at >= 0.8 x model-only means decoding is hidden behind compute; far below means the run is
decode-bound (add workers) or starved by the CPU the workers share with the model.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from rich.table import Table

from pipeline.core.devices import autocast, resolve_device, resolve_precision
from pipeline.core.progress import table_console
from pipeline.datasets import Clip, DataSource
from pipeline.extract import backbone_specs, build_backbones, run_extraction
from pipeline.extract_config import ExtractConfig, decoder_threads, with_backbone_defaults
from pipeline.video.clip_dataset import ClipFrames
from pipeline.video.loader import decoded_batches


def _peak_memory(device: torch.device) -> tuple[str, str]:
    """(row name, MB) of the most memory the backbones took: the GPU's allocations, or this process's peak RSS
    on the CPU (the backbones run in it; decoders are other processes)."""
    if device.type == "cuda":
        return "peak GPU memory allocated (MB)", f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f}"
    import resource

    return "peak RSS of the model process (MB)", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _timed_batches(cfg: ExtractConfig, clips: list[Clip], size: int, models: dict | None = None) -> tuple[float, list]:
    """Clips/s from the first batch's arrival on (worker start-up excluded), decoding and, given `models`,
    running them as extraction does; and (time, clips done, RSS MB) marks."""
    frames = ClipFrames(clips, cfg.sampling, size, cfg.run.decode_timeout, decoder_threads(cfg.run))
    step = cfg.run.batch_size
    batches = [list(range(i, min(i + step, len(clips)))) for i in range(0, len(clips), step)]
    device = resolve_device(cfg.run.device)
    precision = resolve_precision(cfg.run.precision, device)
    marks, done = [], 0
    for batch in decoded_batches(frames, batches, cfg.run.workers, pin=device.type == "cuda"):
        if models and batch["rows"]:
            with autocast(device, precision):
                for kind, model in models.items():
                    model.views(batch[kind].to(device, non_blocking=True)).float().cpu()
        done += len(batch["rows"]) + len(batch["failures"])
        marks.append((time.perf_counter(), done, _rss_mb()))
    return _rate(marks), marks


def _rate(marks: list[tuple[float, int, float]]) -> float:
    """Clips/s between the first and the last mark: from the first batch's arrival on, so worker start-up,
    model building and warm-up are left out."""
    return (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0]) if len(marks) > 1 else float("nan")


def _model_only(cfg: ExtractConfig, clips: int, size: int) -> float:
    device = resolve_device(cfg.run.device)
    precision = resolve_precision(cfg.run.precision, device)
    built = build_backbones(cfg, backbone_specs(cfg), {})  # cfg has random_init set: no weights
    models = [
        (built[kind].to(device), frames)
        for kind, frames in (("semantic", cfg.sampling.semantic_frames), ("motion", cfg.sampling.motion_frames))
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


def bench_extract(cfg: ExtractConfig, clips: int, work_dir: Path | None, real: DataSource | None = None) -> None:
    """`cfg`: backbones (random init), batch size, workers and device to measure; shards of two batches.
    `real`: measure on a dataset split's clips, repeated until there are `clips` of them."""
    from pipeline.synth.ssv2 import make_ssv2

    cfg = with_backbone_defaults(
        replace(
            cfg,
            backbones=replace(cfg.backbones, random_init=True),
            run=replace(cfg.run, shard_size=cfg.run.batch_size * 2),
        )
    )
    b, run = cfg.backbones, cfg.run
    size = max(spec.input_size for spec in backbone_specs(cfg))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work_dir or tmp)
        if real is None:
            data = work / "data"
            if not (data / "train.json").exists():
                make_ssv2(data, train=clips, validation=0, test=0)
            generated = DataSource("ssv2", data, "train")
            listed = generated.read().clips
            source = f"{clips} generated 160x120 clips"
        else:
            base = real.read().clips
            listed = (base * -(-clips // len(base)))[: max(clips, len(base))]
            source = f"{len(base)} clips of {real.dataset}/{real.split} repeated to {len(listed)}"
        decode, _ = _timed_batches(cfg, listed, size)
        model = _model_only(cfg, len(listed), size)
        if real is None:
            marks: list[tuple[float, int, float]] = []

            def mark(done: int, total: int) -> None:
                marks.append((time.perf_counter(), done, _rss_mb()))

            run_extraction(generated, work / f"cache-{time.time_ns()}", cfg, on_progress=mark)
            end_to_end = _rate(marks)
        else:
            device = resolve_device(run.device)
            models = {kind: m.to(device) for kind, m in build_backbones(cfg, backbone_specs(cfg), {}).items()}
            end_to_end, marks = _timed_batches(cfg, listed, size, models)
    cores, workers = _cores(), max(1, run.workers)
    table = Table(
        title=f"bench extract: {b.semantic} + {b.motion}, {source}, batch {run.batch_size}, {run.workers} workers x "
        f"{decoder_threads(run)} decoder threads, {cores} cores, {torch.get_num_threads()} torch threads"
    )
    for column in ("stage", "clips/s", "x model-only", "per worker", "per core"):
        table.add_column(column, justify="right")
    table.add_row("decode only", f"{decode:.2f}", f"{decode / model:.2f}", f"{decode / workers:.2f}",
                  f"{decode / cores:.2f}")  # fmt: skip
    for name, rate in (("model only", model), ("end to end", end_to_end)):
        table.add_row(name, f"{rate:.2f}", f"{rate / model:.2f}", "", "")
    first_shard = next((rss for _, done, rss in marks if done >= run.shard_size), marks[0][2])
    table.add_row("RSS after first shard (MB)", f"{first_shard:.0f}", "", "", "")
    table.add_row("RSS at end (MB)", f"{marks[-1][2]:.0f}", f"{marks[-1][2] / first_shard:.2f} x first", "", "")
    table.add_row(*_peak_memory(resolve_device(run.device)), "", "", "")
    table_console(120).print(table)
