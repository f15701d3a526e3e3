"""Command-line options that set config fields: type, help, choices and default come from the dataclass field
(`setting`), so no help text restates a default and one table maps each option to its field."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any

import click

from pipeline.core.config_loading import choices_of, expectation, set_value


class LazyChoice(click.Choice):
    """A Choice whose values come from a registry imported only when a command runs or prints its help."""

    def __init__(self, load: Callable[[], Any]):
        self.load = load
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[Any, ...]:  # type: ignore[override]
        return tuple(str(c) for c in self.load())


def _field_at(root: type, path: str) -> tuple[dataclasses.Field, Any, Any]:
    """(field, its type, its default) for dotted `path` below dataclass `root`."""
    cls, default_obj = root, root()
    *parents, leaf = path.split(".")
    for name in parents:
        default_obj = getattr(default_obj, name)
        cls = type(default_obj)
    field = {f.name: f for f in dataclasses.fields(cls)}[leaf]
    return field, typing.get_type_hints(cls)[leaf], getattr(default_obj, leaf)


def _click_type(field: dataclasses.Field, typ: Any) -> Any:
    if field.metadata.get("choices") is not None:
        return LazyChoice(lambda: choices_of(field))
    base = [t for t in typing.get_args(typ) if t is not type(None)] or [typ]
    return {int: click.INT, float: click.FLOAT, str: click.STRING, bool: click.BOOL}.get(base[0], click.STRING)


class ConfigOptions:
    """`{"--batch-size": "run.batch_size", ...}` for a config dataclass: decorates a command with those options
    and applies the values given (options left out keep the config's value)."""

    def __init__(self, root: type, options: dict[str, str], envvars: dict[str, str] | None = None):
        self.root, self.options, self.envvars = root, options, envvars or {}

    @staticmethod
    def param(flag: str) -> str:
        return flag.lstrip("-").replace("-", "_")

    def __call__(self, command: Callable) -> Callable:
        for flag, path in reversed(self.options.items()):
            field, typ, default = _field_at(self.root, path)
            accepts = expectation(field) if field.metadata.get("choices") is None else None
            shown = (field.metadata.get("absent") or "none") if default is None else default
            help_text = f"{field.metadata['help']}{f' ({accepts})' if accepts else ''}  [default: {shown}]"
            if typ is bool:
                option = click.option(flag, self.param(flag), is_flag=True, default=None, help=help_text)
            else:
                option = click.option(
                    flag, self.param(flag), type=_click_type(field, typ), envvar=self.envvars.get(flag), help=help_text
                )
            command = option(command)
        return command

    def apply(self, cfg: Any, values: dict[str, Any]) -> Any:
        """`cfg` with every option that was given (not None) set; pops those options from `values`."""
        for flag, path in self.options.items():
            value = values.pop(self.param(flag), None)
            if value is not None:
                cfg = set_value(cfg, path, value, flag)
        return cfg
