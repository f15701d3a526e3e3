"""`cli sweep --prune halving`: at each rung the configurations of each model are ranked by their seeds' mean
holdout headline and only the best go on; the stopped members keep their folders and say where they stopped; a
sweep killed between rungs ends as the uninterrupted one; the report lists pruned configurations apart."""

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import ROOT, small_caches

from cli import main
from fusion.experiments.pruning import kept
from fusion.experiments.spec import Configuration, PruneConfig, parse_spec
from pipeline.core.errors import UserError


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    # 160 training clips: a holdout of 16 that tells learning configurations from hopeless ones
    return small_caches(tmp_path_factory.mktemp("prune-caches"), 160, 32, shard_size=64)


BASE = "base:\n  model: late_fusion\n  overrides:\n    data: {batch_size: 16}\n    device: cpu\n"
PRUNE = "prune: {rungs: [1, 2], keep: 0.5}\n"


def sweep(caches, spec: Path, out: Path, *extra) -> list[str]:
    return ["sweep", "--spec", str(spec), "--cache", str(caches[0]), "--val-cache", str(caches[1]), "--out", str(out),
            "--epochs", "3", "--no-progress", *extra]  # fmt: skip


def spec_file(tmp_path: Path, text: str) -> Path:
    (tmp_path / "s.yaml").write_text(text)
    return tmp_path / "s.yaml"


def metrics(out: Path, member: str) -> dict:
    return json.loads((out / "runs" / member / "metrics.json").read_text())


def test_each_models_best_fraction_goes_on_ranked_by_the_mean_over_seeds():
    a, b, c, d = (Configuration("late_fusion", (("optim.lr", lr),)) for lr in (1e-3, 1e-4, 1e-5, 1e-6))
    other = Configuration("gasm_cast")
    # b's mean (0.5) beats a's (0.45) though a has the best seed; c ties b and is listed later
    scores = {a: [0.9, 0.0], b: [0.5, 0.5], c: [0.5, 0.5], d: [0.1, 0.2], other: [0.0, 0.0]}
    assert kept(scores, 0.5) == {b, c, other}  # the lone gasm_cast is ranked against no other model
    assert kept(scores, 0.25) == {b, other}  # ceil(4 x 0.25) = 1: the tie goes to the one listed first
    assert kept(scores, 0.3) == {b, c, other}  # ceil(1.2) = 2
    assert kept({d: [0.0]}, 0.1) == {d}  # at least one goes on


def test_default_rungs_and_bad_prune_settings():
    assert PruneConfig().rungs_for(30) == (3, 7, 15) and PruneConfig().rungs_for(2) == (1,)
    assert PruneConfig().rungs_for(1) == ()
    with pytest.raises(UserError, match="prune.rungs: 3 is not an epoch before the last"):
        PruneConfig((1, 3)).rungs_for(3)
    for prune, words in (("{rungs: [2, 1]}", "rungs: expected increasing epochs"), ("{keep: 1}", "keep: expected"),
                         ("{every: 2}", "unknown key(s) every")):  # fmt: skip
        with pytest.raises(UserError, match=re.escape(words)):
            parse_spec({"axes": {"optim.lr": [0.1]}, "prune": yaml.safe_load(prune)}, "test")


def test_pruning_is_refused_where_it_would_rank_on_the_reported_clips(caches, tmp_path):
    spec = spec_file(tmp_path, BASE + "axes: {optim.lr: [0.001, 0.0001]}\n")
    result = CliRunner().invoke(main, [*sweep(caches, spec, tmp_path / "S"), "--prune", "halving", "--select-on",
                                       "validation"])  # fmt: skip
    assert result.exit_code == 2 and "--prune ranks members on the holdout" in result.output, result.output
    assert not (tmp_path / "S").exists()  # one line, nothing written
    bad = spec_file(tmp_path, BASE + "axes: {optim.lr: [0.001, 0.0001]}\nprune: {rungs: [3]}\n")
    result = CliRunner().invoke(main, sweep(caches, bad, tmp_path / "B"))
    assert result.exit_code == 2 and "prune.rungs: 3 is not an epoch before the last (3)" in result.output
    assert not (tmp_path / "B").exists()


