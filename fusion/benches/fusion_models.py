"""`cli bench fusion`: FLOPs, training-step memory and time of B-CAST vs full-width cross-attention,
layer against layer and GASM-CAST against the full-width model, over batch sizes; for the models, the time per
clip and what it makes an epoch of SSv2 train, eager and (`--compile`) compiled with torch.compile."""

from __future__ import annotations

import torch
from rich.table import Table

from fusion.layers import BottleneckCrossAttention, FullWidthCrossAttention
from fusion.models.config import DEFAULT_MODEL, FusionConfig
from fusion.models.costs import ModelAsLayer, measure
from fusion.models.registry import build_model
from pipeline.core.defaults import PRECISION, SSV2_CLASSES, shape_text
from pipeline.core.devices import resolve_device, resolve_precision
from pipeline.core.errors import UserError
from pipeline.core.progress import table_console

SSV2_TRAIN_CLIPS = 168_913  # the clips of an SSv2 train epoch, to turn a step time into an epoch time


def _epoch(ms: float, batch: int) -> str:
    minutes = ms / batch * SSV2_TRAIN_CLIPS / 60_000
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.1f} min"


def bench_fusion(
    semantic: tuple[int, ...],
    motion: tuple[int, int],
    batch_sizes: list[int],
    device: str,
    repeats: int,
    precision: str = PRECISION,
    compile: bool = False,
) -> Table:
    """`semantic`: (tokens, width) or per-frame (frames, tokens, width); `precision` as training resolves it
    (auto: fp32 on CPU, bf16 or fp16 on GPU); `compile`: also time the models compiled with torch.compile."""
    (nm, dm), ds = motion, semantic[-1]
    heads = FusionConfig().heads
    if ds % heads or dm % heads:
        raise UserError(f"--semantic-shape/--motion-shape: widths {ds} and {dm} must both divide into the models' "
                        f"{heads} attention heads")  # fmt: skip
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    memory_label = "peak MB" if dev.type == "cuda" else "saved+weights MB"
    table = Table(
        title=f"bench fusion: semantic {shape_text(semantic)}, motion {nm}x{dm}, training step (forward + backward) "
        f"on {dev}, "
        f"{precision}; SSv2 epoch: {SSV2_TRAIN_CLIPS:,} clips at the step's ms/clip (forward + backward only)"
    )
    columns = ["batch", "compared", "GFLOPs", "x", memory_label, "x", "ms", "x", "ms/clip", "SSv2 epoch"]
    for column in columns + (["compiled ms/clip", "compiled SSv2 epoch"] if compile else []):
        table.add_column(column, justify="right")
    for batch in batch_sizes:
        torch.manual_seed(0)
        inputs = (torch.randn(batch, *semantic), torch.randn(batch, nm, dm))
        flat = (inputs[0].flatten(1, -2), inputs[1])  # the layers see per-frame tokens as one sequence
        pairs = {
            "layer": (BottleneckCrossAttention(ds, dm), FullWidthCrossAttention(ds, dm)),
            "model": (
                ModelAsLayer(build_model(DEFAULT_MODEL, ds, dm, {"label": SSV2_CLASSES})),
                ModelAsLayer(build_model("vanilla_cross_attention", ds, dm, {"label": SSV2_CLASSES})),
            ),
        }
        for level, (ours, baseline) in pairs.items():
            models = level == "model"
            given = inputs if models else flat
            a, b = (measure(m, given, dev, repeats, precision, compile and models) for m in (ours, baseline))
            names = ("B-CAST layer", "full-width layer") if not models else (DEFAULT_MODEL, "vanilla_cross_attention")
            for first, name, row in ((True, names[0], a), (False, names[1], b)):
                cells = [
                    str(batch) if first else "",
                    name,
                    f"{row['gflops']:.2f}",
                    f"{row['gflops'] / b['gflops']:.2f}",
                    f"{row['memory']:.0f}",
                    f"{row['memory'] / b['memory']:.2f}",
                    f"{row['ms']:.1f}",
                    f"{row['ms'] / b['ms']:.2f}",
                ]
                times = [row["ms"]] + ([row["compiled_ms"]] if compile and models else [])
                cells += [c for ms in times for c in (f"{ms / batch:.2f}", _epoch(ms, batch))] if models else []
                table.add_row(*cells, end_section=models and not first)
    table_console(120).print(table)
    return table
