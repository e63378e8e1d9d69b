"""Typed config dataclasses with help text, YAML defaults and overrides (no CLI code here).

Each stage declares a dataclass whose fields carry their help text (``option(...)``). The same
class gives the ``--help`` of its command (built by ``distill.cli.options``), the YAML schema
(unknown keys are an error) and the manifest's resolved config. Precedence: dataclass default < YAML (``--config-file`` / a recipe) <
``--set key=value`` < explicit flags. ``--print-config`` prints the result and runs nothing.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distill.errors import UserError

MISSING = dataclasses.MISSING
# Every int option fits a signed 64-bit integer (numpy, torch, vLLM and the OS take no more).
MAX_INT = 2**63 - 1
# Longest number we convert: Python refuses int/str conversions over 4,300 digits deep inside, and no
# option needs more than a few dozen characters.
MAX_NUMBER_CHARS = 100
# The longest wall-clock limit any timeout option accepts (a day); more is a typo, and the OS's own
# timers (select, alarm) overflow on huge values.
MAX_SECONDS = 86_400.0
# Most samples per prompt (generate -n, eval --n, --pass-at): every sample of a prompt is held in memory
# together, and no recipe needs more (for more data, use more prompts).
MAX_SAMPLES = 10_000


def option(default: Any = MISSING, help: str = "", *, flag: str | None = None, short: str | None = None,
           cli: bool = True, default_factory: Callable | None = None, allow_inf: bool = False) -> Any:
    """A config field with help text; ``flag`` renames the CLI option, ``cli=False`` hides it.

    Float values must be finite (nan is always refused; ``allow_inf=True`` lets a field take +/-inf).
    """
    metadata = {"help": help, "flag": flag, "short": short, "cli": cli, "allow_inf": allow_inf}
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


def flag_name(cls, key: str) -> tuple[str, str]:
    """How a message names config key ``key`` of ``cls``: (its flag, " (config key 'k')" when the names differ)."""
    f = next((f for f in dataclasses.fields(cls) if f.name == key), None)
    if f is None or not f.metadata.get("cli", True):
        return f"config key {key!r}", ""
    flag = f.metadata.get("flag") or "--" + key.replace("_", "-")
    note = f" (config key {key!r})" if flag.lstrip("-").replace("-", "_") != key else ""
    return (f"{f.metadata['short']}/{flag}" if f.metadata.get("short") else flag), note


def _shown(value: Any) -> str:
    """``repr(value)`` cut to one short line (a 5,000-digit number must not fill the terminal, nor raise)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value).bit_length() > 200:
        return f"a {int(abs(value).bit_length() * math.log10(2)) + 1}-digit number"
    try:
        text = repr(value)
    except ValueError:  # holds an int over Python's 4,300-digit conversion limit
        return "a value too long to show"
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


class _NotANumber(ValueError):
    """A number the option cannot take: not finite, or too large (the message says which)."""


def coerce(cls, key: str, value: Any) -> Any:
    """Convert a YAML / --set / flag value to the field's declared type, with a clear error.

    Numbers are checked here, where they enter: a float must be finite (unless its field says
    ``allow_inf``; nan never), an int must fit in 64 bits, and no number may be longer than
    ``MAX_NUMBER_CHARS`` characters.
    """
    types = field_types(cls)
    if key not in types:
        import difflib

        names = [f.name for f in dataclasses.fields(cls)]
        close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(f"unknown config key {_shown(key)} for {cls.__name__}: {hint}(known: {', '.join(names)})")
    inner, is_list = base_type(types[key])
    if value is None:
        return None
    allow_inf = next((f.metadata.get("allow_inf", False) for f in dataclasses.fields(cls) if f.name == key), False)
    try:
        if is_list:
            items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v]
            return [_coerce_scalar(inner, v, allow_inf) for v in items]
        return _coerce_scalar(inner, value, allow_inf)
    except _NotANumber as exc:
        flag, note = flag_name(cls, key)
        raise UserError(f"{flag} {exc}{note}") from None
    except (TypeError, ValueError, OverflowError):
        flag, note = flag_name(cls, key)
        raise UserError(f"{flag} expects {getattr(inner, '__name__', inner)}, got {_shown(value)}{note}") from None


