"""Where a cache came from: package version, git commit, weight checksums."""

from __future__ import annotations

import functools
import hashlib
import subprocess
from importlib import metadata
from pathlib import Path


def package_version() -> str:
    try:
        return metadata.version("gasm-cast")
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def git_commit() -> str:
    """The commit of the source tree that is running, with '+dirty' for uncommitted changes, or 'unknown'. Asked
    once a process: every checkpoint records it, and two git calls each time cost more than writing it."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def created_with() -> dict[str, str]:
    """A new dict each call (the caller may add to it)."""
    return {"package": "gasm-cast", "version": package_version(), "git_commit": git_commit()}


def sha256_of(path: str | Path) -> str:
    """sha256 of a weights file, or of a directory's weight files in name order."""
    path = Path(path)
    files = (
        [path]
        if path.is_file()
        else sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and p.suffix in {".safetensors", ".bin", ".pth", ".pyth", ".pt", ".json"}
        )
    )
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def weights_identity(weights: str | None, default: str, random_init: bool, seed: int) -> dict[str, object]:
    """What `weights_sha256|random_seed` records for one backbone."""
    if random_init:
        return {"random_seed": seed}
    if weights and Path(weights).exists():
        return {"weights": str(Path(weights).resolve()), "weights_sha256": sha256_of(weights)}
    return {"weights": weights or default, "weights_sha256": None}
