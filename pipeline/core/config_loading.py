"""Typed dataclass configs: every field declares its default, help, range or choices once (`setting`); YAML
overrides and command-line options are checked against them when a config is built. Unknown keys are errors."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipeline.core.errors import UserError

T = TypeVar("T")
Choices = Iterable[Any] | Callable[[], Iterable[Any]]


def setting(
    default: Any,
    help: str,
    *,
    choices: Choices | None = None,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    check: Callable[[Any], str | None] | None = None,
    absent: str | None = None,
) -> Any:
    """A config field. `choices` may be a callable (registries loaded on first use); `low <= value <= high`
    (`<` with `low_open` / `high_open`); `check(value)` returns what was expected, or None when the value is fine."""
    return dataclasses.field(
        default=default,
        metadata={
            "help": help,
            "choices": choices,
            "low": low,
            "high": high,
            "low_open": low_open,
            "high_open": high_open,
            "check": check,
            "absent": absent,  # what a default of None means, for help texts ("none" otherwise)
        },
    )


def choices_of(field: dataclasses.Field) -> tuple[Any, ...] | None:
    choices = field.metadata.get("choices")
    if choices is None:
        return None
    return tuple(choices() if callable(choices) else choices)


def expectation(field: dataclasses.Field) -> str | None:
    """What a field accepts beyond its type, in words: 'one of a, b', '>= 1', 'in [0, 1)'."""
    meta = field.metadata
    choices = choices_of(field)
    if choices is not None:
        return "one of " + ", ".join(map(str, choices))
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        return f"in {'(' if meta.get('low_open') else '['}{low:g}, {high:g}{')' if meta.get('high_open') else ']'}"
    if low is not None:
        return f"{'>' if meta.get('low_open') else '>='} {low:g}"
    if high is not None:
        return f"{'<' if meta.get('high_open') else '<='} {high:g}"
    return None


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def checked(value: Any, field: dataclasses.Field, expected_type: Any, where: str) -> Any:
    """`value` converted to the field's type, or a UserError naming `where` and what was expected."""
    value = _check_type(value, expected_type, where)
    if value is None:
        return value
    meta = field.metadata
    choices = choices_of(field)
    low, high = meta.get("low"), meta.get("high")
    bad = (
        (choices is not None and value not in choices)
        or (low is not None and (value <= low if meta.get("low_open") else value < low))
        or (high is not None and (value >= high if meta.get("high_open") else value > high))
    )
    if bad:
        raise UserError(f"{where}: expected {expectation(field)}, got {value!r}")
    problem = meta["check"](value) if meta.get("check") else None
    if problem:
        raise UserError(f"{where}: expected {problem}, got {value!r}")
    return value


def apply_overrides(obj: T, overrides: dict[str, Any], where: str = "config") -> T:
    """Return a copy of dataclass `obj` with `overrides` (nested dicts for nested dataclasses) applied."""
    if not isinstance(overrides, dict):
        raise UserError(f"{where}: expected a mapping of keys to values, got {type(overrides).__name__}")
    hints, fields = _field_types(type(obj)), _fields(type(obj))
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise UserError(f"{where}: unknown config key '{key}' (known keys: {known})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = apply_overrides(current, value, f"{where}.{key}")
        else:
            changes[key] = checked(value, fields[key], hints[key], f"{where}.{key}")
    return validate(dataclasses.replace(obj, **changes), where)


def set_value(obj: T, path: str, value: Any, where: str) -> T:
    """A copy of `obj` with the field at dotted `path` set to `value`; errors name `where` (e.g. an option)."""
    head, _, rest = path.partition(".")
    if rest:
        return dataclasses.replace(obj, **{head: set_value(getattr(obj, head), rest, value, where)})
    return dataclasses.replace(
        obj, **{head: checked(value, _fields(type(obj))[head], _field_types(type(obj))[head], where)}
    )


def validate(obj: T, where: str = "config") -> T:
    """Check every field of `obj` (and nested configs), then its cross-field rules (a `problems()` method)."""
    hints, fields = _field_types(type(obj)), _fields(type(obj))
    for name, field in fields.items():
        value = getattr(obj, name)
        if dataclasses.is_dataclass(value):
            validate(value, f"{where}.{name}")
        else:
            checked(value, field, hints[name], f"{where}.{name}")
    for problem in getattr(obj, "problems", lambda: [])():
        raise UserError(f"{where}: {problem}")
    return obj


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
    if not path.exists():
        raise UserError(f"config file {path} does not exist")
    if path.is_dir():
        raise UserError(f"config file {path} is a folder, expected a YAML file")
    try:  # a regular file, or a pipe (`--config <(...)`, /dev/fd/N), read once
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path}: expected a mapping at the top level")
    return data


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def with_defaults(stored: Any, defaults: Any) -> Any:
    """A config as it was written (nested dicts) with every key it lacks taken from `defaults`: a setting added
    since then defaults to what the code did before it existed."""
    if not (isinstance(stored, dict) and isinstance(defaults, dict)):
        return stored
    return {**defaults, **{key: with_defaults(value, defaults.get(key)) for key, value in stored.items()}}


def leaf_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Every leaf where two nested containers differ, as 'a.b.c: old -> new', values in full."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in list(dict.fromkeys([*old, *new])):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in new:
                out.append(f"{name}: {old[key]!r} -> (absent)")
            elif key not in old:
                out.append(f"{name}: (absent) -> {new[key]!r}")
            else:
                out.extend(leaf_differences(old[key], new[key], name))
        return out
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in leaf_differences(a, b, f"{prefix}[{i}]")]
    return [] if old == new else [f"{prefix or 'value'}: {old!r} -> {new!r}"]
