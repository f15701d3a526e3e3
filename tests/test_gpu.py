"""The GPU paths, for a machine with CUDA: `make test-gpu` (skipped elsewhere, as in CI).

Extraction of real clips in bf16 against the CPU in fp32, fuse-train for a few steps, torchrun with NCCL, the
benchmarks on the GPU, and the host synchronisations a training step makes."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner
from conftest import ROOT, small_caches, tiny_config

from cli import main

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
DIMS = {"semantic": (49, 128), "motion": (8, 64)}


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return small_caches(tmp_path_factory.mktemp("gpu-caches"), 256, 64, dims=DIMS, shard_size=64)


def test_real_clips_extract_in_bf16_close_to_cpu_fp32(real_fixtures, tmp_path):
    from pipeline.datasets import DataSource
    from pipeline.extract import run_extraction

    root = real_fixtures / "ssv2-mini"
    run_extraction(DataSource("ssv2", root, "train"), tmp_path / "cpu", tiny_config(device="cpu"))
    run_extraction(
        DataSource("ssv2", root, "train"), tmp_path / "gpu", tiny_config(device="cuda", precision="bf16", workers=2)
    )
    cpu, gpu = (zarr.open_group(str(tmp_path / name), mode="r") for name in ("cpu", "gpu"))
    assert gpu.attrs["backbones"]["semantic"]["precision"] == "bf16"
    for name in ("semantic", "motion"):
        a, b = cpu[name][:].astype(np.float32), gpu[name][:].astype(np.float32)
        assert np.isfinite(b).all()
        cosine = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
        assert cosine.mean() > 0.99, name


def test_fuse_train_a_few_steps_on_the_gpu(caches, tmp_path):
    args = ["fuse-train", "--cache", caches[0], "--val-cache", caches[1], "--out", tmp_path / "r", "--epochs", 2,
            "--batch-size", 64, "--device", "cuda", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "r" / "best.pt", weights_only=True)
    assert state["rng"]["ranks"][0]["cuda"] is not None


def test_torchrun_with_nccl(caches, tmp_path):
    processes = min(2, torch.cuda.device_count())
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
               "29561", str(ROOT / "cli.py"), "fuse-train", "--cache", str(caches[0]), "--val-cache", str(caches[1]),
               "--out", str(tmp_path / "r"), "--epochs", "1", "--device", "cuda", "--no-progress"]  # fmt: skip
    subprocess.run(command, check=True, timeout=600)
    assert (tmp_path / "r" / "best.pt").is_file()


def test_mixed_process_group_serves_cpu_and_cuda_collectives():
    import os

    import torch.distributed as dist

    from fusion.training.distributed import backend_for

    os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29562")
    torch.cuda.set_device(0)
    dist.init_process_group(backend_for(torch.device("cuda")))
    try:
        cpu, cuda = torch.ones(1), torch.ones(1, device="cuda")
        dist.all_reduce(cpu)
        dist.all_reduce(cuda)
        assert float(cpu) == float(cuda) == 1.0
    finally:
        dist.destroy_process_group()


def test_benchmarks_run_on_the_gpu(caches, tmp_path):
    runner = CliRunner(env={"COLUMNS": "200"})
    for args in (
        ["bench", "fusion", "--device", "cuda", "--batch-sizes", "8", "--repeats", "1"],
        ["bench", "loader", "--cache", caches[0], "--device", "cuda", "--steps", "2"],
        ["bench", "extract", "--device", "cuda", "--semantic", "dinov3_tiny", "--motion", "i3d_tiny", "--clips", "8",
         "--batch-size", "4", "--workers", "1", "--work-dir", tmp_path],
    ):  # fmt: skip
        result = runner.invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, (args, result.output)


def test_training_steps_do_not_wait_for_the_host(caches, tmp_path):
    from fusion.training.config import training_config
    from fusion.training.request import TrainingRequest
    from fusion.training.trainer import Trainer

    cfg = training_config("default", None, {"device": "cuda", "epochs": 1, "data": {"batch_size": 64}})
    trainer = Trainer(TrainingRequest(caches[0], caches[1], "gasm_cast", tmp_path / "r", cfg))
    batches = list(trainer.train_data.batches(64, shuffle=True, generator=torch.Generator().manual_seed(0)))
    trainer._train_step(batches[0])  # warm-up: allocations and kernel selection
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            losses = [trainer._train_step(batch) for batch in batches[1:]]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    print(f"{len(syncs)} host synchronisations over {len(losses)} steps")
    assert all(loss.device.type == "cuda" for loss in losses)  # read back by the trainer every log_every steps
    assert len(syncs) < len(losses)  # no per-step read-back (float(loss) or a collective) is left
