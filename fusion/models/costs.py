"""What one training step of a module costs: FLOPs (counted, with CPU attention kernels counted as the GPU's),
peak memory and median time; read by `cli bench fusion` and by reports (each configuration's cost)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from pipeline.core.devices import autocast


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


class ModelAsLayer(nn.Module):
    """A fusion model called like a layer: (semantic, motion) -> outputs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, semantic: torch.Tensor, motion: torch.Tensor) -> dict[str, torch.Tensor]:
        """semantic: [B, Ns, Ds] or [B, F, Ns, Ds], motion: [B, Nm, Dm] -> the model's output dict."""
        return self.model({"semantic": semantic, "motion": motion})
