"""`distill artifacts list|show REF|head REF|export REF OUT|clean` and `distill lineage REF`.

    distill artifacts list [--kind traces]
    distill artifacts show traces@latest      # manifest + content-hash verification
    distill artifacts show traces@latest --summary      # a short summary instead of the manifest
    distill artifacts head filtered@latest --split rejected --where reject_reason=format -n 5 [--columns a,b]
    distill artifacts export filtered@latest rejected.parquet --split rejected [--force]   # or .jsonl
    distill artifacts clean [--older-than 24] [--yes]   # unfinished runs' leftovers (see distill/cleanup.py)
    distill lineage checkpoint-name@v2        # the artifact and, recursively, its parents
"""

from __future__ import annotations

import json
from typing import Optional

import typer

from distill import artifacts

artifacts_app = typer.Typer(no_args_is_help=True, help="Browse versioned artifacts: manifests, summaries, rows.")


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
                 no_verify: bool = typer.Option(False, "--no-verify", help="Skip recomputing the hashes (content, "
                                                "other files, manifest fields)."),
                 summary: bool = typer.Option(False, "--summary", help="A short summary (rows per split, parents, "
                                              "key config, funnel / training / pass@1) instead of the manifest.")
                 ) -> None:
    """Print an artifact's manifest (or, with --summary, a short summary) and verify its hashes: content,
    other files, manifest fields (exit 1 on mismatch)."""
    from distill.artifacts import integrity

    artifact = artifacts.resolve(ref, verify=False)  # shown even when damaged: the check below says how
    if summary:
        _print_summary(artifact)
    else:
        typer.echo(f"# {artifact.ref}  ({artifact.kind})  {artifact.path}")
        # manifests written before URL / token redaction may hold secrets: never print them
        typer.echo(json.dumps(integrity.redact_strings(artifact.manifest), indent=2))
    if not no_verify and integrity.enabled():
        ok, message = artifacts.verify(artifact)
        typer.echo(("ok: " if ok else "error: ") + message, err=not ok)
        if not ok:
            raise typer.Exit(1)


def _print_summary(artifact) -> None:
    from distill.artifacts import summary

    entries = summary.summary(artifact)
    width = max(len(label) for label, _ in entries)
    typer.echo(f"{artifact.ref}  ({artifact.kind})")
    for label, lines in entries:
        for i, line in enumerate(lines):
            typer.echo(f"  {(label if i == 0 else '').ljust(width)}  {line}")


@artifacts_app.command("head")
def head_command(ref: str = typer.Argument(..., help="NAME, NAME@latest, NAME@v3 or a path."),
                 split: Optional[str] = typer.Option(None, "--split", help="Split to read (default: train, or "
                                                     "the only one), e.g. rejected."),
                 where: Optional[list[str]] = typer.Option(None, "--where", help="Only rows whose COLUMN=VALUE, "
                                                           "compared as text (repeatable: all must match; null, "
                                                           "true, false as written)."),
                 n: int = typer.Option(5, "-n", "--rows", help="How many rows to print."),
                 columns: Optional[str] = typer.Option(None, "--columns", help="Only these columns, e.g. "
                                                       "problem,reject_reason."),
                 full: bool = typer.Option(False, "--full", help="Print long values whole (default: cut)."),
                 max_chars: int = typer.Option(300, "--max-chars", help="Where long values are cut.")) -> None:
    """Print the first rows of an artifact's dataset, one block per row; long values are cut, saying how
    long they are (--full prints them whole)."""
    from distill.artifacts import browse
    from distill.errors import UserError

    if max_chars < 1:
        raise UserError(f"--max-chars must be at least 1, got {max_chars}")
    artifact = artifacts.resolve(ref)
    result = browse.head(artifact, split=split, where=where or [], n=n, columns=columns)
    where_text = " and ".join(f"{c}={v}" for c, v in result.where)
    place = f"{result.ref} " + (f"split {result.split}" if result.split else "(no splits)")
    if result.where:
        typer.echo(f"{place}: {len(result.rows)} of {result.matched} rows where {where_text} "
                   f"({result.total} rows in all)")
        for column, counts in result.values.items():
            typer.echo(f"  values of {column} here: " + ", ".join(f"{v} ({k})" for v, k in counts))
    else:
        typer.echo(f"{place}: first {len(result.rows)} of {result.total} rows")
    width = min(max((len(c) for c in result.columns), default=0), 24)
    for index, row in result.rows:
        typer.echo(f"\n--- row {index} ---")
        for column in result.columns:
            text, length = browse.truncate(browse.cell_text(row.get(column)), None if full else max_chars)
            lines = text.split("\n")
            if length > len(text):
                lines.append(f"… cut at {len(text):,} of {length:,} chars (--full prints them all)")
            typer.echo(f"{column.ljust(width)}  {lines[0]}")
            for line in lines[1:]:
                typer.echo(f"{''.ljust(width)}  {line}")


@artifacts_app.command("export")
def export_command(ref: str = typer.Argument(..., help="NAME, NAME@latest, NAME@v3 or a path."),
                   out: str = typer.Argument(..., help="Output file: .jsonl or .parquet."),
                   split: Optional[str] = typer.Option(None, "--split", help="Split to write (default: train, or "
                                                       "the only one)."),
                   force: bool = typer.Option(False, "--force", help="Overwrite OUT if it exists.")) -> None:
    """Write one split of an artifact's dataset to a .jsonl or .parquet file (atomically: a failure leaves
    no partial file)."""
    from distill.artifacts import browse

    artifact = artifacts.resolve(ref)
    written_split, rows = browse.export(artifact, out, split=split, force=force)
    what = f"{artifact.ref}" + (f" split {written_split}" if written_split else "")
    typer.echo(f"wrote {rows} rows of {what} to {out}")


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
