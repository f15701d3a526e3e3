"""What the install scripts share: the wheelhouse manifest, finding an existing torch, running pip, one-line errors.

Standard library only: these run before anything is installed."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

MANIFEST = "wheelhouse.json"
# Printed by a Python that may be a cluster module's or a container's: it must import nothing of the project.
_TORCH_PROBE = (
    "import json, torch, torchvision; print(json.dumps({'torch': torch.__version__.split('+')[0], "
    "'torchvision': torchvision.__version__.split('+')[0], 'cuda': torch.version.cuda, 'path': torch.__file__}))"
)


class InstallError(Exception):
    """A problem the user can fix: printed as one line, exit status 2."""


def target() -> dict[str, str]:
    """The interpreter and platform wheels are made for and installed on."""
    return {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "platform": sysconfig.get_platform(),
            "implementation": platform.python_implementation()}  # fmt: skip


def wheelhouse_manifest(folder: Path) -> dict[str, Any]:
    """The wheelhouse's manifest, checked against this interpreter and platform."""
    path = folder / MANIFEST
    if not folder.exists():
        raise InstallError(f"WHEELS={folder} does not exist: make it with `make wheelhouse WHEELS={folder}`")
    if not path.is_file():
        raise InstallError(f"{folder} is not a wheelhouse (no {MANIFEST}): make one with `make wheelhouse WHEELS=DIR`")
    try:
        manifest = json.loads(path.read_text())
        made_for = {key: manifest[key] for key in target()}
    except (ValueError, KeyError, TypeError) as exc:
        raise InstallError(f"{path} is not a wheelhouse manifest ({exc})") from None
    if made_for != target():
        raise InstallError(f"{folder} holds wheels for {_describe(made_for)}, but this is {_describe(target())}: "
                           f"make the wheelhouse with this Python (PYTHON=...) on this platform")  # fmt: skip
    return manifest


def _describe(made_for: dict[str, str]) -> str:
    return f"{made_for['implementation']} {made_for['python']} on {made_for['platform']}"


def system_torch(python: str) -> dict[str, Any] | None:
    """torch and torchvision as `python` imports them (versions, CUDA, location), or None if it cannot."""
    probe = subprocess.run([python, "-c", _TORCH_PROBE], capture_output=True, text=True)
    return json.loads(probe.stdout) if probe.returncode == 0 else None


def base_site_dirs() -> list[str]:
    """This interpreter's package folders (a virtual environment's own, when it runs in one)."""
    return sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})


def pip(python: Path | str, *args: str) -> None:
    command = [str(python), "-m", "pip", *args]
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)


def run_main(main: Callable[[], None]) -> None:
    try:
        main()
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except subprocess.CalledProcessError as exc:
        print(f"error: exit status {exc.returncode} from {' '.join(map(str, exc.cmd))}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
