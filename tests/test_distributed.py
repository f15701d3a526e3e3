"""Multi-process training on CPU under the rules GPUs impose: torchrun with 3 gloo processes follows 1 process
step by step, including a last global batch smaller than the process count; the process group a GPU run makes
serves the CPU collectives NCCL cannot; dropout differs across processes while the data order does not."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import ROOT

from fusion.training.config import training_config
from fusion.training.distributed import Distributed, backend_for
from fusion.training.request import TrainingRequest
from fusion.training.trainer import Trainer
from pipeline.synth.features import make_feature_cache

DIMS = {"semantic": (16, 64), "motion": (4, 32)}


def steps(run: Path) -> list[float]:
    with (run / "steps.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def test_three_gloo_processes_follow_one_with_a_last_batch_of_two(tmp_path):
    train = make_feature_cache(tmp_path / "train", 50, "epic100", **DIMS, shard_size=16)
    val = make_feature_cache(tmp_path / "val", 40, "epic100", **DIMS, split="validation", shard_size=16)
    config = tmp_path / "nodrop.yaml"
    config.write_text("model:\n  dropout: 0.0\n")
    args = ["fuse-train", "--cache", train, "--val-cache", val, "--epochs", 2, "--batch-size", 8, "--device", "cpu",
            "--no-progress", "--config", config]  # fmt: skip
    args = [str(a) for a in args]
    subprocess.run([sys.executable, str(ROOT / "cli.py"), *args, "--out", str(tmp_path / "one")], check=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "3", "--master_port", "29533"]
    subprocess.run([*launcher, str(ROOT / "cli.py"), *args, "--out", str(tmp_path / "three")], check=True, timeout=600)
    one, three = steps(tmp_path / "one"), steps(tmp_path / "three")
    assert len(one) == len(three) == 14  # 50 clips / 8 per global batch = 7 steps, the last of 2 clips
    assert one == pytest.approx(three, rel=1e-5)
    final = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("one", "three")]
    assert final[1]["processes"] == 3
    for key, value in final[0]["last"].items():
        assert final[1]["last"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def _worker(rank: int, world: int, folder: str, caches: tuple[str, str]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1")
    report: dict = {}
    # NCCL's rule, on CPU: a group with a backend for CUDA only has none for the CPU tensors of the collectives.
    os.environ["MASTER_PORT"] = "29541"
    dist.init_process_group("cuda:gloo")
    try:
        dist.all_reduce(torch.ones(1))
        report["cuda_only_group"] = "worked"
    except RuntimeError as exc:
        report["cuda_only_group"] = str(exc)
    dist.destroy_process_group()
    # What a GPU run creates (NCCL stood in for by gloo): every collective the trainer uses works.
    os.environ["MASTER_PORT"] = "29542"
    dist.init_process_group(backend_for(torch.device("cuda")).replace("nccl", "gloo"))
    group = Distributed(rank, world, rank)
    report["sum"], report["max"] = group.sum(torch.tensor([rank + 1.0, 1.0])).tolist(), group.max(rank)
    report["from_main"] = group.from_main(f"rank {rank}")
    report["rng_states"] = len(group.rng_states(torch.device("cpu")))
    dist.destroy_process_group()
    # A trainer in each process: the data order is global, the dropout draws are the process's own.
    os.environ["MASTER_PORT"] = "29543"
    cfg = training_config("default", None, {"device": "cpu", "data": {"batch_size": 12}})
    trainer = Trainer(TrainingRequest(caches[0], caches[1], "late_fusion", Path(folder) / "run", cfg))
    batch = next(trainer.train_data.batches(12, shuffle=True, generator=torch.Generator().manual_seed(0),
                                            rank=rank, world=world))  # fmt: skip
    report["rows"], report["share"] = batch["row"].tolist(), batch["share"]
    report["dropout"] = (torch.nn.functional.dropout(torch.ones(64), 0.5) > 0).tolist()
    report["validation_rows"] = len(trainer.val_data)
    (Path(folder) / f"rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


def test_collectives_dropout_and_data_order_across_processes(tmp_path):
    train = make_feature_cache(tmp_path / "train", 30, "ssv2", **DIMS, shard_size=16)
    caches = (str(train), str(make_feature_cache(tmp_path / "val", 20, "ssv2", **DIMS, split="validation")))
    mp.spawn(_worker, args=(2, str(tmp_path), caches), nprocs=2)
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for report in reports:
        assert "No backend type associated with device type cpu" in report["cuda_only_group"]
        assert (report["sum"], report["max"], report["from_main"], report["rng_states"]) == ([3.0, 2.0], 1, "rank 0", 2)
    first, second = reports
    from fusion.data.cache_data import CacheData

    alone = next(CacheData(train).batches(12, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert first["rows"] + second["rows"] == alone["row"].tolist()  # one global order, split between processes
    assert first["share"] == second["share"] == 0.5
    assert first["dropout"] != second["dropout"]
    assert first["validation_rows"] + second["validation_rows"] == 20


def test_an_empty_part_of_a_global_batch_takes_one_row_at_weight_zero():
    from fusion.data.cache_data import _part

    idx = torch.arange(10, 12).numpy()
    parts = [_part(idx, rank, 3) for rank in range(3)]
    assert [p[0].tolist() for p in parts] == [[10], [11], [11]]
    assert [p[2] for p in parts] == [0.5, 0.5, 0.0] and {p[1] for p in parts} == {2}


def test_resume_with_another_process_count_restores_what_it_can():
    one = Distributed()
    torch.manual_seed(3)
    saved = {"ranks": one.rng_states(torch.device("cpu"))}
    expected = torch.rand(4)
    torch.manual_seed(99)
    assert one.restore_rng(saved, torch.device("cpu")) and torch.equal(torch.rand(4), expected)
    assert not one.restore_rng({"ranks": saved["ranks"] * 2}, torch.device("cpu"))
    torch.manual_seed(3)
    old_format = {"torch": torch.get_rng_state(), "cuda": []}  # checkpoints written before per-process states
    torch.manual_seed(99)
    assert one.restore_rng(old_format, torch.device("cpu")) and torch.equal(torch.rand(4), expected)
