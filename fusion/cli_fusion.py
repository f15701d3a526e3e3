"""Commands that train on caches: models, fuse-train, fuse-eval, visualize, bench fusion / loader."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from fusion.data.config import DATA_MODES, DataConfig
from fusion.evaluation.submission import SLS_RANGE, SUPERVISION_LEVELS
from fusion.models.config import DEFAULT_MODEL
from fusion.training.config import TRAIN_PRESETS, TrainConfig, training_config
from pipeline.core import strict_json
from pipeline.core.cli_base import EPILOG, device_option, parse_shape, precision_option, shape_options, user_errors
from pipeline.core.config_options import ConfigOptions, LazyChoice
from pipeline.core.defaults import EPIC_NOUNS, EPIC_VERBS, PRECISION_HELP, SSV2_CLASSES


@click.command("fusion")
@shape_options(after=" (per-frame tokens: FRAMESxTOKENSxWIDTH, e.g. 8x49x768)")
@click.option("--batch-sizes", default="1,8,64,256", help="Comma-separated batch sizes.")
@device_option
@click.option("--repeats", type=click.IntRange(min=1), default=3, help="Timed steps per measurement (median).")
@precision_option(f"{PRECISION_HELP} As training resolves it.")
@click.option(
    "--compile",
    "compile_models",
    is_flag=True,
    help="Also time the two models compiled with torch.compile (compiling takes minutes; not timed).",
)
@user_errors
def bench_fusion(
    semantic_shape: str,
    motion_shape: str,
    batch_sizes: str,
    device: str,
    repeats: int,
    precision: str,
    compile_models: bool,
) -> None:
    """FLOPs, training-step memory and time: B-CAST vs full-width cross-attention, GASM-CAST vs vanilla."""
    from fusion.benches.fusion_models import bench_fusion as run

    run(
        parse_shape(semantic_shape, frames=True),
        parse_shape(motion_shape),
        [int(b) for b in batch_sizes.split(",")],
        device,
        repeats,
        precision,
        compile_models,
    )


def _model_names() -> list[str]:
    from fusion.models.registry import MODELS

    return list(MODELS)


MODEL_CHOICE = LazyChoice(_model_names)
# The one mapping of fuse-train options to training config fields; help, choices and defaults come from the fields.
TRAIN_OPTIONS = ConfigOptions(
    TrainConfig,
    {
        "--epochs": "epochs",
        "--lr": "optim.lr",
        "--batch-size": "data.batch_size",
        "--seed": "seed",
        "--device": "device",
        "--precision": "precision",
        "--data-mode": "data.mode",
        "--select-on": "data.select_on",
        "--views": "data.views",
        "--log-every": "log_every",
    },
)
ALLOW_PARTIAL = click.option(
    "--allow-partial",
    is_flag=True,
    help="Use a cache with clips not extracted yet; the metrics then say how many were missing.",
)
ALLOW_OTHER_FEATURES = click.option(
    "--allow-other-features",
    is_flag=True,
    help="Use caches extracted with other backbones, weights or sampling than the training cache's (refused "
    "otherwise: their numbers are not comparable); the outputs record the differences.",
)


def _class_counts(command: Callable) -> Callable:
    """--classes, --verbs, --nouns: the class counts the models are sized for, the benchmarks' by default."""
    counts = {
        "--classes": (SSV2_CLASSES, "Classes of the single-label task (SSv2)."),
        "--verbs": (EPIC_VERBS, "Verb classes (EPIC-KITCHENS-100)."),
        "--nouns": (EPIC_NOUNS, "Noun classes (EPIC-KITCHENS-100)."),
    }
    for flag, (default, help_text) in reversed(counts.items()):
        count = click.IntRange(min=1)
        command = click.option(flag, type=count, default=default, show_default=True, help=help_text)(command)
    return command


