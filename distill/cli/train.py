"""`distill train` and `distill preflight`: commands over `distill.stages.train` (see its docstring)."""

import functools

import typer

from distill.cli.options import make_command
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


command = _with_base_recipe(make_command(
    train.TrainConfig, train.run, yaml_flag="recipe", yaml_resolver=resolve_recipe,
    yaml_help="Recipe: a name from recipes/ (qwen-1.5b, qwen-7b, qwen-32b, llama-8b, openthoughts-7b, smol-demo, "
              "...) or a YAML file; flags and --set override it.  [default: base]",
    doc="SFT a student on teacher traces with TRL (full, LoRA, QLoRA); writes a checkpoint artifact.\n\n"
        "Example: distill train --recipe qwen-7b --dataset filtered@v3 --lora --set learning_rate=1e-4"))


def preflight_command(recipe: str = typer.Option(..., "--recipe", help="Recipe name (recipes/NAME.yaml) or a YAML "
                                                 "file.")) -> None:
    """Can the GPUs here hold a training recipe? Prints a memory and GPU-hours estimate; exit 2 when they cannot."""
    from distill.stages.train import preflight

    ok, message = preflight.run(recipe)
    if not ok:
        raise UserError(message)
    typer.echo(f"preflight: {message}")
