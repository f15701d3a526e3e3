"""Extraction refuses bad input before writing anything, and repairs instead of rebuilding."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zarr
from click.testing import CliRunner
from conftest import ROOT, assert_same_cache, tiny_config

from cli import main
from pipeline.cache.inspect import verify_cache
from pipeline.datasets import DataSource
from pipeline.extract import CacheTarget, run_extraction


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, words: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], result.output


def extract_args(root: Path, cache: Path, *extra) -> list:
    tiny = ROOT / "configs" / "extract_tiny.yaml"
    return ["extract", "--dataset", "ssv2", "--data-root", root, "--split", "validation", "--cache", cache,
            "--config", tiny, "--workers", 0, "--shard-size", 2, "--no-progress", *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "yaml", "words"),
    [
        (["--batch-size", 0], "", "--batch-size: expected >= 1, got 0"),
        (["--shard-size", 0], "", "--shard-size: expected in [1, 65536], got 0"),
        (["--workers", -1], "", "--workers: expected >= 0, got -1"),
        (["--limit", -3], "", "'--limit': -3 is not in the range x>=1"),
        (["--limit", 0], "", "'--limit': 0 is not in the range x>=1"),
        (["--device", "gpu"], "", "--device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
        (["--precision", "fp8"], "", "'--precision': 'fp8' is not one of"),
        (
            [],
            "sampling:\n  semantic_reduce: centre\n",
            "semantic_reduce: expected one of mean, center, frames, got 'centre'",
        ),
        ([], "run:\n  decode_timeout: -1\n", "run.decode_timeout: expected >= 0, got -1.0"),
        ([], "sampling:\n  motion_frames: 0\n", "sampling.motion_frames: expected >= 1, got 0"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(ssv2_root, tmp_path, extra, yaml, words):
    cache = tmp_path / "c"
    if yaml:
        (tmp_path / "bad.yaml").write_text(yaml)
        extra = [*extra, "--config", tmp_path / "bad.yaml"]
    one_line_error(run(*extract_args(ssv2_root, cache), *extra), words)
    assert list(tmp_path.iterdir()) == ([tmp_path / "bad.yaml"] if yaml else [])


def test_weights_that_do_not_load_leave_no_cache_and_random_init_then_works(ssv2_root, tmp_path):
    cache, empty = tmp_path / "c", tmp_path / "no-weights"
    empty.mkdir()
    base = ["extract", "--dataset", "ssv2", "--data-root", ssv2_root, "--split", "validation", "--cache", cache,
            "--semantic", "dinov3_tiny", "--motion", "i3d_tiny", "--workers", 0, "--shard-size", 2]  # fmt: skip
    one_line_error(run(*base, "--motion-weights", tmp_path / "missing.pyth"), "--motion-weights")
    one_line_error(run(*base, "--semantic-weights", tmp_path / "nowhere"), "--semantic-weights")
    result = run(*base, "--semantic-weights", empty, "--motion-weights", "pretrained")
    one_line_error(result, "could not load DINOv3 weights")
    assert not cache.exists()
    assert run(*base, "--random-init").exit_code == 0


def test_a_cache_nobody_finished_a_shard_of_is_taken_over(ssv2_root, tmp_path):
    cache = tmp_path / "c"
    first = tiny_config()
    first.backbones.motion_layer = "res4"
    source = DataSource("ssv2", ssv2_root, "validation")
    CacheTarget(source, cache, first, "fp32").open(create=True)  # then the run died
    summary = run_extraction(DataSource("ssv2", ssv2_root, "validation"), cache, tiny_config())
    assert summary.extracted == 6 and verify_cache(cache) == []
    assert zarr.open_group(str(cache), mode="r").attrs["backbones"]["motion"]["layer"] == "res3"
    with pytest.raises(Exception, match="backbones.motion.layer: 'res3' -> 'res4'"):
        run_extraction(DataSource("ssv2", ssv2_root, "validation"), cache, first)  # now it holds finished shards


def test_paths_that_cannot_be_written_are_named(ssv2_root, tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_error(run(*extract_args(ssv2_root, tmp_path / "file")), "--cache")
    one_line_error(run(*extract_args(ssv2_root, tmp_path / "file" / "c")), "is a file, expected a folder")
    cache = tmp_path / "c"
    assert run(*extract_args(ssv2_root, cache)).exit_code == 0
    (cache / "zarr.json").write_text("{not json")
    one_line_error(run("cache", "info", cache), "zarr.json is unreadable or corrupt")
    one_line_error(run("cache", "verify", cache), "zarr.json is unreadable or corrupt")


def test_restored_video_and_retry_failed_equal_a_clean_run(ssv2_root, tmp_path):
    data, cache = tmp_path / "data", tmp_path / "c"
    shutil.copytree(ssv2_root, data)
    video = data / "videos" / f"{json.loads((data / 'validation.json').read_text())[2]['id']}.webm"
    kept = video.read_bytes()
    video.unlink()
    assert run(*extract_args(data, cache)).exit_code == 0
    assert [p["problem"] for p in verify_cache(cache)] == ["failed"]
    video.write_bytes(kept)
    assert run(*extract_args(data, cache)).exit_code == 0  # without --retry-failed a done shard stays as it is
    assert [p["problem"] for p in verify_cache(cache)] == ["failed"]
    result = run(*extract_args(data, cache, "--retry-failed"))
    assert result.exit_code == 0, result.output
    assert run("cache", "verify", cache).exit_code == 0
    assert run(*extract_args(data, tmp_path / "clean")).exit_code == 0
    assert_same_cache(cache, tmp_path / "clean")


def test_truncated_shard_is_named_repaired_and_redone_bit_for_bit(ssv2_root, tmp_path):
    cache = tmp_path / "c"
    assert run(*extract_args(ssv2_root, cache)).exit_code == 0
    shutil.copytree(cache, tmp_path / "clean")
    shard = cache / "semantic" / "c" / "1" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    for args in (["cache", "verify", cache], ["cache", "verify", "--deep", cache]):
        result = run(*args)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert "unreadable\tshard-000001\tsemantic/c/1/0/0: " in result.output
    damaged = shard.read_bytes()
    repaired = run("cache", "repair", cache)
    assert repaired.exit_code == 0 and "1 damaged shard(s) marked for re-extraction: 1" in repaired.output
    assert zarr.open_group(str(cache), mode="r")["done"][:].tolist() == [True, True, False, False, True, True]
    kept = cache / "quarantine" / "shard-000001.semantic"  # nothing deleted: the damaged bytes are kept
    assert f"kept {kept}" in repaired.output and kept.read_bytes() == damaged and not shard.exists()
    assert (cache / "quarantine" / "shard-000001.motion").exists()
    info = json.loads(run("cache", "info", "--json", cache).output)
    assert info["quarantined"] == ["shard-000001.motion", "shard-000001.semantic"]
    assert run(*extract_args(ssv2_root, cache)).exit_code == 0
    assert not list((cache / "quarantine").glob("shard-*"))  # the extract that redid the shard removed them
    assert run("cache", "verify", "--deep", cache).exit_code == 0
    assert_same_cache(cache, tmp_path / "clean")
    assert "nothing to repair" in run("cache", "repair", cache).output


def test_ctrl_c_stops_extraction_with_exit_130(ssv2_root, tmp_path):
    cache = tmp_path / "c"
    command = [sys.executable, str(ROOT / "cli.py"), *map(str, extract_args(ssv2_root, cache))]
    command[command.index("validation")] = "train"
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (cache / "done" / "c" / "0").exists():
        time.sleep(0.02)
    job.send_signal(signal.SIGINT)
    assert job.wait(timeout=60) == 130
    assert "interrupted" in job.stderr.read()
    assert 0 < zarr.open_group(str(cache), mode="r")["done"][:].sum() < 12


def test_a_cache_made_with_another_frame_conversion_is_refused_by_name(ssv2_root, tmp_path):
    cache = tmp_path / "c"
    assert run(*extract_args(ssv2_root, cache)).exit_code == 0
    group = zarr.open_group(str(cache), mode="r+")
    backbones = dict(group.attrs["backbones"])
    for kind in backbones:  # as a cache of the earlier conversion recorded it: no frame_resize
        backbones[kind] = {k: v for k, v in backbones[kind].items() if k != "frame_resize"}
    group.attrs["backbones"] = backbones
    one_line_error(run(*extract_args(ssv2_root, cache)), "backbones.motion.frame_resize: (absent) -> 'video: centre")


# SIGTERM in the slow tier: SIGINT checks the same path (the handler, the kept shards, the bit-identical resume).
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow)]
)
def test_a_signal_to_the_process_group_stops_extraction_and_the_same_command_resumes_bit_identically(
    ssv2_root, tmp_path, signum, code
):
    """As a terminal's Ctrl-C (or a batch system's SIGTERM) reaches the command and its decoder workers at once;
    started with SIGINT ignored, as a script's background job is."""
    cache, reference = tmp_path / "c", tmp_path / "reference"
    args = [*map(str, extract_args(ssv2_root, cache, "--workers", 2))]
    args[args.index("validation")] = "train"
    job = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, start_new_session=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not (cache / "done" / "c" / "0").exists():
        time.sleep(0.02)
    os.killpg(job.pid, signum)
    assert job.wait(timeout=60) == code
    stderr = job.stderr.read()
    assert "Traceback" not in stderr, stderr  # neither the command nor a decoder worker
    assert any(line.startswith(("interrupted", "terminated")) for line in stderr.splitlines()), stderr
    assert 0 < zarr.open_group(str(cache), mode="r")["done"][:].sum() < 12
    assert run(*args).exit_code == 0
    reference_args = [str(reference) if a == str(cache) else a for a in args]
    assert run(*reference_args).exit_code == 0
    assert_same_cache(cache, reference)


