"""A full file system is one line naming the path being written and the free space of *its* file system (exit
1), for extraction, merge and the HDF5 export (whose writer may crash on ENOSPC: it runs in a process of its
own); nothing half-written is left at the output, and once space is freed the same command finishes with what
an uninterrupted run makes. A small tmpfs is the full disk: skipped where one cannot be mounted."""

import os
import re
import subprocess

import pytest
from click.testing import CliRunner
from conftest import ROOT, arrays_and_attrs, assert_same_cache, small_caches

from cli import main


@pytest.fixture
def small_disk(tmp_path):
    """A 96 KiB tmpfs at tmp_path/disk; grow(disk) makes it 16 MiB."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)],
                                           capture_output=True).returncode:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here (needs root and a kernel that allows it)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def grow(disk):
    subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)


def one_disk_full_line(result, path) -> None:
    """Exit 1 and one line naming `path` and the (nearly nil) free space of the tmpfs."""
    lines = [line for line in result.output.splitlines() if line.strip() and " INFO " not in line]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    match = re.fullmatch(r"error: disk full writing (\S+) \(([\d.]+) MB free on its file system\)", lines[0])
    assert match and match.group(1).startswith(str(path)) and float(match.group(2)) < 1, lines[0]


def extract(root, cache):
    tiny = ROOT / "configs" / "extract_tiny.yaml"
    args = ["extract", "--dataset", "ssv2", "--data-root", root, "--split", "validation", "--cache", cache,
            "--config", tiny, "--workers", 0, "--shard-size", 2, "--no-progress"]  # fmt: skip
    return CliRunner().invoke(main, [str(a) for a in args])


def test_extraction_into_a_full_disk_names_the_cache_and_resumes_when_freed(ssv2_root, small_disk, tmp_path):
    result = extract(ssv2_root, small_disk / "c")
    one_disk_full_line(result, small_disk / "c")
    grow(small_disk)
    assert extract(ssv2_root, small_disk / "c").exit_code == 0
    assert extract(ssv2_root, tmp_path / "clean").exit_code == 0
    assert_same_cache(small_disk / "c", tmp_path / "clean")


def test_merge_into_a_full_disk_names_the_output(small_disk, tmp_path):
    a, b = small_caches(tmp_path, 40, 30, dims={"semantic": (16, 64), "motion": (4, 16)}, shard_size=8)
    result = CliRunner().invoke(main, ["cache", "merge", str(a), str(b), "--out", str(small_disk / "m")])
    one_disk_full_line(result, small_disk / "m")
    assert not (small_disk / "m").exists()
    grow(small_disk)
    assert CliRunner().invoke(main, ["cache", "merge", str(a), str(b), "--out", str(small_disk / "m")]).exit_code == 0
    assert CliRunner().invoke(main, ["cache", "merge", str(a), str(b), "--out", str(tmp_path / "m")]).exit_code == 0
    assert_same_cache(small_disk / "m", tmp_path / "m")


def test_an_hdf5_export_that_fills_the_disk_mid_write_exits_in_one_line(small_disk, tmp_path):
    """Random features barely compress, so the file outgrows their raw size (checked free ahead) by HDF5's own
    structures: the disk fills mid-write, in the writer process."""
    cache, _ = small_caches(tmp_path, 32, 2, dims={"semantic": (16, 64), "motion": (4, 16)}, shard_size=8)
    out = small_disk / "c.h5"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    raw = 32 * (16 * 64 + 4 * 16) * 2
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (free - raw - 4096))  # room for the raw features and one page more
    result = CliRunner().invoke(main, ["cache", "export", str(cache), "--out", str(out)])
    one_disk_full_line(result, out)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # nothing at --out, no partial file
    filler.unlink()
    assert CliRunner().invoke(main, ["cache", "export", str(cache), "--out", str(out)]).exit_code == 0
    assert CliRunner().invoke(main, ["cache", "import", str(out), "--cache", str(tmp_path / "back")]).exit_code == 0
    (left, left_attrs), (right, right_attrs) = arrays_and_attrs(cache), arrays_and_attrs(tmp_path / "back")
    assert left_attrs == right_attrs and all(left[k].tobytes() == right[k].tobytes() for k in left if k != "clip_id")
