"""Every default of a submitted job array, once; `cli submit` options are derived from these fields."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.config_loading import setting

ARRAY_EXECUTORS = ("auto", "slurm", "local")


@dataclass
class ArraySettings:
    tasks: int = setting(8, "Array tasks; pending shards are bin-packed onto them by cost.", low=1)
    executor: str = setting("auto", "auto: SLURM where available, else local processes.", choices=ARRAY_EXECUTORS)
    partition: str | None = setting(None, "SLURM partition (or SLURM_PARTITION).")
    gpus: int = setting(1, "GPUs per task.", low=0)
    cpus: int = setting(10, "CPUs per task (decoders need them).", low=1)
    mem_gb: float | None = setting(None, "Memory per task in GB (none: the partition's default).", low=1)
    time_min: int = setting(240, "Time limit per task in minutes.", low=1)
    parallelism: int = setting(64, "Array tasks running at once.", low=1)
