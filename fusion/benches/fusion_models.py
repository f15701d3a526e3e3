"""`cli bench fusion`: FLOPs, training-step memory and time of B-CAST vs full-width cross-attention,
layer against layer and GASM-CAST against the full-width model, over batch sizes; for the models, the time per
clip and what it makes an epoch of SSv2 train, eager and (`--compile`) compiled with torch.compile."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from fusion.layers import BottleneckCrossAttention, FullWidthCrossAttention
from fusion.models import build_model
from pipeline.core.devices import autocast, resolve_device, resolve_precision


def _step(module: nn.Module, inputs: tuple[torch.Tensor, ...], precision: str) -> Callable[[], None]:
    """One training step's forward (under the training's autocast) and backward (a scalar of every output, so
    all paths get gradient)."""
    device = inputs[0].device

    def run() -> None:
        with autocast(device, precision):
            out = module(*inputs)
        tensors = list(out.values()) if isinstance(out, dict) else list(_tensors(out))
        sum(t.float().mean() for t in tensors).backward()
        module.zero_grad(set_to_none=True)

    return run


def _tensors(value: object) -> Iterator[torch.Tensor]:
    """Every tensor in a layer's output (nested tuples; attention weights are None unless asked)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


def _cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001 - shapes
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward(grad, query, key, value, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001 - shapes
    return sdpa_backward_flop_count(grad, query, key, value)


# torch counts the GPU attention kernels only; on a CPU, SDPA runs as these ops and would count as free.
CPU_SDPA = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}


def _flops(step: Callable[[], None]) -> int:
    with FlopCounterMode(display=False, custom_mapping=CPU_SDPA) as counter:
        step()
    return counter.get_total_flops()


def _memory_mb(module: nn.Module, step: Callable[[], None], device: torch.device) -> float:
    """Peak allocated on a GPU; on a CPU, what a step holds at its peak: saved tensors + weights + grads."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    weights = sum(p.numel() * p.element_size() for p in module.parameters())
    return (sum(saved.values()) + 2 * weights) / 2**20


def _seconds(step: Callable[[], None], device: torch.device, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


SSV2_TRAIN_CLIPS = 168_913  # the clips of an SSv2 train epoch, to turn a step time into an epoch time


def measure(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    device: torch.device,
    repeats: int,
    precision: str = "fp32",
    compile: bool = False,
) -> dict[str, float]:
    """GFLOPs, memory (MB) and median step time (ms) of one training step; with `compile`, also the step time
    of the torch.compile'd module ("compiled_ms"; compilation itself is not timed)."""
    module = module.to(device).train()
    inputs = tuple(x.to(device).requires_grad_(False) for x in inputs)
    step = _step(module, inputs, precision)
    result = {
        "gflops": _flops(step) / 1e9,
        "memory": _memory_mb(module, step, device),
        "ms": 1000 * _seconds(step, device, repeats),
    }
    if compile:
        result["compiled_ms"] = 1000 * _seconds(_step(torch.compile(module), inputs, precision), device, repeats)
    return result


def _epoch(ms: float, batch: int) -> str:
    minutes = ms / batch * SSV2_TRAIN_CLIPS / 60_000
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.1f} min"


def bench_fusion(
    semantic: tuple[int, int],
    motion: tuple[int, int],
    batch_sizes: list[int],
    device: str,
    repeats: int,
    precision: str = "auto",
    compile: bool = False,
) -> Table:
    """`precision` as training resolves it (auto: fp32 on CPU, bf16 or fp16 on GPU); `compile`: also time the
    models compiled with torch.compile."""
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    (ns, ds), (nm, dm) = semantic, motion
    memory_label = "peak MB" if dev.type == "cuda" else "saved+weights MB"
    table = Table(
        title=f"bench fusion: semantic {ns}x{ds}, motion {nm}x{dm}, training step (forward + backward) on {dev}, "
        f"{precision}; SSv2 epoch: {SSV2_TRAIN_CLIPS:,} clips at the step's ms/clip (forward + backward only)"
    )
    columns = ["batch", "compared", "GFLOPs", "x", memory_label, "x", "ms", "x", "ms/clip", "SSv2 epoch"]
    for column in columns + (["compiled ms/clip", "compiled SSv2 epoch"] if compile else []):
        table.add_column(column, justify="right")
    for batch in batch_sizes:
        torch.manual_seed(0)
        inputs = (torch.randn(batch, ns, ds), torch.randn(batch, nm, dm))
        pairs = {
            "layer": (BottleneckCrossAttention(ds, dm), FullWidthCrossAttention(ds, dm)),
            "model": (
                ModelAsLayer(build_model("gasm_cast", ds, dm, {"label": 174})),
                ModelAsLayer(build_model("vanilla_cross_attention", ds, dm, {"label": 174})),
            ),
        }
        for level, (ours, baseline) in pairs.items():
            models = level == "model"
            a, b = (measure(m, inputs, dev, repeats, precision, compile and models) for m in (ours, baseline))
            names = ("B-CAST layer", "full-width layer") if not models else ("gasm_cast", "vanilla_cross_attention")
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
    Console(width=max(Console().width, 120)).print(table)
    return table


class ModelAsLayer(nn.Module):
    """A fusion model called like a layer: (semantic, motion) -> outputs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, semantic: torch.Tensor, motion: torch.Tensor) -> dict[str, torch.Tensor]:
        """semantic: [B, Ns, Ds], motion: [B, Nm, Dm] -> the model's output dict."""
        return self.model({"semantic": semantic, "motion": motion})
