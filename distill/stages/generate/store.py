"""Work in progress of `distill generate`: finished samples on disk as they complete, resumable.

    HOME/data/NAME/.partial-<config hash>/
        meta.json                      what the hash covers (for people; the hash decides)
        part-<shard>-<run>.jsonl       one line per finished sample; each run writes its own files
        verdicts-<shard>-<run>.jsonl   --until-verified: one line per graded sample ({id, sample_index, verified})
        run-<run>.json                 each run's engine time, tokens and seed (rewritten as it goes)
        done-<i>of<N>.json             shard i of N has nothing left to generate
        merge.lock                     held (flock) by the process that builds the artifact

A line is written and flushed the moment its sample is handed over, so a killed process (even
``kill -9``) loses only samples still being decoded; ``fsync`` runs at least every second, which
covers a machine crash too. A torn last line (killed mid-write) is skipped when reading. Samples are
keyed by (id, sample index); reading keeps the first copy of a key, so two processes that overlap
(a shard started twice) cannot put a sample twice into the artifact.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FSYNC_EVERY_S = 1.0


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


class ShardWriter:
    """Appends sample records to one jsonl file: flushed per record, fsynced at least every second."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "a", encoding="utf-8")
        self._last_sync = time.monotonic()
        self.written = 0

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()  # in the OS now: survives the death of this process
        self.written += 1
        if time.monotonic() - self._last_sync >= FSYNC_EVERY_S:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._file.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


class PartialStore:
    """The partial directory of one generation config."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.is_dir()

    def create(self, meta: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / "meta.json").exists():
            _write_json(self.path / "meta.json", meta)

    # ------------------------------------------------------------------ samples

    def part_files(self) -> list[Path]:
        return sorted(self.path.glob("part-*.jsonl")) if self.exists() else []

    def records(self) -> Iterator[dict[str, Any]]:
        """Every sample record once (first copy of each (id, sample_index)), in file order."""
        seen: set[tuple[str, int]] = set()
        for part in self.part_files():
            with open(part, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                        key = (record["id"], int(record["sample_index"]))
                    except (ValueError, KeyError, TypeError):
                        continue  # a line torn by a kill mid-write
                    if key not in seen:
                        seen.add(key)
                        yield record

    def done_keys(self) -> set[tuple[str, int]]:
        keys: set[tuple[str, int]] = set()
        for part in self.part_files():
            with open(part, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                        keys.add((record["id"], int(record["sample_index"])))
                    except (ValueError, KeyError, TypeError):
                        continue
        return keys

    def writer(self, shard_label: str, run_id: str) -> ShardWriter:
        return ShardWriter(self.path / f"part-{shard_label}-{run_id}.jsonl")

    # ------------------------------------------------------------------ verdicts (--until-verified)

    def verdict_writer(self, shard_label: str, run_id: str) -> ShardWriter:
        return ShardWriter(self.path / f"verdicts-{shard_label}-{run_id}.jsonl")

    def verdicts(self) -> dict[tuple[str, int], bool]:
        """Whether each graded sample verified (the first verdict of a key: the one its run decided on)."""
        found: dict[tuple[str, int], bool] = {}
        for path in sorted(self.path.glob("verdicts-*.jsonl")) if self.exists() else []:
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                        key, verified = (record["id"], int(record["sample_index"])), bool(record["verified"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a line torn by a kill mid-write
                    found.setdefault(key, verified)
        return found

    # ------------------------------------------------------------------ runs and shards

    def write_run(self, run_id: str, stats: dict[str, Any]) -> None:
        _write_json(self.path / f"run-{run_id}.json", stats)

    def runs(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.path.glob("run-*.json")) if self.exists() else []:
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(path.read_text()))
        return sorted(out, key=lambda r: r.get("started_at", ""))

    def mark_done(self, index: int, count: int, stats: dict[str, Any]) -> None:
        _write_json(self.path / f"done-{index}of{count}.json", stats)

    def done_shards(self, count: int) -> set[int]:
        found = set()
        for index in range(count):
            if (self.path / f"done-{index}of{count}.json").exists():
                found.add(index)
        return found

    @contextlib.contextmanager
    def merge_lock(self) -> Iterator[bool]:
        """True when this process holds the merge lock (released on exit, or by the OS on death)."""
        handle = open(self.path / "merge.lock", "a")
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            yield True
        finally:
            handle.close()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic (write a temp file, fsync, rename): a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
