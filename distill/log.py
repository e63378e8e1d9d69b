"""One output channel for the stages: status lines, progress bars and tables go through here.

    log.say("loaded 200 prompts")                       # a status line on stderr (rank 0 only)
    with log.progress(unit="prompts", fields={"samples": "{} samples"}) as bar:
        task = bar.add_task("generating", total=200, samples=0)
        bar.update(task, advance=1, samples=4)
    log.table("distill filter -> f@v1", ["check", "dropped"], rows, footer="kept 10 of 20 rows")

A command's result (its table, the reference it wrote) is its stdout; everything else goes through here.
Stages never import a terminal library: the CLI installs a rich renderer at start-up (``set_renderer``);
without it (a notebook, a test calling ``run()``) progress is silent and tables are plain text. Under
``accelerate launch`` only rank 0 speaks. Status lines use ``logging`` (logger ``distill``), so a caller
can route or silence them like any other library's.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

logger = logging.getLogger("distill")


def is_main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest's capture, a redirected stream)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")
        sys.stderr.flush()


def _ensure_handler() -> None:
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def say(message: str) -> None:
    """A status line on stderr, from rank 0 only."""
    if is_main_rank():
        _ensure_handler()
        logger.info(message)


def warn(message: str) -> None:
    """``warning: ...`` on stderr, from rank 0 only."""
    if is_main_rank():
        _ensure_handler()
        logger.warning(f"warning: {message}")


class _SilentProgress:
    """The progress bar outside the CLI: counts, shows nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, description: str, total: int | None = None, **fields: Any) -> int:
        return 0

    def advance(self, task: int, amount: float = 1) -> None:
        return None

    def update(self, task: int, **changes: Any) -> None:
        return None


class PlainRenderer:
    """Progress: silent. Tables: aligned plain text on stdout."""

    def progress(self, *, unit: str = "", fields: dict[str, str] | None = None, transient: bool = False,
                 enabled: bool = True):
        return _SilentProgress()

    def table(self, title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], footer: str | None = None,
              align_left: int = 1) -> None:
        rows = [[str(cell) for cell in row] for row in rows]
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

        def line(cells):
            return "  ".join(c.ljust(w) if i < align_left else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        print(title)
        print(line(headers))
        for row in rows:
            print(line(row))
        if footer:
            print(footer)


_renderer: Any = PlainRenderer()


def set_renderer(renderer) -> None:
    """Install how progress bars and tables are drawn (the CLI's rich renderer)."""
    global _renderer
    _renderer = renderer


def progress(*, unit: str = "", fields: dict[str, str] | None = None, transient: bool = False, enabled: bool = True):
    """A progress context (``add_task``, ``advance``, ``update``); ``fields``: extra per-task counters shown
    as ``format.format(value)``; silent on ranks other than 0 and when not ``enabled``."""
    if not (enabled and is_main_rank()):
        return _SilentProgress()
    return _renderer.progress(unit=unit, fields=fields, transient=transient, enabled=enabled)


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], footer: str | None = None,
          align_left: int = 1) -> None:
    """A table on stdout (the first ``align_left`` columns left-aligned, the rest right-aligned)."""
    if is_main_rank():
        _renderer.table(title, headers, rows, footer, align_left)
