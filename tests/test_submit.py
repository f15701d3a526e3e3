"""`cli submit extract` as run from a login node without a GPU, for GPU tasks; local GPUs spread over tasks."""

import pytest
import torch
import zarr
from click.testing import CliRunner
from conftest import tiny_config

from cli import main
from pipeline.cluster.array_config import ArraySettings
from pipeline.cluster.submit import local_gpu_sets, submit_extract, task_config
from pipeline.core.devices import resolve_precision
from pipeline.core.errors import UserError
from pipeline.datasets import DataSource


class RecordingExecutor:
    """Stands in for submitit's AutoExecutor: records what would be submitted."""

    submitted: list = []

    def __init__(self, folder, cluster=None):
        self.cluster, self.parameters = cluster or "slurm", {}

    def update_parameters(self, **params):
        self.parameters.update(params)

    def map_array(self, fn, *columns):
        RecordingExecutor.submitted = [dict(zip(("source", "cache", "cfg", "shards", "retry_failed"), row))
                                       for row in zip(*columns)]  # fmt: skip
        return [type("Job", (), {"job_id": f"7_{i}"})() for i in range(len(columns[0]))]


@pytest.fixture
def login_node(monkeypatch):
    import submitit

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(submitit, "AutoExecutor", RecordingExecutor)


def test_gpu_tasks_are_planned_from_a_node_without_gpu(login_node, ssv2_root, tmp_path):
    cfg = tiny_config(device="auto")
    jobs, plan = submit_extract(
        DataSource("ssv2", ssv2_root, "validation"), tmp_path / "c", cfg, ArraySettings(tasks=2, gpus=1)
    )
    assert len(jobs) == 2 and (plan["device"], plan["precision"]) == ("cuda", "bf16")
    assert {task["cfg"].run.device for task in RecordingExecutor.submitted} == {"cuda"}
    assert {task["cfg"].run.precision for task in RecordingExecutor.submitted} == {"bf16"}
    stamped = zarr.open_group(str(tmp_path / "c"), mode="r").attrs["backbones"]["semantic"]["precision"]
    assert stamped == "bf16"  # what the GPU tasks compute with, so none of them is refused as a different run
    explicit = tiny_config(device="cuda", precision="fp16")
    assert task_config(explicit, ArraySettings(gpus=1)).run.precision == "fp16"
    with pytest.raises(UserError, match="--device cuda asks for a GPU but --gpus is 0"):
        task_config(tiny_config(device="cuda"), ArraySettings(gpus=0))
    assert task_config(cfg, ArraySettings(gpus=0)).run.device == "cpu"


def test_submit_to_a_missing_slurm_leaves_no_cache(ssv2_root, tmp_path):
    args = ["submit", "extract", "--dataset", "ssv2", "--data-root", ssv2_root, "--cache", tmp_path / "c",
            "--executor", "slurm", "--random-init"]  # fmt: skip
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2 and result.output.startswith("error: --executor slurm: "), result.output
    assert not (tmp_path / "c").exists()


def test_local_tasks_spread_over_the_visible_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert local_gpu_sets(3, 1) == [[2], [3], [2]]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert local_gpu_sets(3, 2) == [[0, 1], [2, 3], [0, 1]]
    assert local_gpu_sets(2, 0) == []


def test_auto_precision_is_bf16_only_where_it_is_native():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_precision("auto", cuda, native_bf16=True) == "bf16"
    assert resolve_precision("auto", cuda, native_bf16=False) == "fp16"  # V100, T4: bf16 would be emulated
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("bf16", cuda, native_bf16=False) == "bf16"
