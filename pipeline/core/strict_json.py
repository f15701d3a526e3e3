"""JSON that every parser accepts: NaN and Infinity (which Python's json writes by default) become null."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError


def finite(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None, through dicts, lists and tuples."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(value) for value in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    return json.dumps(finite(obj), allow_nan=False, **kwargs)


def read(path: str | Path, what: str) -> Any:
    """A JSON file the project wrote, or one line naming it (exit status 2) when it is missing or not whole."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {path} is not valid JSON (cut short?): {exc}") from None
