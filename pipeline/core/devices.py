"""Device and mixed-precision choices shared by extraction and training."""

from __future__ import annotations

import contextlib

import torch

from pipeline.core.errors import UserError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: '{name}' is not a device (expected auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available on this machine")
    return device


def has_native_bf16(device: torch.device) -> bool:
    """bf16 tensor cores (compute capability 8.0, Ampere, or newer); older GPUs emulate bf16 slowly."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)


def resolve_precision(name: str, device: torch.device, native_bf16: bool | None = None) -> str:
    """'auto' is fp32 on a CPU (CPU autocast is rarely faster and changes numerics); on a GPU, bf16 where it is
    native, else fp16 (with a gradient scaler when training). `native_bf16` overrides the local check, for
    choices made on behalf of other machines."""
    if name == "auto":
        if device.type != "cuda":
            return "fp32"
        supported = has_native_bf16(device) if native_bf16 is None else native_bf16
        return "bf16" if supported else "fp16"
    if name not in ("fp32", *DTYPES):
        raise UserError(f"precision must be auto, fp32, fp16 or bf16, got '{name}'")
    return name


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])
