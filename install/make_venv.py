"""Build the project's virtual environment: from the package index, from a wheelhouse with no index, or on top of
a torch that the base Python already has (a cluster module or container). Run by `make install`.

Standard library only: it runs before anything is installed."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

from common import InstallError, base_site_dirs, pip, run_main, system_torch, wheelhouse_manifest


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _uses_system_site(venv: Path) -> bool:
    config = (venv / "pyvenv.cfg").read_text()
    return any(line.replace(" ", "") == "include-system-site-packages=true" for line in config.splitlines())


def _create(venv: Path, system: bool) -> None:
    if _venv_python(venv).exists():
        if _uses_system_site(venv) != system:
            want = "with" if system else "without"
            raise InstallError(f"{venv} was built {'without' if system else 'with'} SYSTEM_TORCH=1; to build it "
                               f"{want}, remove it first (make clean)")  # fmt: skip
        return
    subprocess.run([sys.executable, "-m", "venv", *(["--system-site-packages"] if system else []), str(venv)],
                   check=True)  # fmt: skip
    if system and sys.prefix != sys.base_prefix:
        # --system-site-packages sees the interpreter's base installation, not a virtual environment the base
        # Python runs in (a container's venv, say): a .pth file puts that environment's packages on the path too.
        purelib = Path(
            subprocess.run(
                [str(_venv_python(venv)), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()  # fmt: skip
        )
        (purelib / "_base_environment.pth").write_text("\n".join(base_site_dirs()) + "\n")


def _report(python: Path, venv: Path, system: bool) -> None:
    """Print where torch comes from, and refuse a SYSTEM_TORCH=1 venv whose torch was reinstalled into it."""
    found = system_torch(str(python))
    if found is None:
        raise InstallError(f"{python} cannot import torch after the install")
    inside = Path(found["path"]).resolve().is_relative_to(venv.resolve())
    if system and inside:
        raise InstallError(f"SYSTEM_TORCH=1, but torch was installed into {venv}: the project needs another torch "
                           f"than the system's {found['torch']}")  # fmt: skip
    print(f"torch {found['torch']} (CUDA {found['cuda'] or 'none'}), torchvision {found['torchvision']}, from "
          f"{'the system: ' if system else ''}{found['path']}")  # fmt: skip


def install(venv: Path, torch_spec: str, wheels: Path | None, system: bool, extras: str) -> None:
    source: list[str] = []
    if wheels is not None:
        manifest = wheelhouse_manifest(wheels)
        if manifest["system_torch"] and not system:
            raise InstallError(f"{wheels} holds no torch (made with SYSTEM_TORCH=1): install with SYSTEM_TORCH=1 too")
        source = ["--no-index", "--find-links", str(wheels.resolve())]
    constraints: list[str] = []
    if system:
        found = system_torch(sys.executable)
        if found is None:
            raise InstallError(f"SYSTEM_TORCH=1, but {sys.executable} cannot import torch and torchvision: load the "
                               f"cluster's torch module, or name the container's Python with PYTHON=")  # fmt: skip
        print(f"building on the system torch {found['torch']} (CUDA {found['cuda'] or 'none'}), torchvision "
              f"{found['torchvision']}, from {found['path']}")  # fmt: skip
        pins = venv / "system-torch-constraints.txt"
        _create(venv, system)
        pins.write_text(f"torch=={found['torch']}\ntorchvision=={found['torchvision']}\n")
        constraints = ["--constraint", str(pins)]
    else:
        _create(venv, system)
    python = _venv_python(venv)
    if wheels is None:
        pip(python, "install", "--quiet", "--upgrade", "pip")
    if not system:
        pip(python, "install", "--quiet", *source, *shlex.split(torch_spec))
    pip(python, "install", "--quiet", *source, *constraints, "-e", f".[{extras}]" if extras else ".")
    _report(python, venv, system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--torch-spec", default="", help="pip arguments that install torch and torchvision")
    parser.add_argument("--wheels", type=Path, help="a folder `make wheelhouse` wrote: install from it, no index")
    parser.add_argument("--system-torch", action="store_true", help="use the base Python's torch and torchvision")
    parser.add_argument("--extras", default="test")
    args = parser.parse_args()
    if sysconfig.get_platform().startswith(("win", "mingw")):
        raise InstallError("Linux or macOS only")
    install(args.venv, args.torch_spec, args.wheels, args.system_torch, args.extras)


if __name__ == "__main__":
    run_main(main)
