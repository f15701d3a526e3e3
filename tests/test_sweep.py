"""`cli sweep` and `cli compare`: members (stepped together on each batch) equal standalone runs, interrupted
sweeps resume to the same results without touching finished members, a diverging member stops alone, the
phase2-phase3 plan runs end to end, reports compare hand-made runs too."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, small_caches

from cli import main
from fusion.experiments.spec import parse_spec
from pipeline.core.errors import UserError


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return small_caches(tmp_path_factory.mktemp("sweep-caches"), 64, 32, shard_size=32)


@pytest.fixture(scope="module")
def epic_caches(tmp_path_factory):
    return small_caches(tmp_path_factory.mktemp("sweep-epic"), 48, 24, "epic100", shard_size=32)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def sweep_args(caches, spec: Path, out: Path, *extra) -> list:
    return [
        "sweep",
        "--spec",
        spec,
        "--cache",
        caches[0],
        "--val-cache",
        caches[1],
        "--out",
        out,
        "--epochs",
        2,
        "--no-progress",
        *extra,
    ]


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BASE = "base:\n  overrides:\n    data: {batch_size: 16}\n    device: cpu\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("axes: {optim.lr: [0.1]}\nmembers: [{model: late_fusion}]\n", "not both"),
        ("axes: {optim.lrate: [0.1]}\n", "'optim.lrate' is not a training config key"),
        ("axes: {optim.lr: [-1.0]}\n", "optim.lr: expected > 0, got -1.0"),
        ("members: [{model: gasm}]\n", "unknown model 'gasm'"),
        ("members: [{model: late_fusion, changes: {seed: 3}}]\n", "'seed' is set by the sweep"),
        ("members: [{model: late_fusion}, {model: late_fusion}]\n", "listed twice: late_fusion"),
        ("members: [{model: late_fusion}]\nseeds: []\n", "seeds: expected a non-empty list"),
        ("member: [{model: late_fusion}]\n", "unknown key(s) member"),
        ("axes: {data.mode: [ram, streamed]}\n", "must share device, data.mode and data.ram_limit_gb"),
    ],
)
def test_bad_specs_are_one_line_errors(tmp_path, caches, text, words):
    result = run(*sweep_args(caches, write_spec(tmp_path / "s.yaml", text), tmp_path / "S"))
    assert result.exit_code == 2 and result.output.startswith("error: ") and words in result.output, result.output


@pytest.mark.parametrize("mode", ["device", "streamed"])
def test_inline_sweeps_keep_their_caches_where_data_mode_puts_them(caches, mode):
    from fusion.experiments.runner import SweepRun, _load, shared_placement

    overrides = {"data": {"mode": mode}, "device": "cpu"}
    spec = parse_spec({"base": {"overrides": overrides}, "axes": {"optim.lr": [0.1, 0.01]}}, "test")
    train, val, _ = _load(SweepRun(caches[0], caches[1], Path("unused")), shared_placement(spec))
    assert train.mode == val.mode == mode
    assert train.normalisation() == val.normalisation()  # validation standardised as the training cache


def test_grids_are_products_named_by_what_they_change():
    spec = parse_spec(
        {"axes": {"model": ["late_fusion", "gasm_cast"], "optim.lr": [1e-3, 3e-4]}, "seeds": [0, 1]}, "test"
    )
    names = [m.name for m in spec.members()]
    assert len(names) == 8 and names[0] == "late_fusion-lr0.001-seed0" and names[-1] == "gasm_cast-lr0.0003-seed1"
    with pytest.raises(UserError, match="give either axes"):
        parse_spec({"seeds": [0]}, "test")


def test_a_member_equals_the_standalone_run_of_its_config_and_seed(caches, tmp_path):
    # token dropout and dropout draw random numbers while the two members step in turn on each batch
    spec = write_spec(
        tmp_path / "s.yaml",
        "base:\n  overrides:\n    data: {batch_size: 16, token_dropout: 0.2}\n    device: cpu\n"
        "members:\n  - {model: late_fusion}\n"
        "  - {model: gasm_cast, changes: {model.fusion_layers: 1, optim.lr: 0.001}}\nseeds: [3]\n",
    )
    result = run(*sweep_args(caches, spec, tmp_path / "S"))
    assert result.exit_code == 0, result.output
    assert "late_fusion-seed3 epoch 2/2" in result.output  # each member's epochs are its own lines
    member = json.loads(
        (tmp_path / "S" / "runs" / "gasm_cast-fusion_layers1-lr0.001-seed3" / "metrics.json").read_text()
    )
    assert (
        member["member"]["changes"] == {"model.fusion_layers": 1, "optim.lr": 0.001} and member["member"]["seed"] == 3
    )
    # a sweep's members read batches in one order, data.order_seed 0 (recorded in their config)
    config = write_spec(tmp_path / "c.yaml", "model: {fusion_layers: 1}\ndata: {order_seed: 0, token_dropout: 0.2}\n")
    alone = run(
        "fuse-train",
        "--cache",
        caches[0],
        "--val-cache",
        caches[1],
        "--out",
        tmp_path / "alone",
        "--model",
        "gasm_cast",
        "--config",
        config,
        "--lr",
        0.001,
        "--seed",
        3,
        "--epochs",
        2,
        "--batch-size",
        16,
        "--device",
        "cpu",
        "--select-on",
        "holdout",  # as the sweep's members select by default
        "--no-progress",
    )
    assert alone.exit_code == 0, alone.output
    standalone = json.loads((tmp_path / "alone" / "metrics.json").read_text())
    assert member["last"] == standalone["last"]  # the same steps on the same batches with the same draws
    for name in (
        "results.csv",
        "report.md",
        "accuracy_vs_parameters.png",
        "accuracy_vs_flops.png",
        "validation_curves.png",
    ):
        assert (tmp_path / "S" / name).is_file(), name
    assert len((tmp_path / "S" / "results.csv").read_text().splitlines()) == 3


def _last(out: Path, member: str) -> dict:
    return json.loads((out / "runs" / member / "metrics.json").read_text())["last"]


def test_killed_sweep_resumes_to_the_same_results_and_leaves_finished_members_untouched(caches, tmp_path):
    # Two lockstep groups: late_fusion reads batches of 8 alone, then semantic_only and motion_only together.
    text = BASE + ("members:\n  - {model: late_fusion, changes: {data.batch_size: 8}}\n  - {model: semantic_only}\n"
                   "  - {model: motion_only}\n")  # fmt: skip
    spec = write_spec(tmp_path / "s.yaml", text)
    command = [sys.executable, str(ROOT / "cli.py"), *map(str, sweep_args(caches, spec, tmp_path / "S"))]
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first, second = (tmp_path / "S" / "runs" / name for name in ("late_fusion-batch_size8-seed0", "motion_only-seed0"))
    deadline = time.time() + 300
    while time.time() < deadline and not ((first / "metrics.json").exists() and (second / "last.pt").exists()):
        time.sleep(0.02)
    os.kill(job.pid, signal.SIGKILL)  # the second group in flight: past its first epoch, before its last
    job.wait()
    assert not (second / "metrics.json").exists()
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.rglob("*") if p.is_file()}
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.rglob("*") if p.is_file()} == stamps
    whole = write_spec(tmp_path / "w.yaml", BASE + "members: [{model: semantic_only}, {model: motion_only}]\n")
    assert run(*sweep_args(caches, whole, tmp_path / "W")).exit_code == 0
    for member in ("semantic_only-seed0", "motion_only-seed0"):
        assert _last(tmp_path / "S", member) == _last(tmp_path / "W", member), member


def test_a_diverging_member_stops_alone_and_the_sweep_names_it(caches, tmp_path):
    spec = write_spec(
        tmp_path / "s.yaml",
        BASE + "members: [{model: late_fusion}, {model: semantic_only, changes: {optim.lr: 1.0e+30}}]\n",
    )
    result = run(*sweep_args(caches, spec, tmp_path / "S", "--one-at-a-time"))
    together = run(*sweep_args(caches, spec, tmp_path / "T"))
    for out, outcome in ((tmp_path / "S", result), (tmp_path / "T", together)):
        assert outcome.exit_code == 1 and "1 member(s) stopped, the others finished" in outcome.output
        assert "semantic_only-lr1e_30-seed0" in outcome.output.splitlines()[-1], outcome.output
        assert (out / "runs" / "late_fusion-seed0" / "metrics.json").is_file()
        assert not (out / "runs" / "semantic_only-lr1e_30-seed0" / "metrics.json").exists()
    # lockstep or one at a time, the finished member is the same run
    assert _last(tmp_path / "S", "late_fusion-seed0") == _last(tmp_path / "T", "late_fusion-seed0")


def test_phase2_phase3_runs_end_to_end_and_names_the_winner(epic_caches, tmp_path):
    result = run(
        "sweep",
        "--preset",
        "phase2-phase3",
        "--cache",
        epic_caches[0],
        "--val-cache",
        epic_caches[1],
        "--out",
        tmp_path / "P",
        "--epochs",
        1,
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    stage1 = json.loads((tmp_path / "P" / "stage1.json").read_text())
    assert stage1["selected_on"] == "holdout" and stage1["best"] == stage1["tied"][0]
    assert max(stage1["scores"].values()) == stage1["scores"][stage1["best"]]
    assert f"stage 1 winner: {stage1['best']} (the highest mean holdout action_top1 of its runs, " \
           f"{stage1['scores'][stage1['best']]:.4f})" in result.output  # fmt: skip
    if len(stage1["tied"]) > 1:  # 48 clips hold out a handful: configurations may well tie, and it is said
        assert f"warning: {len(stage1['tied'])} stage-1 configurations tied" in result.output
    held = json.loads(next((tmp_path / "P" / "runs").glob("*/metrics.json")).read_text())["data"]["train"]["held_out"]
    assert f"warning: the holdout has {held} clips for 3 classes" in result.output or held >= 3
    report = (tmp_path / "P" / "report.md").read_text()
    assert "stage 1 winner" in report and report.count("\n| temporal_transformer") >= 9
    # Each headline is computed from exactly the results.csv rows of its configuration: every run once.
    changes = "; ".join(f"{k}={v}" for k, v in stage1["changes"].items())  # as results.csv writes them
    rows = list(csv.DictReader((tmp_path / "P" / "results.csv").open()))
    for phase, model in (("phase2", "temporal_transformer"), ("phase3", "temporal_transformer_cross_task")):
        values = [float(r["val_action_top1"]) for r in rows if r["model"] == model and r["changes"] == changes]
        assert len(values) == 3
        headline = f"{phase} ({model}): action_top1 {np.mean(values):.4f} ± {np.std(values, ddof=1):.4f} over 3 seeds"
        assert headline in result.output, (headline, result.output)


def test_phase2_phase3_needs_a_verb_noun_cache_before_anything_trains(caches, tmp_path):
    result = run("sweep", "--preset", "phase2-phase3", "--cache", caches[0], "--val-cache", caches[1], "--out",
                 tmp_path / "P", "--epochs", 1, "--no-progress")  # fmt: skip
    assert result.exit_code == 2 and "it needs a verb/noun cache" in result.output
    assert not (tmp_path / "P").exists()


def test_compare_two_hand_made_runs_and_a_local_executor_sweep(caches, tmp_path):
    for name, model in (("a", "late_fusion"), ("b", "semantic_only")):
        assert (
            run(
                "fuse-train",
                "--cache",
                caches[0],
                "--val-cache",
                caches[1],
                "--out",
                tmp_path / name,
                "--model",
                model,
                "--epochs",
                1,
                "--batch-size",
                16,
                "--device",
                "cpu",
                "--no-progress",
            ).exit_code
            == 0
        )
    result = run("compare", tmp_path / "a", tmp_path / "b", "--baseline", "late_fusion", "--out", tmp_path / "C")
    assert result.exit_code == 0, result.output
    assert "late_fusion" in result.output and "semantic_only" in result.output and "+0.0000" in result.output
    assert len((tmp_path / "C" / "results.csv").read_text().splitlines()) == 3
    spec = write_spec(tmp_path / "s.yaml", BASE + "members: [{model: motion_only}]\n")
    local = run(*sweep_args(caches, spec, tmp_path / "L", "--executor", "local"))
    assert local.exit_code == 0, local.output
    assert (tmp_path / "L" / "runs" / "motion_only-seed0" / "best.pt").is_file()


def test_a_sweep_of_graph_models_on_a_per_frame_cache_reports_their_costs_at_those_shapes(tmp_path):
    """Costs are measured on [8 clips, frames, patches, width] as the model trained (a flat grid of frames x
    patches is another model, or no square grid at all)."""
    import torch

    from fusion.models.checkpoint import load_checkpoint
    from fusion.models.costs import ModelAsLayer, measure
    from fusion.models.rebuild import rebuild_model

    dims = {"semantic": (2 * 9, 32), "motion": (4, 16)}  # 2 frames of a 3 x 3 grid
    caches = small_caches(tmp_path / "c", 24, 8, dims=dims, frames=2)
    spec = write_spec(tmp_path / "s.yaml", BASE + "members: [{model: gasm_cast}, {model: late_fusion}]\n")
    result = run(*sweep_args(caches, spec, tmp_path / "S", "--select-on", "validation"))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "S" / "results.csv").open()))
    assert {row["model"] for row in rows} == {"gasm_cast", "late_fusion"} and (tmp_path / "S" / "report.md").is_file()
    state = load_checkpoint(tmp_path / "S" / "runs" / "gasm_cast-seed0" / "best.pt")
    torch.manual_seed(0)
    model = rebuild_model("gasm_cast", state["config"]["model"], state["spec"]["shapes"], state["spec"]["label_sizes"])
    costs = measure(ModelAsLayer(model), (torch.randn(8, 2, 9, 32), torch.randn(8, 4, 16)), torch.device("cpu"), 1)
    gasm = next(row for row in rows if row["model"] == "gasm_cast")
    assert float(gasm["gflops_per_clip"]) == pytest.approx(costs["gflops"] / 8, rel=1e-3)
