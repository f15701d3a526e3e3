"""Write every wheel the project needs into one folder, for this Python version and platform, so that compute
nodes without internet install with `make install WHEELS=DIR`. Run by `make wheelhouse` on a machine that reaches
the package index (a login node).

Standard library only: it runs before anything is installed."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from common import MANIFEST, InstallError, pip, run_main, system_torch, target

# The project's build backend (pyproject.toml): the editable install builds with it from the wheelhouse too.
BUILD_REQUIREMENTS = ("setuptools>=77",)
PROJECT = "gasm-cast"


def _wheel_version(folder: Path, name: str) -> str:
    found = sorted(folder.glob(f"{name}-*.whl"))
    if len(found) != 1:
        raise InstallError(f"expected one {name} wheel in {folder}, found {len(found)}")
    return found[0].name.split("-")[1]


def _planned(python: str, constraints: Path, requirement: str) -> list[str]:
    """name==version of everything an install of `requirement` would add to `python`'s environment."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "plan.json"
        pip(python, "install", "--dry-run", "--quiet", "--report", str(report), "--constraint", str(constraints),
            requirement)  # fmt: skip
        planned = json.loads(report.read_text())["install"]
    return [
        f"{item['metadata']['name']}=={item['metadata']['version']}"
        for item in planned
        if item["metadata"]["name"] != PROJECT
    ]


def make(out: Path, torch_spec: str, system: bool, extras: str, project: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # until this run has finished, the folder is not a wheelhouse
    requirement = f"{project}[{extras}]" if extras else str(project)
    if system:
        found = system_torch(sys.executable)
        if found is None:
            raise InstallError(f"SYSTEM_TORCH=1, but {sys.executable} cannot import torch and torchvision: run this "
                               f"with the compute nodes' torch module loaded, or their container's Python")  # fmt: skip
        versions = {"torch": found["torch"], "torchvision": found["torchvision"]}
    else:
        pip(sys.executable, "wheel", "--quiet", "--wheel-dir", str(out), *shlex.split(torch_spec))
        versions = {name: _wheel_version(out, name) for name in ("torch", "torchvision")}
    constraints = out / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in versions.items()))
    if system:
        # Only what the system's environment lacks: torch, its CUDA libraries and whatever else it has stay out.
        planned = _planned(sys.executable, constraints, requirement)
        if planned:
            pip(sys.executable, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), *planned)
    else:
        fresh = not (project / "build").exists()
        pip(sys.executable, "wheel", "--quiet", "--wheel-dir", str(out), "--constraint", str(constraints), requirement)
        for own in out.glob(f"{PROJECT.replace('-', '_')}-*.whl"):
            own.unlink()  # installed editable from the clone, never from here
        if fresh:
            shutil.rmtree(project / "build", ignore_errors=True)  # the in-tree build of that wheel
    pip(sys.executable, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), *BUILD_REQUIREMENTS)
    wheels = sorted(out.glob("*.whl"))
    manifest = {
        **target(),
        "system_torch": system,
        **versions,
        "extras": extras,
        "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wheels": len(wheels),
    }
    partial = out / f".{MANIFEST}.tmp"
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(partial, out / MANIFEST)  # written last: a wheelhouse with a manifest is complete
    size = sum(w.stat().st_size for w in wheels) / 2**30
    torch_note = "no torch (SYSTEM_TORCH=1)" if system else f"torch {versions['torch']}"
    print(f"wrote {len(wheels)} wheels ({size:.2f} GiB; {torch_note}) for {manifest['implementation']} "
          f"{manifest['python']} on {manifest['platform']} into {out}; install with: make install WHEELS={out}"
          f"{' SYSTEM_TORCH=1' if system else ''}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the wheels")
    parser.add_argument("--torch-spec", default="", help="pip arguments that name torch and torchvision")
    parser.add_argument("--system-torch", action="store_true", help="leave out the torch that this Python has")
    parser.add_argument("--extras", default="test")
    args = parser.parse_args()
    make(args.out, args.torch_spec, args.system_torch, args.extras, Path(__file__).resolve().parents[1])


if __name__ == "__main__":
    run_main(main)