def _coerce_scalar(inner: Any, value: Any, allow_inf: bool = False) -> Any:
    if inner is bool:
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if inner in (int, float):
        if isinstance(value, bool):  # YAML `yes` is not a number
            raise ValueError(value)
        if isinstance(value, str):
            value = value.strip()
            if len(value) > MAX_NUMBER_CHARS:
                raise _NotANumber(f"is too long: {len(value)} characters (a number has at most {MAX_NUMBER_CHARS})")
    if inner is int:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _NotANumber(f"must be a finite number, got {value}")
            if not value.is_integer():
                raise ValueError(value)
        number = int(value)
        if abs(number) > MAX_INT:
            raise _NotANumber(f"is too large: {_shown(number)}; at most {MAX_INT}")
        return number
    if inner is float:
        try:
            number = float(value)
        except OverflowError:  # an int beyond float's range
            raise _NotANumber(f"is too large: {_shown(value)}") from None
        if math.isnan(number) or (math.isinf(number) and not allow_inf):
            raise _NotANumber(f"must be a finite number, got {value if isinstance(value, str) else number}")
        return number
    if inner is str:
        return str(value)
    if inner is dict or typing.get_origin(inner) is dict:
        if not isinstance(value, dict):
            raise ValueError(value)
        return value
    return value


_LOADER = None


def _yaml_load(text: str) -> Any:
    """``yaml.safe_load``, except that an int too long for Python to convert (over 4,300 digits) stays
    text, so that ``coerce`` names the option it was meant for instead of YAML failing deep inside."""
    global _LOADER
    import yaml

    if _LOADER is None:
        class Loader(yaml.SafeLoader):
            pass

        def int_or_text(loader, node):
            try:
                return yaml.SafeLoader.construct_yaml_int(loader, node)
            except ValueError:
                return loader.construct_scalar(node)

        Loader.add_constructor("tag:yaml.org,2002:int", int_or_text)
        _LOADER = Loader
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a SafeLoader subclass


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping of key: value in a YAML file; a missing, unreadable, binary or non-mapping file is a UserError."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not a UTF-8 text file: it must hold a YAML mapping of "
                        "key: value") from None
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = _yaml_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except (ValueError, OverflowError, RecursionError) as exc:  # a bad date (2024-13-45), deep nesting
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"config file {path} holds a value YAML cannot read: "
                        f"{reason if len(reason) <= 80 else reason[:80] + '...'}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of key: value, not a {type(data).__name__}")
    return data


def parse_sets(pairs: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs; values are parsed as YAML scalars (numbers, booleans, lists)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {_shown(pair)}")
        try:
            out[key.strip().replace("-", "_")] = _yaml_load(raw) if raw != "" else ""
        except (yaml.YAMLError, ValueError, OverflowError, RecursionError):  # kept as text; coerce() judges it
            out[key.strip().replace("-", "_")] = raw
    return out


PASSTHROUGH_PREFIX, PASSTHROUGH_FIELD = "trainer.", "trainer_args"


def build(cls, *layers: dict[str, Any]):
    """Instantiate ``cls`` from defaults overlaid with each mapping in turn (later wins)."""
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            key = str(key).replace("-", "_")
            if key.startswith(PASSTHROUGH_PREFIX) and PASSTHROUGH_FIELD in {f.name for f in dataclasses.fields(cls)}:
                # `trainer.KEY=VALUE`: a field of the trainer's own config, checked against it where it is built
                values.setdefault(PASSTHROUGH_FIELD, []).append(f"{key[len(PASSTHROUGH_PREFIX):]}={value}")
                continue
            values[key] = coerce(cls, key, value)
    config = cls(**values)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


def to_dict(config) -> dict[str, Any]:
    return dataclasses.asdict(config)
