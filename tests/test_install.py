"""install/: the virtual environment on a system torch, and the wheelhouse checks (no package index needed).

The full offline round trip (make wheelhouse, then make install WHEELS=DIR with pip's --no-index) downloads
gigabytes; README's "Offline compute nodes" gives the commands it was checked with."""

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import ROOT

MAKE_VENV = ROOT / "install" / "make_venv.py"


def _install(python, *args):
    return subprocess.run([str(python), str(MAKE_VENV), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def _wheelhouse(folder, **changes):
    sys.path.insert(0, str(ROOT / "install"))
    try:
        from common import target
    finally:
        sys.path.pop(0)
    folder.mkdir()
    manifest = {**target(), "system_torch": False, "torch": "2.14.1", "torchvision": "0.29.1", **changes}
    (folder / "wheelhouse.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"python": "2.7"}, "holds wheels for CPython 2.7 on"),
        ({"platform": "macosx-11.0-arm64"}, "on macosx-11.0-arm64, but this is CPython"),
        ({"system_torch": True}, "holds no torch (made with SYSTEM_TORCH=1): install with SYSTEM_TORCH=1 too"),
    ],
)
def test_a_wheelhouse_for_another_target_is_refused_before_anything_is_built(tmp_path, changes, message):
    result = _install(sys.executable, "--venv", tmp_path / "v", "--wheels", _wheelhouse(tmp_path / "wh", **changes))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "v").exists()


def test_a_folder_without_a_manifest_is_not_a_wheelhouse(tmp_path):
    (tmp_path / "wh").mkdir()
    result = _install(sys.executable, "--venv", tmp_path / "v", "--wheels", tmp_path / "wh")
    assert result.returncode == 2 and "is not a wheelhouse (no wheelhouse.json)" in result.stderr
    missing = _install(sys.executable, "--venv", tmp_path / "v", "--wheels", tmp_path / "nope")
    assert missing.returncode == 2 and f"WHEELS={tmp_path / 'nope'} does not exist" in missing.stderr


def test_system_torch_needs_a_python_that_imports_torch(tmp_path):
    venv.create(tmp_path / "bare", with_pip=False)
    result = _install(tmp_path / "bare" / "bin" / "python", "--venv", tmp_path / "v", "--system-torch")
    assert result.returncode == 2 and "cannot import torch and torchvision" in result.stderr, result.stderr
    assert not (tmp_path / "v").exists()


def test_a_venv_on_the_system_torch_sees_a_base_virtual_environments_torch(tmp_path):
    """The test suite's own Python is a virtual environment with torch: the layered venv must import that torch,
    not a copy, which --system-site-packages alone would not give it."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; from make_venv import _create; "
            "_create(Path(sys.argv[2]), system=True)")  # fmt: skip
    subprocess.run([sys.executable, "-c", code, str(ROOT / "install"), str(tmp_path / "v")], check=True)
    probe = "import json, torch, click; print(json.dumps(torch.__file__))"
    found = subprocess.run([str(tmp_path / "v" / "bin" / "python"), "-c", probe], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert Path(json.loads(found.stdout)).resolve().is_relative_to(Path(sys.prefix).resolve())
    # Asked again for the other kind of venv, the same folder is refused rather than silently reused.
    result = _install(sys.executable, "--venv", tmp_path / "v", "--torch-spec", "torch")
    assert result.returncode == 2 and "was built with SYSTEM_TORCH=1" in result.stderr
