"""cli gpu-check: one line and nothing run without CUDA; the report's format with only the device check stood in
for (every step runs for real, on the CPU at tiny shapes, so the tables are the benches' own)."""

import pytest
from click.testing import CliRunner

from cli import main
from fusion.benches import gpu_check
from fusion.benches.gpu_check import CheckSettings, GpuInfo, plan, run_check


def test_without_cuda_it_says_so_in_one_line_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "detect_gpu", lambda: None)
    monkeypatch.setattr(gpu_check, "_run", lambda *a: (_ for _ in ()).throw(AssertionError("a step ran")))
    result = CliRunner().invoke(main, ["gpu-check", "--out", str(tmp_path / "report.md")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("gpu-check: no CUDA device here") and len(result.output.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def _settings(tmp_path):
    return CheckSettings(
        device="cpu",
        fusion_batch_sizes="2",
        semantic_shape="16x32",
        motion_shape="4x16",
        loader_clips=32,
        loader_batch_size=8,
        extract_clips=4,
        extract_options=("--semantic", "dinov3_tiny", "--motion", "i3d_tiny", "--batch-size", "2", "--workers", "1"),
        strongest_backbones=("--semantic", "dinov3_tiny", "--motion", "vjepa2_tiny"),
        real_fixtures=tmp_path / "no-fixtures",  # a real failure: the report must carry it and the check go on
    )


def test_the_report_carries_each_steps_output_and_goes_on_past_a_failure(tmp_path, monkeypatch):
    """The default tier's sibling of the test below: every step of the plan, stood in for by a command that
    prints a table (the last one fails), so the report's assembly is checked without running the benches."""
    import sys

    monkeypatch.setattr(gpu_check, "detect_gpu", lambda: GpuInfo("Stand-in GPU", 1, 80.0, "9.0", "555.55"))
    real_run = gpu_check._run
    ran = []

    def stand_in(step, env):
        ran.append(step.title)
        fails = len(ran) == len(plan(_settings(tmp_path), tmp_path / "work"))
        code = f"import os; print('table of', os.environ['TITLE']); print('tail of the error'); exit({fails:d})"
        return real_run(gpu_check.Step(step.title, [sys.executable, "-c", code], 60, step.setup),
                        {**env, "TITLE": step.title})  # fmt: skip

    monkeypatch.setattr(gpu_check, "_run", stand_in)
    out = tmp_path / "gpu.md"
    gpu, passed = run_check(_settings(tmp_path), out, tmp_path / "work")
    assert gpu.name == "Stand-in GPU" and not passed and len(ran) == 9
    text = out.read_text()
    assert "| GPU | Stand-in GPU x 1, 80.0 GiB, compute capability 9.0 |" in text and "| driver | 555.55 |" in text
    steps = plan(_settings(tmp_path), tmp_path / "work")
    for step in steps[:-1]:
        assert f"\n## {step.title}\n" in text and f"| {step.title} | ok |" in text
        assert (f"table of {step.title}" in text) != step.setup  # a setup step's output is not a table
    assert f"| {steps[-1].title} | failed (exit 1) |" in text and "tail of the error" in text


@pytest.mark.slow
def test_report_holds_the_machine_and_every_steps_own_table(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "detect_gpu", lambda: GpuInfo("Stand-in GPU", 1, 80.0, "9.0", "555.55"))
    settings = _settings(tmp_path)
    out = tmp_path / "reports" / "gpu.md"
    gpu, passed = run_check(settings, out, tmp_path / "work")
    assert gpu.name == "Stand-in GPU" and not passed
    text = out.read_text()
    assert list(out.parent.iterdir()) == [out]
    assert text.startswith("# gasm-cast GPU check, ")
    for row in ("| GPU | Stand-in GPU x 1, 80.0 GiB, compute capability 9.0 |", "| driver | 555.55 |", "| torch | "):
        assert row in text
    steps = plan(settings, tmp_path / "work")
    assert len(steps) == 9
    for step in steps:
        assert f"\n## {step.title}\n" in text
    # Each bench's own table, as it printed it.
    assert "bench fusion: semantic 16x32, motion 4x16" in text and "vanilla_cross_attention" in text
    assert text.count("loader (batches, then model inputs)") == 3  # one table per data mode
    assert "bench extract: dinov3_tiny + i3d_tiny, 4 generated 160x120 clips" in text
    assert "bench extract: dinov3_tiny + vjepa2_tiny, 4 generated 160x120 clips" in text
    assert "| GPU tests (make test-gpu) | ok: " in text and "skipped" in text  # no CUDA here: the GPU tests skip
    assert "| bench extract, real SSv2 clips (REAL_FIXTURES) | failed (exit 2) |" in text
    assert "no-fixtures/ssv2-mini is not a directory" in text
    assert text.count("```text") == text.count("```") // 2 == 8  # every table but the setup step's, and the error
