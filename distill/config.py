"""Typed config dataclasses with help text, YAML defaults and overrides (no CLI code here).

Each stage declares a dataclass whose fields carry their help text (``option(...)``). The same
class gives the ``--help`` of its command (built by ``distill.cli.options``), the YAML schema
(unknown keys are an error) and the manifest's resolved config. Precedence: dataclass default < YAML (``--config-file`` / a recipe) <
``--set key=value`` < explicit flags. ``--print-config`` prints the result and runs nothing.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distill.errors import UserError

MISSING = dataclasses.MISSING


def option(default: Any = MISSING, help: str = "", *, flag: str | None = None, short: str | None = None,
           cli: bool = True, default_factory: Callable | None = None) -> Any:
    """A config field with help text; ``flag`` renames the CLI option, ``cli=False`` hides it."""
    metadata = {"help": help, "flag": flag, "short": short, "cli": cli}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def base_type(annotation: Any) -> tuple[Any, bool]:
    """(inner type, is_list) with Optional[...] unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return base_type(args[0])
    if origin in (list, tuple):
        inner = typing.get_args(annotation)[0] if typing.get_args(annotation) else str
        return inner, True
    return annotation, False


def coerce(cls, key: str, value: Any) -> Any:
    """Convert a YAML / --set value to the field's declared type, with a clear error."""
    types = field_types(cls)
    if key not in types:
        known = ", ".join(f.name for f in dataclasses.fields(cls))
        raise UserError(f"unknown config key {key!r} for {cls.__name__} (known: {known})")
    inner, is_list = base_type(types[key])
    if value is None:
        return None
    try:
        if is_list:
            items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v]
            return [_coerce_scalar(inner, v) for v in items]
        return _coerce_scalar(inner, value)
    except (TypeError, ValueError):
        raise UserError(f"config key {key!r} expects {getattr(inner, '__name__', inner)}, got {value!r}") from None


def _coerce_scalar(inner: Any, value: Any) -> Any:
    if inner is bool:
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if inner is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    if inner is float:
        return float(value)
    if inner is str:
        return str(value)
    if inner is dict or typing.get_origin(inner) is dict:
        if not isinstance(value, dict):
            raise ValueError(value)
        return value
    return value


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of key: value")
    return data


def parse_sets(pairs: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs; values are parsed as YAML scalars (numbers, booleans, lists)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {pair!r}")
        try:
            out[key.strip().replace("-", "_")] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            out[key.strip().replace("-", "_")] = raw
    return out


def build(cls, *layers: dict[str, Any]):
    """Instantiate ``cls`` from defaults overlaid with each mapping in turn (later wins)."""
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            key = key.replace("-", "_")
            values[key] = coerce(cls, key, value)
    config = cls(**values)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


def to_dict(config) -> dict[str, Any]:
    return dataclasses.asdict(config)
