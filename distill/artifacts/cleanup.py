"""`distill artifacts clean`: find and remove the unfinished state runs leave beside their artifacts.

    distill artifacts clean                      # list what could go, and its size (deletes nothing)
    distill artifacts clean --older-than 0 --yes # delete all of it

Three kinds, none of them a committed version (those are never touched):
- ``.partial-<hash>/`` under a traces name: the samples of a `distill generate` run that did not finish;
  the same command continues from them;
- ``.runs/<hash>/`` under a checkpoint name: trainer checkpoints of a `distill train` run that did not
  finish (a crashed 7B ZeRO-3 run leaves about 100 GB of optimizer state; the same command resumes), or of
  one run with --keep-run-dir;
- ``.tmp-*/``: the staging folder of a write that was killed before its rename (never usable).

Only what has not been written to for ``--older-than`` hours (default 24) is listed, so a run still going
is left alone.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from distill import artifacts

WHAT = {artifacts.PARTIAL_PREFIX: "unfinished generate run (rerun the same command to continue)",
        artifacts.STAGING_PREFIX: "staging folder of a killed write",
        artifacts.RUNS_DIR: "trainer checkpoints: unfinished train run (rerun the same command to resume) or "
                            "--keep-run-dir"}


@dataclass
class Leftover:
    path: Path
    what: str
    bytes: int
    idle_hours: float  # since anything inside was last written


def _usage(path: Path) -> tuple[int, float]:
    """(total bytes, newest modification time) of everything under ``path``."""
    total, newest = 0, path.stat().st_mtime
    for item in path.rglob("*"):
        try:
            info = item.lstat()
        except OSError:  # removed while we looked
            continue
        newest = max(newest, info.st_mtime)
        if item.is_file() and not item.is_symlink():
            total += info.st_size
    return total, newest


def _candidates(root: Path):
    for kind_dir in sorted(set(artifacts.KIND_DIRS.values())):
        base = root / kind_dir
        if not base.is_dir():
            continue
        for name_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            for entry in sorted(name_dir.iterdir()):
                if not entry.is_dir():
                    continue
                for prefix in (artifacts.PARTIAL_PREFIX, artifacts.STAGING_PREFIX):
                    if entry.name.startswith(prefix):
                        yield entry, WHAT[prefix]
                if entry.name == artifacts.RUNS_DIR:
                    for run in sorted(p for p in entry.iterdir() if p.is_dir()):
                        yield run, WHAT[artifacts.RUNS_DIR]


def find_leftovers(older_than_hours: float = 24.0, root: Path | None = None) -> list[Leftover]:
    """Unfinished state under the artifact root not written to for ``older_than_hours``."""
    now = time.time()
    found = []
    for path, what in _candidates(root or artifacts.home()):
        size, newest = _usage(path)
        idle = (now - newest) / 3600
        if idle >= older_than_hours:
            found.append(Leftover(path, what, size, idle))
    return found


def remove(leftovers: list[Leftover]) -> int:
    """Delete them (an empty `.runs/` goes too); returns the bytes freed."""
    freed = 0
    for item in leftovers:
        shutil.rmtree(item.path, ignore_errors=True)
        freed += item.bytes
        parent = item.path.parent
        if parent.name == artifacts.RUNS_DIR and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    return freed


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
