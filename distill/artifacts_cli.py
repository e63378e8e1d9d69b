"""`distill artifacts list|show REF` and `distill lineage REF`.

    distill artifacts list [--kind traces]
    distill artifacts show traces@latest      # manifest + content-hash verification
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


def lineage_command(ref: str = typer.Argument(..., help="The artifact whose ancestry to print.")) -> None:
    """Print the chain of artifacts (teacher, data, checkpoints) that produced REF."""
    artifact = artifacts.resolve(ref)
    for line in artifacts.lineage(artifact):
        typer.echo(line)