@click.command()
@shape_options(after=" (as in a cache)")
@_class_counts
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def models(semantic_shape: str, motion_shape: str, classes: int, verbs: int, nouns: int, as_json: bool) -> None:
    """Every registered fusion model with its trainable parameters, checked against the 20M budget."""
    from rich.console import Console
    from rich.table import Table

    from fusion.models.registry import MODELS, PARAMETER_BUDGET, build_model, count_trainable

    (_, ds), (_, dm) = parse_shape(semantic_shape), parse_shape(motion_shape)
    rows = []
    for name, entry in MODELS.items():
        label, verb_noun = (
            count_trainable(build_model(name, ds, dm, labels))
            for labels in ({"label": classes}, {"verb": verbs, "noun": nouns})
        )
        rows.append(
            {
                "model": name,
                "label": label,
                "verb_noun": verb_noun,
                "what": entry.description,
                "under_budget": max(label, verb_noun) < PARAMETER_BUDGET,
            }
        )
    if as_json:
        click.echo(strict_json.dumps({"budget": PARAMETER_BUDGET, "models": rows}, indent=2))
    else:
        table = Table(title=f"fusion models for semantic {semantic_shape}, motion {motion_shape}")
        # Names never wrap or shrink, whatever the terminal (or pipe) width: scripts and people copy them.
        table.add_column("model", no_wrap=True, min_width=max(len(name) for name in MODELS))
        for column in (f"label ({classes})", f"verb/noun ({verbs}/{nouns})", f"< {PARAMETER_BUDGET / 1e6:.0f}M"):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("what")
        for row in rows:
            table.add_row(
                row["model"],
                f"{row['label']:,}",
                f"{row['verb_noun']:,}",
                "yes" if row["under_budget"] else "NO",
                row["what"],
            )
        Console().print(table)
    over = [row["model"] for row in rows if not row["under_budget"]]
    if over:
        click.echo(f"over the parameter budget: {', '.join(over)}", err=True)
        sys.exit(1)


