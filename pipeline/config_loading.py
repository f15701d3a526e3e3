"""Typed dataclass configs built from YAML overrides: unknown keys are errors, never silently ignored."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipeline.errors import UserError

T = TypeVar("T")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def apply_overrides(obj: T, overrides: dict[str, Any], where: str = "config") -> T:
    """Return a copy of dataclass `obj` with `overrides` (nested dicts for nested dataclasses) applied."""
    if not isinstance(overrides, dict):
        raise UserError(f"{where}: expected a mapping of keys to values, got {type(overrides).__name__}")
    types = _field_types(type(obj))
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in types:
            known = ", ".join(sorted(types))
            raise UserError(f"{where}: unknown config key '{key}' (known keys: {known})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = apply_overrides(current, value, f"{where}.{key}")
        else:
            changes[key] = _check_type(value, types[key], f"{where}.{key}")
    return dataclasses.replace(obj, **changes)


def _check_type(value: Any, expected: Any, where: str) -> Any:
    origin = typing.get_origin(expected)
    allowed = typing.get_args(expected) if origin in (typing.Union, types.UnionType) else (expected,)
    for typ in allowed:
        if typ is type(None) and value is None:
            return value
        if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if typ in (int, str, bool) and type(value) is typ:
            return value
        if typing.get_origin(typ) in (list, tuple) and isinstance(value, (list, tuple)):
            return typing.get_origin(typ)(value)
    names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
    raise UserError(f"{where}: expected {names}, got {value!r}")


def load_yaml_overrides(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that lists only the values that differ from the typed defaults."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path}: expected a mapping at the top level")
    return data


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