def test_two_identical_extractions_started_together_never_extract_a_shard_twice(ssv2_root, tmp_path):
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from conftest import tiny_config; "
        "from pipeline.datasets import DataSource; from pipeline.extract import run_extraction; "
        "s = run_extraction(DataSource('ssv2', sys.argv[2], 'train'), sys.argv[3], "
        "tiny_config(shard_size=2, workers=0)); "
        "print(json.dumps([s.extracted + s.failed, s.busy]))"
    )
    command = [sys.executable, "-c", code, str(ROOT / "tests"), str(ssv2_root), str(tmp_path / "c")]
    jobs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    counts = [json.loads(job.communicate(timeout=300)[0].strip().splitlines()[-1]) for job in jobs]
    assert all(job.returncode == 0 for job in jobs)
    assert sum(handled for handled, _ in counts) == 12, counts  # every clip once, by one of the two
    run_extraction(DataSource("ssv2", ssv2_root, "train"), tmp_path / "reference", tiny_config(shard_size=2, workers=0))
    assert_same_cache(tmp_path / "c", tmp_path / "reference")


def test_a_shard_claimed_by_a_running_process_is_left_to_it(tmp_path):
    from pipeline.cache.claims import ShardClaims

    code = "import sys, time; from pipeline.cache.claims import ShardClaims\n" \
           "c = ShardClaims(sys.argv[1]); print(c.claim([1, 3]), flush=True); time.sleep(600)"  # fmt: skip
    command = [sys.executable, "-c", code, str(tmp_path / "c")]
    holder = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "[1, 3]"
        claims = ShardClaims(tmp_path / "c")
        assert claims.claim([0, 1, 2, 3, 4]) == [0, 2, 4]
        claims.close()
    finally:
        holder.kill()
        holder.wait()
    claims = ShardClaims(tmp_path / "c")  # the kernel released the killed holder's claims
    assert claims.claim([1, 3]) == [1, 3]
    claims.close()


def test_a_full_disk_during_extraction_is_one_line_and_the_same_command_resumes_bit_identically(
    ssv2_root, tmp_path, monkeypatch
):
    import errno

    import zarr.storage._local as local

    put, writes = local._put, {"n": 0}

    def fills_up(path, value, exclusive=False):
        if "/semantic/c/" in str(path):
            writes["n"] += 1
            if writes["n"] > 2:  # the first two shards fit
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return put(path, value, exclusive)

    cache = tmp_path / "c"
    monkeypatch.setattr(local, "_put", fills_up)
    result = run(*extract_args(ssv2_root, cache))
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"error: disk full writing {cache}/semantic/c/") and last.endswith(
        "MB free on its file system)"
    ), last
    assert "Traceback" not in result.output
    assert 0 < zarr.open_group(str(cache), mode="r")["done"][:].sum() < 6
    monkeypatch.setattr(local, "_put", put)
    assert run(*extract_args(ssv2_root, cache)).exit_code == 0
    assert run(*extract_args(ssv2_root, tmp_path / "reference")).exit_code == 0
    assert_same_cache(cache, tmp_path / "reference")
