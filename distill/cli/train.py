"""`distill train` and `distill preflight`: commands over `distill.stages.train` (see its docstring)."""

import functools
import inspect
from typing import Optional

import typer

from distill.cli.options import click_help, make_command
from distill.errors import UserError
from distill.stages import train
from distill.stages.train.recipes import BASE, resolve_recipe


def _with_base_recipe(command):
    """Without --recipe the base recipe gives the defaults."""
    @functools.wraps(command)
    def wrapper(**kwargs):
        kwargs["_yaml_arg"] = kwargs.get("_yaml_arg") or BASE
        return command(**kwargs)

    wrapper.__signature__ = command.__signature__
    return wrapper


_train_command = _with_base_recipe(make_command(
    train.TrainConfig, train.run, yaml_flag="recipe", yaml_resolver=resolve_recipe,
    yaml_help="Recipe: a name from recipes/ (qwen-1.5b, qwen-7b, qwen-32b, llama-8b, openthoughts-7b, smol-demo, "
              "...) or a YAML file; flags and --set override it.  [default: base]",
    doc="SFT a student on teacher traces with TRL (full, LoRA, QLoRA); writes a checkpoint artifact.\n\n"
        "Example: distill train --recipe qwen-7b --dataset filtered@v3 --lora --set learning_rate=1e-4"))


# ---------------------------------------------------------------------------- preflight and train --dry-run

PREFLIGHT_DOC = click_help("""Can the GPUs here (or --gpu-memory-gib ones) hold a training run, and how long will it
take?

Takes every `distill train` option (recipe, flags, --set) and prints a memory table per GPU (weights,
gradients, optimizer state, activations; LoRA / QLoRA, ZeRO sharding and CPU offload accounted for) and the
GPU-hours: for the tokens of --dataset when given, else per million tokens. Exit 2 with one error line when
the run does not fit. `distill train ... --dry-run` prints the same.

    distill preflight --recipe qwen-7b-qlora --gpu-memory-gib 24
    distill preflight --recipe qwen-7b --lora --num-gpus 1 --dataset filtered@latest""")

_PLANNING = [
    inspect.Parameter("gpu_memory_gib", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[float],
                      default=typer.Option(None, "--gpu-memory-gib", help="Plan for --num-gpus GPUs of this many GiB "
                                           "each instead of the GPUs of this machine.", show_default=False)),
    inspect.Parameter("host_memory_gib", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[float],
                      default=typer.Option(None, "--host-memory-gib", help="Plan for machines with this much RAM "
                                           "(CPU offload) instead of this one's.", show_default=False)),
]
_DRY_RUN = inspect.Parameter("dry_run", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                             default=typer.Option(False, "--dry-run", help="Print the memory and GPU-hours estimate "
                                                  "(`distill preflight`) and train nothing."))


def _dataset_given(kwargs: dict) -> bool:
    """Count the dataset's tokens only when the command line names one (the recipe's default may not exist)."""
    sets = kwargs.get("_sets_arg") or []
    return bool(kwargs.get("dataset")) or any(s.partition("=")[0].strip().replace("-", "_") == "dataset" for s in sets)


def _preflight(kwargs: dict, gpu_memory_gib: float | None = None, host_memory_gib: float | None = None) -> None:
    """Resolve the train options as `distill train` does, then print the estimate (UserError when it does not fit)."""
    from distill.stages.train import preflight

    count_dataset = _dataset_given(kwargs)

    def estimate(cfg) -> None:
        result = preflight.report(cfg, count_dataset=count_dataset, gpu_memory_gib=gpu_memory_gib,
                                  host_memory_gib=host_memory_gib)
        typer.echo(result.table)
        if not result.fits:
            raise UserError(result.verdict)
        typer.echo(f"preflight: {result.verdict}")

    resolved = _with_base_recipe(make_command(train.TrainConfig, estimate, yaml_flag="recipe",
                                              yaml_resolver=resolve_recipe))
    resolved(**kwargs)


def _with_parameters(function, template, extra: list[inspect.Parameter], doc: str):
    """`function` with the options of `template` (a make_command command) plus `extra`, for Typer."""
    signature = inspect.signature(template)
    function.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *extra])
    function.__annotations__ = {**template.__annotations__, **{p.name: p.annotation for p in extra}}
    function.__doc__ = doc
    return function


def _train_or_dry_run(**kwargs):
    if kwargs.pop("dry_run", False):
        return _preflight(kwargs)
    return _train_command(**kwargs)


def _preflight_command(**kwargs) -> None:
    planning = {name: kwargs.pop(name, None) for name in ("gpu_memory_gib", "host_memory_gib")}
    _preflight(kwargs, **planning)


command = _with_parameters(_train_or_dry_run, _train_command, [_DRY_RUN], _train_command.__doc__)
preflight_command = _with_parameters(_preflight_command, _train_command, _PLANNING, PREFLIGHT_DOC)
