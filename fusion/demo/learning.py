"""`cli demo`: a first run that shows learning in minutes on a CPU. Clips that differ only in the direction a
square moves are extracted twice through the `patch_pixels` backbone (each patch's colour: where the object is
stays in the tokens) beside random-init `i3d_tiny` motion tokens: once keeping every frame's map (`frames`) and
once their average (`mean`). GASM-CAST and three baselines train on each in one sweep (lockstep, the epoch
chosen on a holdout of the training clips), are evaluated on the validation clips, and the demo ends with one
table, one picture and DIR/results.json. Each stage is recorded when it finishes, so a re-run goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fusion.demo.config import CACHES, MODELS, DemoConfig
from fusion.demo.figure import draw_comparison
from fusion.demo.stages import Stages
from fusion.evaluation.evaluate import evaluate_checkpoint
from fusion.evaluation.visualize import visualize_clip
from fusion.experiments.runner import SweepRun, run_sweep
from pipeline.cache.inspect import verify_cache
from pipeline.core import atomic, strict_json
from pipeline.core.config_loading import apply_overrides
from pipeline.core.errors import UserError
from pipeline.core.progress import Reporter
from pipeline.datasets import DataSource
from pipeline.extract_config import ExtractConfig

SPLITS = ("train", "validation")
CHANCE = 0.25  # four directions, balanced splits
SHOWN = {"frames": 0.9, "mean": 0.6}  # gasm_cast at least this on per-frame tokens, at most this on their mean
NEXT_STEPS = (
    ("extract your videos with real weights (docs/extraction.md)",
     "cli extract --dataset ssv2 --data-root /data/ssv2 --split train --cache cache/train "
     "--semantic-weights DINOV3_DIR --motion-weights I3D_FILE"),
    ("train GASM-CAST on the cache (docs/training.md)",
     "cli fuse-train --cache cache/train --val-cache cache/validation --model gasm_cast --out runs/gasm"),
    ("compare it with a baseline trained the same way (docs/experiments.md)",
     "cli compare runs/gasm runs/late-fusion --out runs/report"),
)  # fmt: skip


def extraction_config(cfg: DemoConfig, reduce: str) -> ExtractConfig:
    return apply_overrides(ExtractConfig(), {
        "backbones": {"semantic": "patch_pixels", "motion": "i3d_tiny", "random_init": True, "seed": cfg.seed},
        "sampling": {"semantic_reduce": reduce, "semantic_frames": cfg.frames, "semantic_pool": cfg.pool},
        "run": {"shard_size": 64, "device": "cpu"},
    }, where="the demo's extraction")  # fmt: skip


def sweep_spec(cfg: DemoConfig) -> dict[str, Any]:
    """The spec `cli sweep --spec` would read (written to DIR/sweep.yaml for the user to reuse)."""
    overrides = {"optim": {"lr": cfg.lr}, "data": {"batch_size": cfg.batch_size}, "device": "cpu"}
    return {"base": {"overrides": overrides}, "axes": {"model": list(MODELS)}, "seeds": [cfg.seed]}


def run_demo(out: Path, cfg: DemoConfig, live: bool | None = None) -> dict[str, Any]:
    """Run (or finish) the demo in `out`; returns what DIR/results.json holds."""
    from pipeline.extract import run_extraction
    from pipeline.synth.ssv2 import DIRECTION_ONLY, make_ssv2

    console = Console(stderr=True)
    stages = Stages(out, cfg.record(), console)
    data = out / "data"
    with stages.stage("synth", f"1/5 synth: {cfg.train} + {cfg.validation} clips of a square moving left, right, "
                               f"up or down -> {data}") as todo:  # fmt: skip
        if todo:
            with Reporter("synth", "clips", live=live) as reporter:
                make_ssv2(data, cfg.train, cfg.validation, 0, cfg.seed, shapes=DIRECTION_ONLY, on_clip=reporter.update)
    caches = {(reduce, split): out / "cache" / reduce / split for reduce in CACHES for split in SPLITS}
    with stages.stage("extract", f"2/5 extract: patch_pixels ({cfg.frames} frames, each map pooled {cfg.pool}x"
                                 f"{cfg.pool}) + i3d_tiny, as per-frame tokens and as their frame mean -> "
                                 f"{out / 'cache'}") as todo:  # fmt: skip
        if todo:
            for (reduce, split), cache in caches.items():
                with Reporter(f"extract {reduce}/{split}", "clips", live=live) as reporter:
                    run_extraction(DataSource("ssv2", data, split), cache, extraction_config(cfg, reduce), (0, 1),
                                   reporter.update)  # fmt: skip
                problems = verify_cache(cache)
                if problems:
                    raise UserError(f"demo cache {cache} has {len(problems)} problem clip(s): {problems[:3]}")
                console.print(f"{cache}: {reduce} tokens of {cfg.train if split == 'train' else cfg.validation} clips")
    spec_file = out / "sweep.yaml"
    atomic.write_text(spec_file, strict_json.dumps(sweep_spec(cfg), indent=1))  # JSON is YAML
    for reduce in CACHES:
        folder = out / f"sweep-{reduce}"
        with stages.stage(f"sweep-{reduce}", f"3/5 sweep on the {reduce} cache: {', '.join(MODELS)}, {cfg.epochs} "
                                             f"epochs in lockstep -> {folder}") as todo:  # fmt: skip
            if todo:
                run = SweepRun(caches[(reduce, "train")], caches[(reduce, "validation")], folder, cfg.epochs)
                run_sweep(None, spec_file, None, run, "inline", live, "holdout")
    results = _evaluate(out, cfg, caches, stages)
    with stages.stage("draw", f"5/5 draw: the comparison and gasm_cast's attention across frames -> {out}") as todo:
        if todo:
            draw_comparison(results["top1"], CHANCE, out / "frames_vs_mean.png", results["clips"]["validation"])
            visualize_clip(_member(out, "frames", cfg) / "best.pt", caches[("frames", "validation")], out / "attention")
    results["stage_seconds"] = stages.seconds
    results["wall_seconds"] = round(sum(stages.seconds.values()), 1)
    atomic.write_text(out / "results.json", strict_json.dumps(results, indent=1))
    _report(results, out)
    return results


def _member(out: Path, reduce: str, cfg: DemoConfig, model: str = "gasm_cast") -> Path:
    return out / f"sweep-{reduce}" / "runs" / f"{model}-seed{cfg.seed}"


def _evaluate(out: Path, cfg: DemoConfig, caches: dict[tuple[str, str], Path], stages: Stages) -> dict[str, Any]:
    """Every model's validation top-1 on each cache, at the epoch its holdout chose (what fuse-eval reports)."""
    path = out / "evaluation.json"
    with stages.stage("evaluate", "4/5 evaluate every model's chosen checkpoint on the validation clips") as todo:
        if todo:
            top1: dict[str, dict[str, float]] = {model: {} for model in MODELS}
            evaluated = set()
            for reduce in CACHES:
                for model in MODELS:
                    result = evaluate_checkpoint(_member(out, reduce, cfg, model) / "best.pt",
                                                 caches[(reduce, "validation")], device="cpu")  # fmt: skip
                    top1[model][reduce] = round(result["metrics"]["top1"], 4)
                    evaluated.add(result["clips"])
            if evaluated != {cfg.validation}:  # a number on fewer clips than asked is not the demo's number
                raise UserError(f"the demo evaluated {sorted(evaluated)} validation clips, not {cfg.validation}")
            held = strict_json.read(_member(out, "frames", cfg) / "metrics.json", "run summary")["data"]["train"]
            atomic.write_text(path, strict_json.dumps({
                "top1": top1,
                "chance": CHANCE,
                "seeds": {"data": cfg.seed, "models": [cfg.seed]},
                "clips": {"train": cfg.train - held["held_out"], "holdout": held["held_out"],
                          "validation": cfg.validation},
                "settings": cfg.record(),
            }, indent=1))  # fmt: skip
    return strict_json.read(path, "demo evaluation")


