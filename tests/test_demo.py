"""`cli demo`: the learning demo end to end at a small size (its numbers at full size are a measured figure in
the README, not a test), its results.json, an interruption that keeps finished stages, and its refusals."""

import json

import zarr
from click.testing import CliRunner

from cli import main
from fusion.demo.config import MODELS

SMALL = ["--train", "16", "--validation", "8", "--epochs", "1", "--no-progress"]


def test_demo_interrupted_then_continued_ends_with_its_table_picture_and_results(tmp_path, monkeypatch):
    from fusion.demo import learning

    out = tmp_path / "d"
    real_sweep = learning.run_sweep

    def ctrl_c_on_the_mean_cache(preset, spec, model, run, *args):
        if run.out.name == "sweep-mean":
            raise KeyboardInterrupt
        return real_sweep(preset, spec, model, run, *args)

    monkeypatch.setattr(learning, "run_sweep", ctrl_c_on_the_mean_cache)
    stopped = CliRunner().invoke(main, ["demo", "--out", str(out), *SMALL])
    assert stopped.exit_code == 130 and stopped.output.strip().splitlines()[-1] == "interrupted"
    finished = json.loads((out / "stages.json").read_text())["seconds"]
    assert list(finished) == ["synth", "extract", "sweep-frames"] and not (out / "results.json").exists()
    frames_run = out / "sweep-frames" / "runs" / "gasm_cast-seed0" / "best.pt"
    kept = frames_run.stat().st_mtime_ns

    monkeypatch.setattr(learning, "run_sweep", real_sweep)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["demo", "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    assert result.output.count("done before (") == 3  # synth, extract and the frames sweep were not run again
    assert frames_run.stat().st_mtime_ns == kept

    results = json.loads((out / "results.json").read_text())
    assert set(results["top1"]) == set(MODELS)
    assert all(set(scores) == {"frames", "mean"} for scores in results["top1"].values())
    assert all(0.0 <= value <= 1.0 for scores in results["top1"].values() for value in scores.values())
    assert results["clips"]["train"] + results["clips"]["holdout"] == 16 and results["clips"]["validation"] == 8
    assert results["seeds"] == {"data": 0, "models": [0]} and results["chance"] == 0.25
    assert set(results["stage_seconds"]) == {"synth", "extract", "sweep-frames", "sweep-mean", "evaluate", "draw"}
    for model in MODELS:  # the table shows what results.json holds
        scores = results["top1"][model]
        assert f"{model} " in result.output and f"{scores['frames']:.3f}" in result.output
    assert "next, on your own videos:" in result.output and "cli fuse-train --cache" in result.output

    # per-frame tokens keep each frame's pooled 2 x 2 grid; the mean cache their average
    for reduce, tokens in (("frames", 4 * 4), ("mean", 4)):
        group = zarr.open_group(str(out / "cache" / reduce / "validation"), mode="r")
        assert group["semantic"].shape == (8, tokens, 64) and group["done"][:].all()
    assert (out / "frames_vs_mean.png").stat().st_size > 0
    assert {p.name for p in (out / "attention").glob("*.png")} >= {"semantic_graph.png"}


def test_demo_refuses_bad_settings_and_a_folder_made_with_others(tmp_path):
    too_few = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "a"), "--train", "2"])
    assert too_few.exit_code == 2 and "--train" in too_few.output and not (tmp_path / "a").exists()
    out = tmp_path / "b"
    out.mkdir()
    (out / "stages.json").write_text(json.dumps({"settings": {"train": 5}, "seconds": {"synth": 1.0}}))
    other = CliRunner().invoke(main, ["demo", "--out", str(out), *SMALL])
    assert other.exit_code == 2 and "other settings" in other.output
    assert sorted(p.name for p in out.iterdir()) == ["stages.json"]
