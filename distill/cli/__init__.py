"""The `distill` command line: a thin Typer app over the stage modules.

    distill generate --teacher M        teacher traces          -> data/traces/vNNNN
    distill filter                      keep well-formed, correct traces -> data/filtered/vNNNN
    distill train --recipe qwen-7b      SFT the student          -> checkpoints/NAME/vNNNN
    distill eval --model REF            score a model            -> evals/NAME/vNNNN
    distill import SOURCE               bring in a published trace dataset -> data/NAME/vNNNN
    distill artifacts list|show REF     browse versions and manifests
    distill lineage REF                 the chain of artifacts that made REF
    distill models materialize          the bundled SmolLM2-135M as a Hugging Face directory
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from distill import models
from distill.cli import artifacts as artifacts_cli
from distill.environment import package_version
from distill.errors import UserError
from distill.stages import eval as evaluate
from distill.stages import filter as filter_stage
from distill.stages import generate, train
from distill.stages import imports as importers

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Distill a reasoning teacher into a small student, reproducibly.")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"distill {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version_callback, is_eager=True,
                                           help="Print the version and exit."),
    home: Optional[str] = typer.Option(None, "--home", help="Artifact root (default $DISTILL_HOME or ./artifacts)."),
) -> None:
    """Distill a reasoning teacher into a small student, reproducibly."""
    if home:
        os.environ["DISTILL_HOME"] = home


app.command("generate", help=(generate.command.__doc__ or "").strip())(generate.command)
app.command("filter", help=(filter_stage.command.__doc__ or "").strip())(filter_stage.command)
app.command("train", help=(train.command.__doc__ or "").strip())(train.command)
app.command("eval", help=(evaluate.command.__doc__ or "").strip())(evaluate.command)
app.command("import", help=(importers.command.__doc__ or "").strip())(importers.command)
app.add_typer(artifacts_cli.artifacts_app, name="artifacts")
app.command("lineage")(artifacts_cli.lineage_command)
app.add_typer(models.models_app, name="models")


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app(args=argv, prog_name="distill", standalone_mode=True)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
