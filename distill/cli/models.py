"""`distill models materialize`: the bundled SmolLM2-135M-Instruct as a Hugging Face directory."""

from pathlib import Path

import typer

from distill.models import bundled

models_app = typer.Typer(no_args_is_help=True, help="The bundled small model.")


@models_app.command("materialize")
def materialize_command(target: str = typer.Option(None, "--target", help="Directory to write (default: cache).")) -> None:
    """Write the bundled SmolLM2-135M-Instruct (dequantized Q4_1 GGUF) as a HF directory."""
    typer.echo(str(bundled.materialize(Path(target) if target else None)))
