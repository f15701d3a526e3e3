"""`cli demo --real-shapes`: the whole chain at the default backbones' real shapes on a CPU — synth, extract
with random-init DINOv3 ViT-B/16 and I3D-R50, verify, train GASM-CAST and two baselines, evaluate, draw
attention, and compare. It shows the plumbing at full size; random-init features carry almost nothing of a
frame, so the models stay near chance (the learning demo is `cli demo` without the flag)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from fusion.demo.config import DemoConfig
from fusion.evaluation.evaluate import evaluate_checkpoint
from fusion.evaluation.visualize import visualize_clip
from fusion.training.command import run_training
from fusion.training.config import training_config
from fusion.training.request import TrainingRequest
from pipeline.cache.inspect import cache_info, verify_cache
from pipeline.core.errors import UserError
from pipeline.datasets import DataSource
from pipeline.extract_command import print_info, run_extract_command
from pipeline.extract_config import ExtractConfig

MODELS = ("gasm_cast", "semantic_only", "motion_only")


def run_real_shapes(out: Path, demo: DemoConfig) -> None:
    from pipeline.synth.ssv2 import make_ssv2

    console = Console()
    data = out / "ssv2-synthetic"
    if not (data / "test.json").exists():  # written last
        console.rule(f"1. synth: {demo.train} train + {demo.validation} validation clips -> {data}")
        make_ssv2(data, train=demo.train, validation=demo.validation, test=0, seed=demo.seed)
    cfg = ExtractConfig()
    cfg.backbones.random_init = True
    cfg.run.shard_size = 8
    caches = {}
    for split in ("train", "validation"):
        caches[split] = out / "cache" / f"ssv2-{split}"
        console.rule(f"2. extract {split} (DINOv3 ViT-B/16 + I3D-R50 res3, random init) -> {caches[split]}")
        run_extract_command(DataSource("ssv2", data, split), caches[split], cfg, (0, 1), live=None)
        problems = verify_cache(caches[split])
        if problems:
            raise UserError(f"demo cache {caches[split]} has {len(problems)} problem clip(s): {problems[:3]}")
        print_info(cache_info(caches[split]))
    results = {}
    overrides = {
        "epochs": demo.epochs,
        "optim": {"lr": demo.lr},
        "data": {"batch_size": demo.batch_size},
        "device": "cpu",
    }
    for model in MODELS:
        run = out / "runs" / model
        console.rule(f"3. fuse-train {model} -> {run}")
        train_cfg = training_config("default", None, overrides)
        resume = (run / "last.pt").exists()
        run_training(TrainingRequest(caches["train"], caches["validation"], model, run, train_cfg, resume))
        results[model] = evaluate_checkpoint(run / "best.pt", caches["validation"], device="cpu")["metrics"]
    console.rule("4. visualize gasm_cast attention on the first validation clip")
    for path in visualize_clip(out / "runs" / "gasm_cast" / "best.pt", caches["validation"], out / "attention"):
        console.print(str(path))
    table = Table(title=f"validation ({demo.validation} clips, 12 classes: chance 0.083) with random-init backbones")
    for column in ("model", "top-1", "top-5", "mean class acc."):
        table.add_column(column, justify="right")
    for model, metrics in results.items():
        table.add_row(
            model, f"{metrics['top1']:.3f}", f"{metrics['top5']:.3f}", f"{metrics['mean_class_accuracy']:.3f}"
        )
    console.print(table)
    console.print(
        f"demo finished: caches in {out / 'cache'}, runs in {out / 'runs'}, attention maps in {out / 'attention'}"
    )
