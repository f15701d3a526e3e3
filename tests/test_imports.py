"""The floor plan holds: the shared core (pipeline/core) is below both halves, fusion/ imports pipeline/ and never
the reverse, and fusion's rooms import only rooms below them, so the graph between rooms has no cycle."""

import ast
from pathlib import Path

from conftest import ROOT

# Each room may import only rooms of a lower rank (its own modules aside).
RANKS = {
    "pipeline.core": 0,
    "pipeline": 1,
    "fusion.layers": 2,
    "fusion.models": 3,
    "fusion.data": 4,
    "fusion.evaluation": 5,
    "fusion.prediction": 6,
    "fusion.training": 6,
    "fusion.experiments": 7,
    "fusion.benches": 8,
    "fusion.demo": 9,
    "fusion": 9,  # the command modules at the top of fusion/: cli_*.py
}


def room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "pipeline":
        return "pipeline.core" if parts[1:2] == ["core"] else "pipeline"
    if parts[0] == "fusion":
        return f"fusion.{parts[1]}" if len(parts) > 1 and (ROOT / "fusion" / parts[1]).is_dir() else "fusion"
    return None


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_every_import_goes_down_the_floor_plan():
    wrong = []
    files = sorted([*ROOT.glob("pipeline/**/*.py"), *ROOT.glob("fusion/**/*.py")])
    assert len(files) > 100
    for path in files:
        source = room(".".join(path.relative_to(ROOT).with_suffix("").parts))
        assert source in RANKS, f"{path}: a room the floor plan does not know ({source}); rank it in RANKS"
        for module in imports(path):
            target = room(module)
            if target is not None and target != source and RANKS[target] >= RANKS[source]:
                wrong.append(f"{path.relative_to(ROOT)} ({source}) imports {module} ({target})")
    assert not wrong, "\n".join(wrong)
