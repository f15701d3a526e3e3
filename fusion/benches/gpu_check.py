"""`cli gpu-check` (`make gpu-check`): the GPU tests and every benchmark on one CUDA machine, into one markdown
report of the machine, the versions and each bench's own table.

Each step runs as its own process: a failing or hanging step is recorded and the others go on, and each bench's
peak memory is its own."""

from __future__ import annotations

import datetime
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fusion.data.config import DATA_MODES
from pipeline.core import atomic
from pipeline.core.paths import CLI_SCRIPT, PROJECT_ROOT

log = logging.getLogger("gasm.progress")
CLI = [sys.executable, str(CLI_SCRIPT)]


@dataclass(frozen=True)
class GpuInfo:
    name: str
    count: int
    memory_gib: float
    capability: str
    driver: str


def detect_gpu() -> GpuInfo | None:
    """The CUDA device the check runs on, or None where there is none (the one place a test may stand in)."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return GpuInfo(props.name, torch.cuda.device_count(), props.total_memory / 2**30,
                   f"{props.major}.{props.minor}", _driver())  # fmt: skip


def _driver() -> str:
    if shutil.which("nvidia-smi") is None:
        return "unknown (no nvidia-smi)"
    query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
    found = subprocess.run(query, capture_output=True, text=True, timeout=30)
    return found.stdout.splitlines()[0].strip() if found.returncode == 0 and found.stdout.strip() else "unknown"


@dataclass(frozen=True)
class CheckSettings:
    """What the check measures. None keeps the bench's own default (its shapes are the user's design)."""

    device: str = "cuda"
    fusion_batch_sizes: str = "64,256"
    semantic_shape: str | None = None
    motion_shape: str | None = None
    loader_clips: int = 1024
    loader_modes: tuple[str, ...] = tuple(mode for mode in DATA_MODES if mode != "auto")
    loader_batch_size: int | None = None
    extract_clips: int | None = None
    extract_options: tuple[str, ...] = ()
    # the strongest frozen features: DINOv3-L appearance beside V-JEPA 2-L motion tokens
    strongest_backbones: tuple[str, ...] = ("--semantic", "dinov3_vitl16", "--motion", "vjepa2_vitl")
    real_fixtures: Path | None = None
    timeout_s: int = 300


@dataclass(frozen=True)
class Step:
    title: str
    command: list[str]
    timeout_s: int
    # A step that prepares data for later ones: its output is not a table, and the report shows only its status.
    setup: bool = False


@dataclass
class StepResult:
    step: Step
    returncode: int | None  # None: timed out
    seconds: float
    stdout: str = ""
    stderr: str = ""
    summary: str = field(default="")

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _shapes(settings: CheckSettings) -> list[str]:
    return [arg for flag, value in (("--semantic-shape", settings.semantic_shape),
            ("--motion-shape", settings.motion_shape)) if value for arg in (flag, value)]  # fmt: skip


def plan(settings: CheckSettings, work: Path) -> list[Step]:
    device, timeout = ["--device", settings.device], settings.timeout_s
    features = work / "features"
    loader_batch = ["--batch-size", str(settings.loader_batch_size)] if settings.loader_batch_size else []
    extract = [*device, *settings.extract_options]
    extract += ["--clips", str(settings.extract_clips)] if settings.extract_clips else []
    steps = [
        Step(
            "GPU tests (make test-gpu)",
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-m",
                "gpu",
                "-rs",
                "-p",
                "no:cacheprovider",
                str(PROJECT_ROOT / "tests"),
            ],
            2 * timeout,
        ),  # fmt: skip
        Step(
            "bench fusion",
            [*CLI, "bench", "fusion", *device, "--batch-sizes", settings.fusion_batch_sizes, *_shapes(settings)],
            timeout,
        ),  # fmt: skip
        Step(
            "a generated cache for the loader benches",
            [
                *CLI,
                "synth",
                "--dataset",
                "ssv2",
                "--features",
                "--out",
                str(features),
                "--train",
                str(settings.loader_clips),
                "--validation",
                "1",
                *_shapes(settings),
            ],
            timeout,
            setup=True,
        ),  # fmt: skip
        *(
            Step(
                f"bench loader, data.mode {mode}",
                [
                    *CLI,
                    "bench",
                    "loader",
                    "--cache",
                    str(features / "train"),
                    "--data-mode",
                    mode,
                    *device,
                    *loader_batch,
                ],
                timeout,
            )
            for mode in settings.loader_modes
        ),  # fmt: skip
        Step(
            "bench extract, generated clips",
            [*CLI, "bench", "extract", *extract, "--work-dir", str(work / "extract")],
            timeout,
        ),  # fmt: skip
        Step(
            "bench extract, generated clips, DINOv3-L + V-JEPA 2-L",
            [*CLI, "bench", "extract", *extract, *settings.strongest_backbones, "--work-dir", str(work / "extract")],
            timeout,
        ),  # fmt: skip
    ]
    if settings.real_fixtures is not None:
        real = ["--dataset", "ssv2", "--data-root", str(settings.real_fixtures / "ssv2-mini"), "--split", "train"]
        steps.append(Step("bench extract, real SSv2 clips (REAL_FIXTURES)", [*CLI, "bench", "extract", *extract,
                          *real], timeout))  # fmt: skip
    return steps


def duration(seconds: float) -> str:
    from pipeline.core.progress import duration  # rich's progress module: not at `cli --help` time

    return duration(seconds)


def _run(step: Step, env: dict[str, str]) -> StepResult:
    started = time.perf_counter()
    try:
        done = subprocess.run(step.command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                              timeout=step.timeout_s)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return StepResult(step, None, time.perf_counter() - started, out, err, f"timed out after {step.timeout_s} s")
    result = StepResult(step, done.returncode, time.perf_counter() - started, done.stdout, done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    tests = lines[-1].strip("= ") if step.command[1:3] == ["-m", "pytest"] and lines else ""
    result.summary = ("ok" if result.ok else f"failed (exit {done.returncode})") + (f": {tests}" if tests else "")
    return result


def _environment(gpu: GpuInfo, settings: CheckSettings, seconds: float) -> list[tuple[str, str]]:
    import torch

    from pipeline.core.provenance import git_commit

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return [
        ("GPU", f"{gpu.name} x {gpu.count}, {gpu.memory_gib:.1f} GiB, compute capability {gpu.capability}"),
        ("driver", gpu.driver),
        ("torch", f"{torch.__version__}, CUDA {torch.version.cuda or 'none'}, cuDNN {cudnn or 'none'}"),
        ("python", f"{platform.python_version()} on {platform.platform()}"),
        ("CPU cores", str(os.cpu_count())),
        ("gasm-cast", f"commit {git_commit()}"),
        ("host", socket.gethostname()),
        ("device", settings.device),
        ("REAL_FIXTURES", str(settings.real_fixtures) if settings.real_fixtures else "not set (no real-clip bench)"),
        ("total time", duration(seconds)),
    ]


def report(gpu: GpuInfo, settings: CheckSettings, results: list[StepResult], seconds: float) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# gasm-cast GPU check, {stamp}", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in _environment(gpu, settings, seconds)]
    lines += ["", "| step | result | time |", "|---|---|---|"]
    lines += [f"| {r.step.title} | {r.summary} | {duration(r.seconds)} |" for r in results]
    for r in results:
        lines += ["", f"## {r.step.title}", "", f"`{' '.join(_shown(r.step.command))}`: {r.summary}", ""]
        shown = r.stdout.rstrip() if r.ok and not r.step.setup else ""
        if not r.ok:  # what went wrong: the end of both streams
            shown = "\n".join((r.stdout.rstrip() + "\n" + r.stderr.rstrip()).strip().splitlines()[-40:])
        if shown:
            lines += ["```text", shown, "```"]
    return "\n".join(lines) + "\n"


def _shown(command: list[str]) -> list[str]:
    """Commands as a user would type them in the project folder."""
    head = ["cli"] if command[:2] == CLI else ["python"] if command[0] == sys.executable else command[:1]
    return head + [arg.replace(str(PROJECT_ROOT) + os.sep, "") for arg in command[len(CLI) if head == ["cli"] else 1 :]]


def default_report_path() -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("gpu-check") / f"report-{socket.gethostname()}-{stamp}.md"


def run_check(settings: CheckSettings, out: Path, work_dir: Path | None = None) -> tuple[GpuInfo | None, bool]:
    """Runs every step and writes the report to `out` (whole or not at all). Returns the GPU (None: nothing was
    run) and whether every step passed."""
    gpu = detect_gpu()
    if gpu is None:
        return None, True
    # Wide, plain tables: the benches print with rich, which wraps to the terminal width it sees.
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1"}
    if settings.real_fixtures is not None:
        env["REAL_FIXTURES"] = str(settings.real_fixtures)
    started, results = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(work_dir or tmp)
        steps = plan(settings, work)
        for number, step in enumerate(steps, 1):
            log.info("gpu-check [%d/%d] %s ...", number, len(steps), step.title)
            results.append(_run(step, env))
            log.info("gpu-check [%d/%d] %s: %s in %s", number, len(steps), step.title, results[-1].summary,
                     duration(results[-1].seconds))  # fmt: skip
    atomic.write_text(out, report(gpu, settings, results, time.perf_counter() - started))
    return gpu, all(r.ok for r in results)
