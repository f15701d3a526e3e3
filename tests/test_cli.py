import json
import subprocess
import sys

import pytest
import zarr
from click.testing import CliRunner
from conftest import ROOT

from cli import main

COMMANDS = [
    [],
    ["extract"],
    ["submit"],
    ["submit", "extract"],
    ["cache"],
    ["cache", "info"],
    ["cache", "verify"],
    ["cache", "repair"],
    ["cache", "stats"],
    ["cache", "export"],
    ["cache", "import"],
    ["cache", "merge"],
    ["synth"],
    ["bench"],
    ["bench", "extract"],
    ["bench", "fusion"],
    ["bench", "loader"],
    ["models"],
    ["fuse-train"],
    ["fuse-eval"],
    ["visualize"],
    ["predict"],
    ["sweep"],
    ["compare"],
    ["bench", "sweep"],
    ["export"],
    ["demo"],
    ["gpu-check"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "cli")
def test_help(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "Show this message" in result.output


def test_extract_help_names_the_weights_loaded_when_none_are_given():
    text = " ".join(CliRunner().invoke(main, ["extract", "--help"]).output.split())
    assert "[default: the variant's hub id: facebook/dinov3-vitb16-pretrain-lvd1689m for dinov3_vitb16]" in text
    assert (
        "[default: pretrained (pytorchvideo's I3D_8x8_R50, downloaded) for i3d_r50; the variant's hub id for "
        "V-JEPA 2: facebook/vjepa2-vitl-fpc64-256 for vjepa2_vitl]"
    ) in text


def test_the_command_line_starts_without_torch():
    """`cli --help` is instant because the defaults it shows live in torch-free modules; torch loads when a
    command runs (a subprocess: this test process has torch loaded already)."""
    code = (
        "import sys; from cli import main; main(['--help'], standalone_mode=False); "
        "print(sorted(m for m in ('torch', 'zarr', 'av', 'h5py') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_extract_help_shows_defaults():
    output = CliRunner().invoke(main, ["extract", "--help"]).output
    assert "[default: 64]" in output and "SLURM_ARRAY_TASK_ID" in output and "dinov3_vitb16" in output


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_bad_input_is_one_line_and_exit_2(tmp_path, ssv2_root):
    cases = [
        ["extract", "--dataset", "ssv2", "--data-root", tmp_path / "nowhere", "--cache", tmp_path / "c"],
        ["extract", "--dataset", "ssv2", "--data-root", ssv2_root, "--split", "val", "--cache", tmp_path / "c"],
        ["extract", "--dataset", "ssv2", "--data-root", ssv2_root, "--cache", tmp_path / "c", "--shard", "3/2"],
        ["extract", "--dataset", "ssv2", "--data-root", ssv2_root, "--cache", tmp_path / "c", "--semantic", "vit_x"],
        ["cache", "info", tmp_path],
        ["cache", "verify", tmp_path / "none"],
    ]
    for args in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output


def test_unknown_config_key_exit_2(tmp_path, ssv2_root):
    config = tmp_path / "c.yaml"
    config.write_text("run:\n  batchsize: 4\n")
    result = run(
        "extract", "--dataset", "ssv2", "--data-root", ssv2_root, "--cache", tmp_path / "c", "--config", config
    )
    assert result.exit_code == 2 and "unknown config key 'batchsize'" in result.output


def test_models_table_lists_every_model_under_budget():
    from fusion.models.registry import MODELS

    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        main, ["models", "--semantic-shape", "49x384", "--motion-shape", "4x256"]
    )
    assert result.exit_code == 0, result.output
    for name in MODELS:
        assert name in result.output
    assert " NO " not in result.output
    assert run("models", "--semantic-shape", "196").exit_code == 2


def test_shard_from_slurm_environment(monkeypatch):
    from pipeline.sharding import parse_shard

    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "2")
    assert parse_shard(None) == (3, 4)
    assert parse_shard("1/8") == (1, 8)


def test_synth_extract_info_verify(tmp_path):
    data, cache = tmp_path / "epic", tmp_path / "cache"
    assert run("synth", "--dataset", "epic100", "--out", data, "--train", 4, "--validation", 3).exit_code == 0
    result = run(
        "extract",
        "--dataset",
        "epic100",
        "--data-root",
        data,
        "--split",
        "validation",
        "--cache",
        cache,
        "--config",
        "configs/extract_tiny.yaml",
        "--workers",
        0,
        "--shard-size",
        2,
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    assert "extracted" in result.output
    info = json.loads(run("cache", "info", cache, "--json").output)
    assert info["num_clips"] == 3 and info["done"] == 3 and info["shards_done"] == "2/2"
    assert info["arrays"]["semantic"]["shape"] == [3, 196, 64]
    verify = run("cache", "verify", cache)
    assert verify.exit_code == 0 and "ok" in verify.output
    assert zarr.open_group(str(cache), mode="r")["verb"][:].tolist() == [0, 0, 0]


@pytest.mark.slow
def test_demo_at_real_shapes(tmp_path):
    """`cli demo --real-shapes` end to end with the default backbones (random init) on a few clips."""
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        main,
        ["demo", "--real-shapes", "--out", str(tmp_path / "d"), "--train", "4", "--validation", "2", "--epochs", "1"],
    )
    assert result.exit_code == 0, result.output
    for split, clips in (("train", 4), ("validation", 2)):
        group = zarr.open_group(str(tmp_path / "d" / "cache" / f"ssv2-{split}"), mode="r")
        assert group["semantic"].shape == (clips, 196, 768) and group["motion"].shape == (clips, 8, 512)
        assert group["done"][:].all()
    for model in ("gasm_cast", "semantic_only", "motion_only"):
        assert (tmp_path / "d" / "runs" / model / "best.pt").is_file()
        assert model in result.output
    assert {p.name for p in (tmp_path / "d" / "attention").glob("*.png")} == {
        "semantic_graph.png",
        "motion_graph.png",
        "fusion_layers.png",
    }


def test_benchmarks_run_and_print_their_tables(tmp_path, ssv2_root):
    """Smoke runs at tiny sizes: the tables appear (their numbers are for people, not for assertions)."""
    runner = CliRunner(env={"COLUMNS": "200"})
    fusion = runner.invoke(
        main,
        [
            "bench",
            "fusion",
            "--semantic-shape",
            "16x64",
            "--motion-shape",
            "4x32",
            "--batch-sizes",
            "2",
            "--repeats",
            "1",
        ],
    )
    assert fusion.exit_code == 0, fusion.output
    assert "B-CAST layer" in fusion.output and "vanilla_cross_attention" in fusion.output
    assert "SSv2 epoch" in fusion.output and "ms/clip" in fusion.output
    from pipeline.synth.features import make_feature_cache

    cache = make_feature_cache(tmp_path / "features", 24, "ssv2", semantic=(16, 64), motion=(4, 32), shard_size=8)
    for flag, mode in (("--data-mode", "ram"), ("--mode", "streamed")):  # fuse-train's name, and the earlier one
        loader = runner.invoke(
            main,
            ["bench", "loader", "--cache", str(cache), "--batch-size", "8", "--steps", "2", flag, mode],
        )
        assert loader.exit_code == 0, loader.output
        words = " ".join(loader.output.split())  # rich wraps long titles
        for row in ("cache read (shard", "batches (shuffled", "model inputs", "loader (batches", f"data.mode {mode}"):
            assert row in words, (row, loader.output)
    swept = runner.invoke(
        main,
        [
            "bench",
            "sweep",
            "--cache",
            str(cache),
            "--val-cache",
            str(make_feature_cache(tmp_path / "val", 8, "ssv2", semantic=(16, 64), motion=(4, 32), split="validation")),
            "--members",
            "1",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--data-mode",
            "streamed",
        ],
    )
    assert swept.exit_code == 0, swept.output
    rows = [line for line in swept.output.splitlines() if "│" in line]
    for mode in ("lockstep", "one after another", "separate fuse-train processes"):
        assert sum(mode in row for row in rows) == 1, (mode, swept.output)
    extract = runner.invoke(
        main,
        [
            "bench",
            "extract",
            "--semantic",
            "dinov3_tiny",
            "--motion",
            "i3d_tiny",
            "--clips",
            "4",
            "--batch-size",
            "2",
            "--workers",
            "0",
            "--device",
            "cpu",
            "--random-init",  # accepted as extract takes it (the bench always runs random init)
            "--work-dir",
            str(tmp_path),
        ],
    )
    assert extract.exit_code == 0, extract.output
    for row in ("decode only", "model only", "end to end", "RSS at end", "peak RSS of the model process (MB)"):
        assert row in extract.output
    real = runner.invoke(
        main,
        [
            "bench",
            "extract",
            "--semantic",
            "dinov3_tiny",
            "--motion",
            "i3d_tiny",
            "--clips",
            "6",
            "--batch-size",
            "2",
            "--workers",
            "1",
            "--device",
            "cpu",
            "--dataset",
            "ssv2",
            "--data-root",
            str(ssv2_root),
            "--split",
            "validation",
        ],
    )
    assert real.exit_code == 0, real.output
    assert "6 clips of ssv2/validation" in real.output and "per core" in real.output


def test_cache_info_works_on_the_projects_own_synthetic_caches(tmp_path):
    args = ["synth", "--dataset", "epic100", "--features", "--out", str(tmp_path), "--train", "4", "--validation",
            "2", "--semantic-shape", "4x8", "--motion-shape", "2x4"]  # fmt: skip
    assert CliRunner().invoke(main, args).exit_code == 0
    result = CliRunner().invoke(main, ["cache", "info", str(tmp_path / "train")])
    assert result.exit_code == 0, result.output
    assert "synthetic semantic [4, 8] weights: random seed 0" in result.output


def test_result_tables_fit_an_80_column_terminal_and_stay_whole_lines_in_files(monkeypatch):
    from rich.console import Console

    from pipeline.core.progress import table_console

    monkeypatch.setenv("COLUMNS", "80")
    assert table_console(180).width == 180  # a file or a pipe: one line a row
    monkeypatch.setattr(Console, "is_terminal", property(lambda self: True))
    assert table_console(180).width == 80  # a terminal: its own width (rich folds long cells)