@click.command("fuse-train", epilog=EPILOG)
@click.option("--cache", type=click.Path(path_type=Path), required=True, envvar="GASM_CACHE", help="Training cache.")
@click.option(
    "--val-cache", type=click.Path(path_type=Path), required=True, envvar="GASM_VAL_CACHE", help="Validation cache."
)
@click.option(
    "--model", type=MODEL_CHOICE, default=DEFAULT_MODEL, show_default=True, help="Registered model (see `cli models`)."
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder: checkpoints, metrics, curves.")
@click.option(
    "--preset",
    type=click.Choice(list(TRAIN_PRESETS)),
    default="default",
    help="default (heads on cached features) or seed_recipe (the design notes').",
)
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="YAML overrides of the training config.")
@TRAIN_OPTIONS
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out exactly where its last checkpoint left it (a larger --epochs extends it).",
)
@ALLOW_PARTIAL
@ALLOW_OTHER_FEATURES
@click.option("--progress/--no-progress", default=None, help="Progress bar.  [default: on a terminal; else log lines]")
@user_errors
def fuse_train(
    cache: Path,
    val_cache: Path,
    model: str,
    out: Path,
    preset: str,
    config_file: Path | None,
    resume: bool,
    allow_partial: bool,
    allow_other_features: bool,
    progress: bool | None,
    **options: Any,
) -> None:
    """Train a fusion model on cached features; prints the best epoch's metrics as JSON.

    SIGTERM (pre-emption) or Ctrl-C writes a checkpoint at the next step and exits 143 or 130: continue with the
    same command and --resume. A NaN/Inf loss stops the run at once (exit 1), keeping the last good checkpoints.
    """
    from fusion.training.command import run_training
    from fusion.training.request import TrainingRequest

    cfg = training_config(preset, config_file, {}, lambda cfg: TRAIN_OPTIONS.apply(cfg, options))
    request = TrainingRequest(
        cache, val_cache, model, out, cfg, resume, allow_partial, allow_other_features=allow_other_features
    )
    with training_exits("checkpoint written to {}; continue with the same command and --resume"):
        summary = run_training(request, live=progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, process 0 reports
        click.echo(strict_json.dumps(summary["best"], indent=2))


@contextlib.contextmanager
def training_exits(stopped: str) -> Iterator[None]:
    """A run stopped by a signal says where it stands (`stopped`, formatted with the checkpoint) and exits 130 or
    143; a NaN/Inf loss is one line and exit 1. fuse-train and sweep say it the same way."""
    from fusion.training.trainer import NonFiniteLoss, Preempted

    try:
        yield
    except Preempted as exc:
        click.echo(f"stopped: {stopped.format(exc)}", err=True)
        sys.exit(exc.exit_code)
    except NonFiniteLoss as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _supervision_levels(command: Callable) -> Callable:
    """--sls-pt, --sls-tl, --sls-td: the submission's supervision levels, as the challenge defines them."""
    for key, (what, default) in reversed(SUPERVISION_LEVELS.items()):
        level = click.IntRange(*SLS_RANGE)
        help_text = f"Submission supervision level: {what}."
        command = click.option(f"--sls-{key}", type=level, default=default, show_default=True, help=help_text)(command)
    return command


@click.command("fuse-eval", epilog=EPILOG)
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="A run's best.pt or last.pt.")
@click.option("--cache", type=click.Path(path_type=Path), required=True, help="Cache to evaluate on.")
@click.option(
    "--predictions",
    type=click.Path(path_type=Path),
    help="Write each clip's top-5 predictions and labels (JSON lines), unlabelled clips included.",
)
@click.option(
    "--submission",
    type=click.Path(path_type=Path),
    help="EPIC-KITCHENS-100: write the action-recognition challenge file (zipped as test.json if it ends in .zip).",
)
@_supervision_levels
@click.option(
    "--answers",
    type=click.Path(path_type=Path),
    help="SSv2 test split: score against the public test-answers.csv (id;template per line).",
)
@click.option(
    "--answers-out",
    type=click.Path(path_type=Path),
    help="SSv2: write every clip's predicted class as `id;label name` lines (the test split's answers file).",
)
@click.option(
    "--analysis",
    type=click.Path(path_type=Path),
    help="Folder for per-class accuracy CSVs (and, single-label, a plot of the most confused class pairs).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, help="Clips per forward pass.")
@device_option
@ALLOW_PARTIAL
@ALLOW_OTHER_FEATURES
@click.option(
    "--allow-training-clips",
    is_flag=True,
    help="Score the model on the cache it was trained on (refused otherwise); the result says so.",
)
@user_errors
def fuse_eval(
    checkpoint: Path,
    cache: Path,
    batch_size: int,
    device: str,
    allow_partial: bool,
    allow_other_features: bool,
    allow_training_clips: bool,
    **given: Any,
) -> None:
    """Metrics of a trained model on a cache, as JSON on stdout (logs go to stderr).

    EPIC-KITCHENS-100 caches: verb, noun and action top-1/top-5 as the official scorer computes them, with
    unseen-participant and tail-class top-1 when the cache holds participants and the official lists.
    """
    from fusion.evaluation.evaluate import EvalOptions, evaluate_checkpoint

    sls = {key: given.pop(f"sls_{key}") for key in SUPERVISION_LEVELS}
    options = EvalOptions(**given, sls=sls, allow_other_features=allow_other_features,
                          allow_training_clips=allow_training_clips)  # fmt: skip
    result = evaluate_checkpoint(checkpoint, cache, batch_size, device, options, allow_partial)
    click.echo(strict_json.dumps(result, indent=2))


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
    from fusion.evaluation.visualize import visualize_clip

    for path in visualize_clip(checkpoint, cache, out, clip, data_root):
        click.echo(str(path))


@click.command("loader")
@click.option("--cache", type=click.Path(path_type=Path), required=True, help="Training cache.")
@click.option(
    "--model", default=DEFAULT_MODEL, show_default=True, help="Model whose training step the loader must keep up with."
)
@click.option("--batch-size", type=int, default=DataConfig().batch_size, show_default=True, help="Clips per step.")
@click.option("--steps", type=int, default=10, help="Batches to time.")
@device_option
@click.option(
    "--data-mode",
    "--mode",
    "mode",
    type=click.Choice(DATA_MODES),
    default=DataConfig().mode,
    show_default=True,
    help="data.mode to measure (as fuse-train --data-mode).",
)
@user_errors
def bench_loader(cache: Path, model: str, batch_size: int, steps: int, device: str, mode: str) -> None:
    """Loader clips/s beside the clips/s a training step consumes: the loader must not be the bottleneck."""
    from fusion.benches.loader import bench_loader as run

    run(cache, model, batch_size, steps, device, mode)