def _history(out: Path, member: str) -> list[dict]:
    with (out / "runs" / member / "metrics.csv").open() as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def test_rungs_stop_the_configurations_the_holdout_ranks_last_and_the_report_lists_them_apart(caches, tmp_path):
    lrs = (3e-3, 1e-6, 1e-3)  # two seeds each
    spec = spec_file(tmp_path, BASE + "axes: {optim.lr: [0.003, 1.0e-6, 0.001]}\nseeds: [0, 1]\n" + PRUNE)
    result = CliRunner().invoke(main, sweep(caches, spec, tmp_path / "S"))
    assert result.exit_code == 0, result.output
    names = [f"late_fusion-lr{lr:g}" for lr in lrs]
    # The rule, from the members' own epoch rows: at each rung the configurations still in, ranked by the mean
    # over seeds of the best holdout top-1 up to the rung, ceil(n / 2) go on, ties to the first listed.
    alive, expected = list(names), {}
    for rung in (1, 2):
        score = {n: sum(max(r["holdout_top1"] for r in _history(tmp_path / "S", f"{n}-seed{s}")[:rung])
                        for s in (0, 1)) / 2 for n in alive}  # fmt: skip
        ranked = sorted(alive, key=lambda n: -score[n])
        alive = ranked[: math.ceil(len(alive) / 2)]
        expected.update({n: rung for n in ranked[len(alive) :]})
    record = json.loads((tmp_path / "S" / "sweep.json").read_text())
    assert record["prune"] == {"rungs": [1, 2], "keep": 0.5}
    for name in names:
        for seed in (0, 1):
            member = metrics(tmp_path / "S", f"{name}-seed{seed}")
            assert member.get("pruned_at") == expected.get(name), name
            assert record["pruned_at"].get(f"{name}-seed{seed}") == expected.get(name)
            assert member["last"]["epoch"] == expected.get(name, 3)  # stopped members trained no further
            assert member["best"]["epoch"] <= member["last"]["epoch"] and member["best"]["selected_on"] == "holdout"
    assert len(expected) == 2 and expected[names[1]] == 1  # the hopeless lr stops at the first rung
    finished = [n for n in names if n not in expected]
    rows = list(csv.DictReader((tmp_path / "S" / "results.csv").open()))
    assert {r["configuration"] for r in rows} == set(finished) and len(rows) == 2  # the table: finished ones only
    pruned = list(csv.DictReader((tmp_path / "S" / "pruned.csv").open()))
    assert sorted((r["configuration"], int(r["pruned_at"])) for r in pruned) == sorted(
        (n, r) for n, r in expected.items() for _ in (0, 1)
    )
    assert "2 configuration(s) stopped at a rung" in result.output
    assert f"- {names[1]}: stopped at epoch 1, holdout_top1" in (tmp_path / "S" / "report.md").read_text()
    # a re-run finds every member finished or stopped: nothing trains again, no run folder changes
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "S" / "runs").rglob("*") if p.is_file()}
    assert CliRunner().invoke(main, sweep(caches, spec, tmp_path / "S")).exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "S" / "runs").rglob("*") if p.is_file()} == stamps
    # the same folder pruned otherwise is another sweep
    other = CliRunner().invoke(main, sweep(caches, spec, tmp_path / "S", "--prune", "none"))
    assert other.exit_code == 2 and "pruned otherwise" in other.output


def test_a_pruned_sweep_killed_between_rungs_ends_as_the_uninterrupted_one(caches, tmp_path):
    spec = spec_file(tmp_path, BASE + "axes: {optim.lr: [0.003, 0.001, 1.0e-5, 1.0e-7]}\n" + PRUNE)
    command = [sys.executable, str(ROOT / "cli.py"), *sweep(caches, spec, tmp_path / "K")]
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record, deadline = tmp_path / "K" / "sweep.json", time.time() + 300
    while time.time() < deadline and not (record.exists() and json.loads(record.read_text())["pruned_at"]):
        time.sleep(0.02)
    os.kill(job.pid, signal.SIGKILL)  # after the first rung's decision, in the second stretch
    job.wait()
    assert not all((folder / "metrics.json").exists() for folder in (tmp_path / "K" / "runs").iterdir())
    assert CliRunner().invoke(main, sweep(caches, spec, tmp_path / "K")).exit_code == 0
    assert CliRunner().invoke(main, sweep(caches, spec, tmp_path / "W")).exit_code == 0
    assert json.loads(record.read_text())["pruned_at"] == json.loads((tmp_path / "W" / "sweep.json").read_text())[
        "pruned_at"]  # fmt: skip
    for folder in sorted((tmp_path / "W" / "runs").iterdir()):
        killed, whole = metrics(tmp_path / "K", folder.name), metrics(tmp_path / "W", folder.name)
        assert killed.get("pruned_at") == whole.get("pruned_at") and killed["last"] == whole["last"], folder.name
        weights = [torch.load(f / "runs" / folder.name / "last.pt", weights_only=True)["model"] for f in
                   (tmp_path / "K", tmp_path / "W")]  # fmt: skip
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1]), folder.name


def test_one_process_per_member_prunes_as_inline(caches, tmp_path):
    spec = spec_file(tmp_path, BASE + "axes: {optim.lr: [1.0e-6, 0.003]}\nprune: {rungs: [1]}\n")
    local = CliRunner().invoke(main, sweep(caches, spec, tmp_path / "L", "--executor", "local"))
    inline = CliRunner().invoke(main, sweep(caches, spec, tmp_path / "I", "--no-stack"))
    assert local.exit_code == 0 and inline.exit_code == 0, local.output
    for member in ("late_fusion-lr1e-06-seed0", "late_fusion-lr0.003-seed0"):
        a, b = metrics(tmp_path / "L", member), metrics(tmp_path / "I", member)
        assert a.get("pruned_at") == b.get("pruned_at") and a["last"] == b["last"], member
    assert metrics(tmp_path / "L", "late_fusion-lr1e-06-seed0")["pruned_at"] == 1  # stopped, not resubmitted
    jobs = [job for job in (tmp_path / "L" / "jobs").iterdir() if job.name.isdigit()]
    assert len(jobs) == 3  # both members to the rung, then the one that goes on


def test_bench_sweep_prune_counts_the_member_epochs_each_way(caches):
    result = CliRunner().invoke(main, ["bench", "sweep", "--prune", "--cache", str(caches[0]), "--val-cache",
                                       str(caches[1]), "--epochs", "2", "--model", "late_fusion", "--batch-size",
                                       "32"])  # fmt: skip
    assert result.exit_code == 0, result.output
    # 16 configurations: 2 epochs each, or all to the rung at epoch 1 and the best 8 on to epoch 2
    assert re.search(r"every member to the end\s+│\s+32 │", result.output), result.output
    assert re.search(r"--prune halving \(rungs \[1\]\)\s+│\s+24 │", result.output), result.output
