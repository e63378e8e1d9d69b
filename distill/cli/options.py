"""Typer commands built from the stages' config dataclasses: one option per field, with its help.

    command = make_command(FilterConfig, filter.run, doc=HELP)     # then app.command("filter")(command)

Precedence: dataclass default < a recipe < YAML (``--config-file``) < ``--set key=value`` < flags. A command
whose YAML flag is ``--recipe`` (train) takes ``--config-file`` too, applied on top of the recipe.
``--print-config`` prints the resolved, validated config and runs nothing.

Old names: a config class may map old keys to fields (``FLAG_ALIASES = {"prompt_column": "problem_column"}``);
the old flag (``--prompt-column``) then names the same option. The class itself accepts the old key (an
``InitVar``), so YAML and ``--set`` take it too.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any

from distill.config import MISSING, base_type, build, field_types, load_yaml, parse_sets, to_dict


def make_command(cls, run: Callable[[Any], Any], *, doc: str | None = None,
                 yaml_flag: str = "config-file", yaml_help: str = "YAML file of defaults for these options.",
                 yaml_resolver: Callable[[str], dict[str, Any]] | None = None,
                 positional: tuple[str, ...] = ()) -> Callable:
    """A Typer-ready function whose options mirror the dataclass fields.

    Every option defaults to "unset" so that YAML values are not clobbered by flag defaults;
    the help text shows the dataclass default.
    """
    import typer

    parameters = []
    annotations: dict[str, Any] = {}
    types = field_types(cls)
    aliases: dict[str, list[str]] = {}
    for old, new in getattr(cls, "FLAG_ALIASES", {}).items():
        aliases.setdefault(new, []).append("--" + old.replace("_", "-"))
    for f in _own_fields_first(cls):
        if not f.metadata.get("cli", True):
            continue
        inner, is_list = base_type(types[f.name])
        if inner not in (str, int, float, bool):
            inner = str
        py_type = list[inner] if is_list else inner
        annotation = typing.Optional[py_type]
        default_shown = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        help_text = f.metadata.get("help", "")
        if default_shown not in (None, "", [], False) and not isinstance(default_shown, dict):
            help_text += f"  [default: {default_shown}]"
        if f.name in positional:
            info = typer.Argument(None, help=help_text, show_default=False)
        else:
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            names = [flag] if inner is not bool else [f"{flag}/--no-{flag[2:]}"]
            names += aliases.get(f.name, [])
            if f.metadata.get("short"):
                names.append(f.metadata["short"])
            info = typer.Option(None, *names, help=help_text, show_default=False)
        parameters.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info,
                                            annotation=annotation))
        annotations[f.name] = annotation
    extra = {
        "_yaml": (typing.Optional[str], typer.Option(None, f"--{yaml_flag}", help=yaml_help, show_default=False)),
        **({"_config_file": (typing.Optional[str], typer.Option(
            None, "--config-file", help=f"YAML file of options applied on top of --{yaml_flag} (flags and --set "
                                        "override it).", show_default=False))} if yaml_flag != "config-file" else {}),
        "_sets": (typing.Optional[list[str]], typer.Option(None, "--set", help="Override any config key: key=value "
                                                           "(repeatable).", show_default=False)),
        "_print_config": (bool, typer.Option(False, "--print-config", help="Print the resolved config (recipe, "
                                             "--set and flags applied, validated) as YAML and exit.")),
    }
    for name, (annotation, info) in extra.items():
        parameters.append(inspect.Parameter(name.lstrip("_") + "_arg", inspect.Parameter.KEYWORD_ONLY,
                                            default=info, annotation=annotation))
        annotations[name.lstrip("_") + "_arg"] = annotation

    def command(**kwargs):
        yaml_value = kwargs.pop("_yaml_arg", None)
        config_file = kwargs.pop("_config_file_arg", None)
        sets = kwargs.pop("_sets_arg", None)
        print_only = kwargs.pop("_print_config_arg", False)
        base: dict[str, Any] = {}
        if yaml_value:
            base = yaml_resolver(yaml_value) if yaml_resolver else load_yaml(yaml_value)
        if config_file:
            base = _overlay(base, load_yaml(config_file))
        flags = {k: v for k, v in kwargs.items() if v is not None and not (isinstance(v, (list, tuple)) and not v)}
        config = build(cls, base, parse_sets(sets), flags)
        if print_only:
            import yaml

            print(yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True, width=1000), end="")
            if callable(getattr(config, "resolved", None)):  # defaults a stage fills in when it runs
                print("# filled in at run time:\n" + yaml.safe_dump(
                    {"resolved": config.resolved()}, sort_keys=False, allow_unicode=True, width=1000), end="")
            return None
        return run(config)

    # Typer reads the signature; rename the extras so they cannot clash with fields.
    renamed = ("yaml_arg", "config_file_arg", "sets_arg", "print_config_arg")
    params = [p.replace(name="_" + p.name) if p.name in renamed else p for p in parameters]
    annotations = {("_" + k if k in renamed else k): v for k, v in annotations.items()}
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = annotations
    command.__doc__ = doc or cls.__doc__
    return command


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; mappings (e.g. ``trainer_args``) merge key by key instead of replacing each other."""
    merged = dict(base)
    for key, value in top.items():
        merged[key] = ({**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict)
                       else value)
    return merged


def _own_fields_first(cls) -> list:
    """The config's own options first in --help, then those it composes (engine, grading options)."""
    own = set(cls.__dict__.get("__annotations__", {}))
    fields = dataclasses.fields(cls)
    return [f for f in fields if f.name in own] + [f for f in fields if f.name not in own]


def click_help(doc: str) -> str:
    """Keep a docstring's indented blocks (commands, tables) as they are in --help ("\\b" stops click re-wrapping)."""
    paragraphs = doc.strip().split("\n\n")
    return "\n\n".join("\b\n" + p if any(line.startswith("    ") for line in p.splitlines()) else p
                       for p in paragraphs)
