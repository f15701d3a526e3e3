"""Where a training run keeps a cache's features (data.mode): on the device, in RAM, or streamed by shard windows."""

from __future__ import annotations

import torch

MODE_TEXT = {"device": "on the device", "ram": "in RAM", "streamed": "streamed by shard windows, read ahead"}


def choose_mode(mode: str, nbytes: int, ram_limit_gb: float, device: torch.device) -> str:
    """auto: the device's memory when it is a GPU with room for the features (half its free memory), else host
    RAM within `ram_limit_gb`, else streamed. An explicit mode is taken as given."""
    if mode != "auto":
        return mode
    if device.type == "cuda" and nbytes <= 0.5 * torch.cuda.mem_get_info(device)[0]:
        return "device"
    return "ram" if nbytes <= ram_limit_gb * 2**30 else "streamed"
