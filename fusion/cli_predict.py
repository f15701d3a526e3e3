"""Commands that use a trained model outside its run: `cli predict` on videos, `cli export` to one file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pipeline.core.cli_base import EPILOG, user_errors
from pipeline.core.config_options import ConfigOptions
from pipeline.core.defaults import DATASETS
from pipeline.core.paths import safe_name
from pipeline.extract_config import RunConfig

# Prediction decodes and runs the backbones as extraction does: its options are those of extraction's run config.
RUN_OPTIONS = ConfigOptions(RunConfig, {"--batch-size": "batch_size", "--workers": "workers", "--device": "device"})


@click.command(epilog="Exit status: 0 every clip predicted, 1 some clips failed, 2 bad input.")
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--checkpoint", type=click.Path(path_type=Path), help="A run's best.pt or last.pt.")
@click.option("--model", "model_file", type=click.Path(path_type=Path), help="A model file from `cli export`.")
@click.option("--dataset", type=click.Choice(DATASETS), help="Predict a dataset split instead.")
@click.option("--data-root", type=click.Path(path_type=Path), help="--dataset: its root (or the manifest CSV).")
@click.option("--split", default="validation", help="--dataset: the split.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N clips.")
@click.option("--out", type=click.Path(path_type=Path), help="Write the records: .jsonl (JSON lines) or .csv.")
@click.option("--attention", type=click.Path(path_type=Path), help="Folder for each clip's attention maps (PNG).")
@click.option("--semantic-weights", help="DINOv3 weights the training cache was made with (checked by sha256).")
@click.option("--motion-weights", help="I3D weights the training cache was made with (checked by sha256).")
@click.option("--allow-other-weights", is_flag=True, help="Use weights whose sha256 differs from the recorded one.")
@RUN_OPTIONS
@click.option("--progress/--no-progress", default=None, help="Progress bar.  [default: on a terminal; else log lines]")
@user_errors
def predict(
    inputs: tuple[Path, ...],
    checkpoint: Path | None,
    model_file: Path | None,
    dataset: str | None,
    data_root: Path | None,
    split: str,
    limit: int | None,
    out: Path | None,
    attention: Path | None,
    semantic_weights: str | None,
    motion_weights: str | None,
    allow_other_weights: bool,
    progress: bool | None,
    **options: Any,
) -> None:
    """Class names and probabilities for raw videos: files, folders of videos, CSV manifests, or a dataset split
    (--dataset/--data-root/--split), through the frozen backbones the model's training cache was made with.

    Prints a table (top-5 with probabilities; the truth and a summary accuracy when the clips are labelled);
    --out writes one record per clip. A clip that cannot be decoded is reported on its own row.
    """
    from rich.console import Console

    from fusion.prediction.output import print_table, summary_line, write_records
    from fusion.prediction.predictor import Inputs, clip_list, load_complete_model, load_package, predict_clips
    from pipeline.core.config_loading import validate
    from pipeline.core.paths import output_file, output_folder
    from pipeline.core.progress import Reporter

    run = validate(RUN_OPTIONS.apply(RunConfig(), options))
    if out is not None:
        output_file(out, "--out")
        if out.suffix.lower() not in (".jsonl", ".json", ".csv"):
            raise click.BadParameter(f"expected a .jsonl or .csv file name, got {out.name}", param_hint="--out")
    if attention is not None:
        output_folder(attention, "--attention")
    package = load_package(checkpoint, model_file)
    clips = clip_list(Inputs(list(inputs), dataset, data_root, split, limit), package["spec"]["label_fields"])
    model = load_complete_model(
        package, run.device, {"semantic": semantic_weights, "motion": motion_weights}, allow_other_weights
    )
    with Reporter("predict", "clips", live=progress) as reporter:

        def on_batch(done: int, total: int, batch: dict[str, Any], outputs: dict[str, Any]) -> None:
            reporter.update(done, total)
            if attention is not None and batch["rows"]:
                _draw(attention, clips, batch, outputs, package)

        records = predict_clips(
            model, clips, run.batch_size, run.workers, on_batch, return_attention=attention is not None
        )
    print_table(records, Console())
    if out is not None:
        write_records(records, out)
    click.echo(summary_line(records) + (f"; records in {out}" if out else ""), err=True)
    if any(r["status"] != "ok" for r in records):
        sys.exit(1)


def _draw(folder: Path, clips: Any, batch: dict[str, Any], outputs: dict[str, Any], package: dict[str, Any]) -> None:
    from fusion.evaluation.attention_plots import draw_attention
    from fusion.prediction.predictor import clip_record

    names = package["spec"]["label_names"]
    middle = batch["semantic"].shape[2] // 2  # [B, V, F, S, S, 3]: the first view's middle frame
    for i, row in enumerate(batch["rows"]):
        clip = clips.clips[row]
        record = clip_record(clip, outputs, i, names)
        best = (record.get("top5") or record["action_top5"])[0]["name"]
        known = record.get("label_name") or record.get("action_name")
        title = f"{Path(clip.clip_id).name}: predicted {best}" + (f" (true: {known})" if known else "")
        single = {key: _slice(value, i) for key, value in outputs["attention"].items()}
        frames = package["spec"].get("semantic_frames", 1)
        draw_attention(single, batch["semantic"][i, 0, middle].numpy(), title, folder / safe_name(clip.clip_id), frames)


def _slice(value: Any, i: int) -> Any:
    if isinstance(value, dict):
        return {key: _slice(v, i) for key, v in value.items()}
    return value[i : i + 1]


@click.command(epilog=EPILOG)
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="A run's best.pt or last.pt.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The model file to write (e.g. model.pt).")
@user_errors
def export(checkpoint: Path, out: Path) -> None:
    """One self-contained model file for `cli predict --model`: fusion weights, backbone identities and sampling,
    class names, code version and training metrics (`torch.load(..., weights_only=True)` reads it)."""
    from fusion.prediction.predictor import export_model
    from pipeline.core.paths import output_file

    click.echo(f"wrote {export_model(checkpoint, output_file(out, '--out'))}")
