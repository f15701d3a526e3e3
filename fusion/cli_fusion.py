"""Commands that train on caches: models, fuse-train, fuse-eval, visualize, bench fusion / loader."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from pipeline.cli_base import EPILOG, parse_shape, user_errors


@click.command("fusion")
@click.option("--semantic-shape", default="196x768", help="Semantic tokens x width.")
@click.option("--motion-shape", default="8x512", help="Motion tokens x width.")
@click.option("--batch-sizes", default="1,8,64,256", help="Comma-separated batch sizes.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option("--repeats", type=int, default=3, help="Timed steps per measurement (median).")
@user_errors
def bench_fusion(semantic_shape: str, motion_shape: str, batch_sizes: str, device: str, repeats: int) -> None:
    """FLOPs, training-step memory and time: B-CAST vs full-width cross-attention, GASM-CAST vs vanilla."""
    from fusion.bench import bench_fusion as run

    run(
        parse_shape(semantic_shape),
        parse_shape(motion_shape),
        [int(b) for b in batch_sizes.split(",")],
        device,
        repeats,
    )


@click.command()
@click.option("--semantic-shape", default="196x768", help="Semantic tokens x width (as in a cache).")
@click.option("--motion-shape", default="8x512", help="Motion tokens x width (as in a cache).")
@click.option("--classes", type=int, default=174, help="Classes of the single-label task (SSv2).")
@click.option("--verbs", type=int, default=97, help="Verb classes (EPIC-KITCHENS-100).")
@click.option("--nouns", type=int, default=300, help="Noun classes (EPIC-KITCHENS-100).")
@user_errors
def models(semantic_shape: str, motion_shape: str, classes: int, verbs: int, nouns: int) -> None:
    """Every registered fusion model with its trainable parameters, checked against the 20M budget."""
    from rich.console import Console
    from rich.table import Table

    from fusion.models import MODELS, PARAMETER_BUDGET, build_model, count_trainable

    (_, ds), (_, dm) = parse_shape(semantic_shape), parse_shape(motion_shape)
    table = Table(title=f"fusion models for semantic {semantic_shape}, motion {motion_shape}")
    for column in (
        "model",
        f"label ({classes})",
        f"verb/noun ({verbs}/{nouns})",
        f"< {PARAMETER_BUDGET / 1e6:.0f}M",
        "what",
    ):
        table.add_column(column, justify="left" if column in ("model", "what") else "right")
    over = []
    for name, entry in MODELS.items():
        counts = [
            count_trainable(build_model(name, ds, dm, labels))
            for labels in ({"label": classes}, {"verb": verbs, "noun": nouns})
        ]
        ok = max(counts) < PARAMETER_BUDGET
        over += [] if ok else [name]
        table.add_row(name, f"{counts[0]:,}", f"{counts[1]:,}", "yes" if ok else "NO", entry.description)
    Console().print(table)
    if over:
        click.echo(f"over the parameter budget: {', '.join(over)}", err=True)
        sys.exit(1)


@click.command("fuse-train", epilog=EPILOG)
@click.option("--cache", type=click.Path(path_type=Path), required=True, envvar="GASM_CACHE", help="Training cache.")
@click.option(
    "--val-cache", type=click.Path(path_type=Path), required=True, envvar="GASM_VAL_CACHE", help="Validation cache."
)
@click.option("--model", default="gasm_cast", help="Registered model (see `cli models`).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder: checkpoints, metrics, curves.")
@click.option(
    "--preset", default="default", help="default (heads on cached features) or seed_recipe (the design notes')."
)
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="YAML overrides of the training config.")
@click.option("--epochs", type=int, help="Epochs.  [default: 30]")
@click.option("--lr", type=float, help="Peak learning rate.  [default: 3e-4]")
@click.option("--batch-size", type=int, help="Clips per step.  [default: 64]")
@click.option("--seed", type=int, help="Seed of weights, data order and augmentation.  [default: 0]")
@click.option("--device", help="auto, cpu, cuda or cuda:N.  [default: auto]")
@click.option(
    "--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), help="Autocast dtype.  [default: auto]"
)
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where its last checkpoint left it.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@user_errors
def fuse_train(
    cache: Path,
    val_cache: Path,
    model: str,
    out: Path,
    preset: str,
    config_file: Path | None,
    resume: bool,
    progress: bool,
    **options: Any,
) -> None:
    """Train a fusion model on cached features; SIGTERM writes a checkpoint and exits 143 (resume with --resume)."""
    from fusion.commands import run_training
    from fusion.train import Preempted
    from fusion.train_config import training_config

    fields = {
        "epochs": ("epochs",),
        "lr": ("optim", "lr"),
        "batch_size": ("data", "batch_size"),
        "seed": ("seed",),
        "device": ("device",),
        "precision": ("precision",),
    }
    overrides: dict[str, Any] = {}
    for option, value in options.items():
        if value is not None:
            *sections, key = fields[option]
            target = overrides
            for section in sections:
                target = target.setdefault(section, {})
            target[key] = value
    try:
        summary = run_training(
            cache, val_cache, model, out, training_config(preset, config_file, overrides), resume, progress
        )
    except Preempted as exc:
        click.echo(f"pre-empted: checkpoint written to {exc}; continue with the same command and --resume", err=True)
        sys.exit(143)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, process 0 reports
        click.echo(json.dumps(summary["best"], indent=2))


@click.command("fuse-eval", epilog=EPILOG)
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="A run's best.pt or last.pt.")
@click.option("--cache", type=click.Path(path_type=Path), required=True, help="Cache to evaluate on.")
@click.option(
    "--predictions",
    type=click.Path(path_type=Path),
    help="Write each clip's top-5 predictions and labels (JSON lines).",
)
@click.option("--batch-size", type=int, default=256, help="Clips per forward pass.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@user_errors
def fuse_eval(checkpoint: Path, cache: Path, predictions: Path | None, batch_size: int, device: str) -> None:
    """Metrics of a trained model on a cache, as JSON."""
    from fusion.evaluate import evaluate_checkpoint

    click.echo(json.dumps(evaluate_checkpoint(checkpoint, cache, batch_size, device, predictions), indent=2))


@click.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="A run's best.pt or last.pt.")
@click.option("--cache", type=click.Path(path_type=Path), required=True, help="Cache holding the clip.")
@click.option("--clip", help="Clip id.  [default: the first usable clip]")
@click.option("--out", type=click.Path(path_type=Path), default=Path("attention"), help="Folder for the PNG files.")
@click.option(
    "--data-root", type=click.Path(path_type=Path), help="Dataset root, if it moved since extraction (for the frame)."
)
@user_errors
def visualize(checkpoint: Path, cache: Path, clip: str | None, out: Path, data_root: Path | None) -> None:
    """Attention maps of one clip as PNG: semantic graph, motion graph, each fusion layer."""
    from fusion.visualize import visualize_clip

    for path in visualize_clip(checkpoint, cache, out, clip, data_root):
        click.echo(str(path))


@click.command("loader")
@click.option("--cache", type=click.Path(path_type=Path), required=True, help="Training cache.")
@click.option("--model", default="gasm_cast", help="Model whose training step the loader must keep up with.")
@click.option("--batch-size", type=int, default=64, help="Clips per step.")
@click.option("--steps", type=int, default=10, help="Batches to time.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@user_errors
def bench_loader(cache: Path, model: str, batch_size: int, steps: int, device: str) -> None:
    """Loader clips/s beside the clips/s a training step consumes: the loader must not be the bottleneck."""
    from fusion.bench_loader import bench_loader as run

    run(cache, model, batch_size, steps, device)
