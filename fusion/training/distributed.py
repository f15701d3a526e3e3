"""torch.distributed set-up from the variables torchrun exports; a single process when they are absent.

NCCL serves CUDA tensors only. The training's scalar collectives (loss sums, stop flags) and object
collectives (RNG states, validation outputs) run on CPU, so a GPU run's process group pairs NCCL for CUDA
with gloo for CPU; the backend follows the device the run was asked to use, not what the node has.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


def local_rng_state(device: torch.device) -> dict[str, Any]:
    """This process's CPU RNG state and that of its own GPU (the global generators dropout and mixup draw from)."""
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_local_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def own_random_state(run: Any) -> Iterator[None]:
    """Do a training run's work on its own global random state, kept in `run.rng` (on `run.device`) between its
    turns when it shares the process with other runs; a run alone (rng None) just uses the global state."""
    if run.rng is None:
        yield
        return
    set_local_rng_state(run.rng, run.device)
    try:
        yield
    finally:
        run.rng = local_rng_state(run.device)


def backend_for(device: torch.device) -> str:
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> Distributed:
        """Join the process group when launched by torchrun, with the backends `device` needs."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(local_rank)  # before NCCL starts, so each process owns one GPU
            dist.init_process_group(backend_for(device))
        return cls(dist.get_rank(), world, local_rank)

    def device(self, requested: torch.device) -> torch.device:
        """One GPU per process: cuda:LOCAL_RANK."""
        if self.enabled and requested.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return requested

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over processes, on the tensor's own device (NCCL for CUDA, gloo for CPU)."""
        if self.enabled:
            dist.all_reduce(values)
        return values

    def max(self, value: int) -> int:
        """The largest of every process's `value` (e.g. a signal number, 0 when none arrived)."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor)

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order, on every process."""
        if not self.enabled:
            return [obj]
        objects: list[Any] = [None] * self.world
        dist.all_gather_object(objects, obj)
        return objects

    def from_main(self, obj: Any) -> Any:
        """Process 0's `obj` on every process: one decision, never one per process."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def rng_states(self, device: torch.device) -> list[dict[str, Any]]:
        """Every process's CPU RNG state and that of its own GPU (not every visible one), in rank order."""
        return self.gather(local_rng_state(device))

    def restore_rng(self, saved: dict[str, Any], device: torch.device) -> bool:
        """Restore this process's RNG states from a checkpoint's; False when the run had another process count
        (then dropout draws differ from an uninterrupted run, while data order and weights still match)."""
        ranks = saved.get("ranks") or [{"torch": saved["torch"], "cuda": None}]  # checkpoints of one process
        if len(ranks) != self.world:
            return False
        set_local_rng_state(ranks[self.rank], device)
        return True

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()
