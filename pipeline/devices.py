"""Device and mixed-precision choices shared by extraction and training."""

from __future__ import annotations

import contextlib

import torch

from pipeline.errors import UserError

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


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto' is bf16 on a GPU and fp32 on a CPU (CPU autocast is rarely faster and changes numerics)."""
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if name not in ("fp32", *DTYPES):
        raise UserError(f"precision must be auto, fp32, fp16 or bf16, got '{name}'")
    return name


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])
