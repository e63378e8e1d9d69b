"""The CLI's renderer for `distill.log`: rich progress bars (on stderr) and tables (on stdout)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class RichRenderer:
    def progress(self, *, unit: str = "", fields: dict[str, str] | None = None, transient: bool = False,
                 enabled: bool = True):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
        if unit:
            columns.append(TextColumn(unit))
        for name, fmt in (fields or {}).items():  # "{:.0f} tok/s" -> "{task.fields[tps]:.0f} tok/s"
            columns.append(TextColumn(fmt.replace("{", "{task.fields[" + name + "]", 1)))
        if fields:
            columns += [TimeElapsedColumn(), TextColumn("ETA")]
        columns.append(TimeRemainingColumn())
        import sys

        # piped or logged (not a terminal): rich would assume 80 columns and cut the bar's counters off
        # ("40/… prompts ... 0:03… ETA 0:00…"); a wide line keeps them whole
        width = None if sys.stderr.isatty() else 160
        return Progress(*columns, console=Console(stderr=True, width=width), transient=transient,
                        disable=not enabled)

    def table(self, title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], footer: str | None = None,
              align_left: int = 1) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        # escape: text is data, not markup ("[incorrect 3]" or a path with brackets must print as it is)
        table = Table(title=escape(title))
        for i, header in enumerate(headers):
            table.add_column(escape(str(header)), justify="left" if i < align_left else "right")
        for row in rows:
            table.add_row(*[escape(str(cell)) for cell in row])
        console = Console()
        console.print(table)
        if footer:
            console.print(escape(footer))
