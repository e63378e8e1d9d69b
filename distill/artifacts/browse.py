"""Look at an artifact's data without Python: its rows, a split written to a file, a short summary.

    split, data = open_split(artifact, "rejected")               # a named split, or the default one
    result = head(artifact, split="rejected", where=["reject_reason=format"], n=5, columns=["problem"])
    export(artifact, "rejected.parquet", split="rejected")        # .jsonl or .parquet, atomic

The data logic of `distill artifacts head|export` (`show --summary`: summary.py); the CLI only prints
what these return.
Nothing here writes into an artifact (no ``Dataset.filter``/``map``, which would leave cache files in it).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.errors import UserError

DEFAULT_SPLIT = "train"
EXPORT_FORMATS = {".jsonl": "jsonl", ".parquet": "parquet"}
RESULTS_FILE = "results.json"  # an eval artifact's metrics (written by distill.stages.eval.report)
_NULL_TEXTS = {"", "null", "none"}


# ---------------------------------------------------------------------------- splits


def split_rows(artifact) -> dict[str, int]:
    """Rows per split as the manifest recorded them (``{"rows": N}`` for a dataset without splits)."""
    counts = artifact.manifest.get("counts") or {}
    return {k: v for k, v in counts.items() if isinstance(v, int)}


def open_split(artifact, split: str | None = None):
    """``(split name or None, Dataset)``: ``split``, else ``train`` of a DatasetDict, else its only split.

    A dataset saved without splits (an eval's per-sample outputs) has one unnamed split: ``None``.
    An unknown split, or a split asked of an artifact without a dataset, is a UserError that says what exists.
    """
    import datasets

    if not artifact.dataset_path.is_dir():
        payload = "model/" if artifact.model_path.is_dir() else "no payload"
        raise UserError(f"{artifact.ref} is a {artifact.kind} artifact without a dataset ({payload}); "
                        "head and export read traces, filtered, imported and eval artifacts")
    data = artifact.load_dataset()
    if not isinstance(data, datasets.DatasetDict):
        if split is not None:
            raise UserError(f"{artifact.ref} has one dataset without named splits ({len(data)} rows): "
                            f"drop --split {split}")
        return None, data
    names = list(data)
    if split is None:
        if DEFAULT_SPLIT in data:
            split = DEFAULT_SPLIT
        elif len(names) == 1:
            split = names[0]
        else:
            raise UserError(f"{artifact.ref} has no {DEFAULT_SPLIT!r} split: choose one with --split "
                            f"(splits: {_rows_of(data)})")
    if split not in data:
        raise UserError(f"{artifact.ref} has no split {split!r} (splits: {_rows_of(data)})")
    return split, data[split]


def _rows_of(data) -> str:
    return ", ".join(f"{name} ({len(d)} rows)" for name, d in data.items()) or "none"


def _check_columns(wanted: Iterable[str], dataset, artifact, split: str | None, what: str) -> None:
    missing = [c for c in wanted if c not in dataset.column_names]
    if missing:
        where = f"{artifact.ref}" + (f" split {split!r}" if split else "")
        raise UserError(f"{what} {', '.join(repr(c) for c in missing)} not in {where} "
                        f"(columns: {', '.join(dataset.column_names)})")


# ---------------------------------------------------------------------------- values as text


def cell_text(value: Any) -> str:
    """A cell as the text ``--where`` compares and ``head`` shows: strings as they are, null/true/false,
    numbers as Python prints them, lists and dicts as JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return repr(value)
    if hasattr(value, "tolist"):
        return cell_text(value.tolist())
    return json.dumps(value, ensure_ascii=False, default=str)


def matches(value: Any, wanted: str) -> bool:
    """Whether a cell equals ``wanted`` compared as text (``null``/``none``/empty match a missing value;
    ``true``/``false`` match booleans in any case)."""
    if value is None:
        return wanted.strip().lower() in _NULL_TEXTS
    if isinstance(value, bool):
        return wanted.strip().lower() == cell_text(value)
    return cell_text(value) == wanted


def truncate(text: str, limit: int | None) -> tuple[str, int]:
    """``(text cut to limit characters, full length)``; ``limit`` None keeps everything."""
    if limit is None or len(text) <= limit:
        return text, len(text)
    return text[:limit], len(text)


# ---------------------------------------------------------------------------- head


def parse_where(items: Sequence[str] | None) -> list[tuple[str, str]]:
    """``["col=value", ...]`` -> ``[("col", "value"), ...]`` (the value may contain '=' and be empty)."""
    parsed = []
    for item in items or []:
        column, sep, value = item.partition("=")
        if not sep or not column.strip():
            raise UserError(f"bad --where {item!r}: use COLUMN=VALUE, e.g. --where reject_reason=format")
        parsed.append((column.strip(), value))
    return parsed


def parse_columns(text: str | Sequence[str] | None) -> list[str] | None:
    """``"a,b"`` (or a list of such) -> ``["a", "b"]``; None or empty -> None (every column)."""
    if text is None:
        return None
    items = [text] if isinstance(text, str) else list(text)
    columns = [c.strip() for item in items for c in item.split(",") if c.strip()]
    return columns or None


@dataclass
class Head:
    """The first rows of a split that match ``where``."""

    ref: str
    split: str | None
    total: int  # rows in the split
    matched: int  # rows matching every condition (== total without conditions)
    where: list[tuple[str, str]]
    columns: list[str]
    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (row index in the split, row)
    # when nothing matched: the most common values of each --where column, so a near miss (the funnel's check
    # name "correct" for the reject reason "incorrect") is one look away
    values: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


def matching_indices(dataset, where: Sequence[tuple[str, str]], batch_size: int = 1000) -> list[int]:
    """Indices of the rows where every ``(column, value)`` matches (reads only those columns)."""
    if not where:
        return list(range(len(dataset)))
    columns = list(dict.fromkeys(c for c, _ in where))
    found, offset = [], 0
    for batch in dataset.select_columns(columns).with_format("python").iter(batch_size=batch_size):
        size = len(batch[columns[0]])
        for i in range(size):
            if all(matches(batch[c][i], v) for c, v in where):
                found.append(offset + i)
        offset += size
    return found


def head(artifact, split: str | None = None, where: Sequence[str] | Sequence[tuple[str, str]] = (), n: int = 5,
         columns: Sequence[str] | str | None = None) -> Head:
    """The first ``n`` rows of ``split`` that match every ``where`` condition ("col=value" or pairs)."""
    if n < 1:
        raise UserError(f"-n must be at least 1, got {n}")
    conditions = [w if isinstance(w, tuple) else parse_where([w])[0] for w in where]
    split, dataset = open_split(artifact, split)
    wanted = parse_columns(columns)
    _check_columns([c for c, _ in conditions], dataset, artifact, split, "--where column")
    if wanted:
        _check_columns(wanted, dataset, artifact, split, "column")
    shown = wanted or list(dataset.column_names)
    indices = matching_indices(dataset, conditions)
    view = dataset.select_columns(shown).with_format("python") if shown else dataset
    rows = [(i, view[i] if shown else {}) for i in indices[:n]]
    values = {}
    if conditions and not indices:
        from collections import Counter

        for column in dict.fromkeys(c for c, _ in conditions):
            counts = Counter(str(v) for v in dataset.select_columns([column]).with_format("python")[column])
            values[column] = counts.most_common(8)
    return Head(ref=artifact.ref, split=split, total=len(dataset), matched=len(indices), where=list(conditions),
                columns=shown, rows=rows, values=values)


# ---------------------------------------------------------------------------- export


def export_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise UserError(f"cannot tell the format of {str(path)!r} from its extension: "
                        f"use {' or '.join(EXPORT_FORMATS)}")
    return EXPORT_FORMATS[suffix]


def export(artifact, out: str | os.PathLike, split: str | None = None, force: bool = False) -> tuple[str | None, int]:
    """Write a split to ``out`` (.jsonl or .parquet by extension); returns ``(split, rows)``.

    Refuses an existing file unless ``force``. Atomic: written to a hidden temp file beside ``out`` and
    renamed over it, so a failure (or a kill) leaves no partial file and an overwritten one intact.
    """
    out = Path(out).expanduser()
    fmt = export_format(out)
    if out.is_dir():
        raise UserError(f"{out} is a directory: give a file name ending in {' or '.join(EXPORT_FORMATS)}")
    if out.exists() and not force:
        raise UserError(f"{out} exists: pass --force to overwrite it")
    if not out.parent.is_dir():
        raise UserError(f"directory {out.parent} does not exist: create it first")
    split, dataset = open_split(artifact, split)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        if fmt == "jsonl":
            _write_jsonl(dataset, tmp)
        else:
            try:
                _write_parquet(dataset, tmp)
            except Exception as exc:  # noqa: BLE001 - arrow refuses some types (an empty struct, ...)
                where = f"{artifact.ref}" + (f" split {split!r}" if split else "")
                raise UserError(f"cannot write {where} as parquet ({type(exc).__name__}: {str(exc)[:200]}); "
                                "export it as .jsonl instead") from None
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return split, len(dataset)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN / inf
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return value


def _write_parquet(dataset, path: Path) -> None:
    """``Dataset.to_parquet`` without its progress bar (the command prints its own line)."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        dataset.to_parquet(str(path))
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _write_jsonl(dataset, path: Path, batch_size: int = 1000) -> None:
    columns = list(dataset.column_names)
    with open(path, "w", encoding="utf-8") as handle:
        for batch in dataset.with_format("python").iter(batch_size=batch_size):
            for i in range(len(batch[columns[0]]) if columns else 0):
                row = {c: _jsonable(batch[c][i]) for c in columns}
                handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