def _report(results: dict[str, Any], out: Path) -> None:
    """The table on stdout; what it means, where the files are and what to run next on stderr."""
    clips = results["clips"]
    table = Table(title=f"validation top-1, {clips['validation']} clips of 4 directions (chance {CHANCE:.2f}); "
                        f"epoch chosen on {clips['holdout']} held-out training clips")  # fmt: skip
    for column in ("model", "per-frame tokens", "frame mean", "difference"):
        table.add_column(column, justify="right" if column != "model" else "left")
    for model, scores in results["top1"].items():
        table.add_row(model, f"{scores['frames']:.3f}", f"{scores['mean']:.3f}",
                      f"{scores['frames'] - scores['mean']:+.3f}")  # fmt: skip
    Console().print(table)
    console = Console(stderr=True)
    gasm = results["top1"]["gasm_cast"]
    if gasm["frames"] >= SHOWN["frames"] and gasm["mean"] <= SHOWN["mean"]:
        console.print(
            f"gasm_cast tells the direction from per-frame tokens ({gasm['frames']:.2f}) and not from their mean "
            f"({gasm['mean']:.2f}): the frame mean keeps where the square was but discards when, and the baselines, "
            "which pool the tokens before comparing frames, stay near chance on both. Time kept is what fusion "
            "over patches and segments can use."
        )
    else:
        console.print(
            f"warning: this run did not show the effect the demo is for (gasm_cast {gasm['frames']:.2f} per-frame, "
            f"{gasm['mean']:.2f} on the mean; expected >= {SHOWN['frames']} and <= {SHOWN['mean']}): more "
            "--train clips or --epochs make it reliable"
        )
    console.print(f"files: {out / 'results.json'}, {out / 'frames_vs_mean.png'}, {out / 'attention'} (gasm_cast's "
                  f"attention across frames), runs in {out / 'sweep-frames'} and {out / 'sweep-mean'}")  # fmt: skip
    console.print("next, on your own videos:")
    for what, command in NEXT_STEPS:
        console.print(f"  # {what}\n  {command}", soft_wrap=True)


__all__ = ["run_demo"]
