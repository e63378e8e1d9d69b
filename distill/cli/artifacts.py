"""`distill artifacts list|show REF|clean` and `distill lineage REF`.

    distill artifacts list [--kind traces]
    distill artifacts show traces@latest      # manifest + content-hash verification
    distill artifacts clean [--older-than 24] [--yes]   # unfinished runs' leftovers (see distill/cleanup.py)
    distill lineage checkpoint-name@v2        # the artifact and, recursively, its parents
"""

from __future__ import annotations

import json
from typing import Optional

import typer

from distill import artifacts

artifacts_app = typer.Typer(no_args_is_help=True, help="Browse versioned artifacts and their manifests.")


@artifacts_app.command("list")
def list_command(kind: Optional[str] = typer.Option(None, help="Only this kind (traces, filtered, "
                                                                "checkpoint, eval, imported).")) -> None:
    """List every artifact version under the artifact root."""
    from rich.console import Console
    from rich.table import Table

    found = [a for a in artifacts.list_artifacts() if kind is None or a.kind == kind]
    if not found:
        typer.echo(f"no artifacts under {artifacts.home()}")
        return
    table = Table("reference", "kind", "created", "rows / files", "parents")
    for artifact in found:
        manifest = artifact.manifest
        if manifest.get("corrupted"):
            table.add_row(artifact.ref, "?", "", "", "corrupted manifest")
            continue
        counts = manifest.get("counts") or {}
        table.add_row(artifact.ref, artifact.kind, str(manifest.get("created_at", ""))[:19],
                      ", ".join(f"{k}={v}" for k, v in counts.items()),
                      ", ".join(p["ref"] for p in manifest.get("parents") or []))
    Console(width=160).print(table)


@artifacts_app.command("show")
def show_command(ref: str = typer.Argument(..., help="NAME, NAME@latest, NAME@v3 or a path."),
                 no_verify: bool = typer.Option(False, "--no-verify", help="Skip recomputing the content hash.")) -> None:
    """Print an artifact's manifest and verify its content hash (exit 1 on mismatch)."""
    artifact = artifacts.resolve(ref)
    typer.echo(f"# {artifact.ref}  ({artifact.kind})  {artifact.path}")
    typer.echo(json.dumps(artifact.manifest, indent=2))
    if not no_verify:
        ok, message = artifacts.verify(artifact)
        typer.echo(("ok: " if ok else "error: ") + message, err=not ok)
        if not ok:
            raise typer.Exit(1)


@artifacts_app.command("clean")
def clean_command(older_than: float = typer.Option(24.0, "--older-than", help="Only leftovers not written to for "
                                                   "this many hours (a run still going is left alone)."),
                  yes: bool = typer.Option(False, "--yes", help="Delete them (without it: only list).")) -> None:
    """List (or, with --yes, delete) unfinished runs' state: generate shards, trainer checkpoints, staging
    folders of killed writes. Committed versions are never touched."""
    from distill.artifacts import cleanup
    from distill.errors import UserError

    if older_than < 0:
        raise UserError(f"--older-than must be >= 0 hours, got {older_than}")
    leftovers = cleanup.find_leftovers(older_than)
    if not leftovers:
        typer.echo(f"nothing to clean under {artifacts.home()} (idle for {older_than:g} h or more)")
        return
    root = artifacts.home()
    for item in leftovers:
        typer.echo(f"{cleanup.human(item.bytes):>10}  idle {item.idle_hours:6.1f} h  {item.path.relative_to(root)}  "
                   f"{item.what}")
    total = cleanup.human(sum(item.bytes for item in leftovers))
    if not yes:
        typer.echo(f"{len(leftovers)} leftover(s), {total}: pass --yes to delete them")
        return
    typer.echo(f"deleted {len(leftovers)} leftover(s), freed {cleanup.human(cleanup.remove(leftovers))}")


def lineage_command(ref: str = typer.Argument(..., help="The artifact whose ancestry to print.")) -> None:
    """Print the chain of artifacts (teacher, data, checkpoints) that produced REF."""
    artifact = artifacts.resolve(ref)
    for line in artifacts.lineage(artifact):
        typer.echo(line)
