"""Look at an artifact's data without Python: its rows, a split written to a file, a short summary.

    split, data = open_split(artifact, "rejected")               # a named split, or the default one
    result = head(artifact, split="rejected", where=["reject_reason=format"], n=5, columns=["problem"])
    export(artifact, "rejected.parquet", split="rejected")        # .jsonl or .parquet, atomic
    for label, lines in summary(artifact): ...                    # kind, rows, parents, key config, results

The data logic of `distill artifacts head|export|show --summary`; the CLI only prints what these return.
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
    return Head(ref=artifact.ref, split=split, total=len(dataset), matched=len(indices), where=list(conditions),
                columns=shown, rows=rows)


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


# ---------------------------------------------------------------------------- summary

# The config values worth a glance, per kind (others: `distill artifacts show REF` prints the whole manifest).
KEY_CONFIG = {
    "traces": ("teacher", "engine", "dataset", "split", "limit", "num_generations", "temperature", "top_p",
               "max_tokens", "shard"),
    "filtered": ("input", "split", "domain", "skip", "keep_unverified", "require_reference", "max_tokens",
                 "max_per_prompt", "per_prompt_policy", "decontaminate"),
    "imported": ("source", "config", "split", "format", "limit", "revision", "data_files"),
    "checkpoint": ("recipe", "model", "dataset", "lora", "load_in_4bit", "merge", "max_length", "packing",
                   "num_train_epochs", "learning_rate", "global_batch_size",
                   "per_device_train_batch_size", "gradient_accumulation_steps", "precision", "num_gpus"),
    "eval": ("model", "benchmark", "protocol", "n", "temperature", "top_p", "max_tokens", "pass_at", "limit",
             "outputs"),
}
_LINE = 100


def summary(artifact, root: Path | None = None) -> list[tuple[str, list[str]]]:
    """A short human summary as ``(label, lines)`` entries: what it is, when it was made, rows per split,
    parents (with their sha256 prefix, marked when they changed since), the key config values, and per kind
    the funnel (filtered), training results (checkpoint) or each benchmark's pass@1 with its interval (eval)."""
    manifest = artifact.manifest
    entries: list[tuple[str, list[str]]] = [("created", [_created(manifest.get("created_at"))]),
                                            ("path", [str(artifact.path)])]
    counts = manifest.get("counts") or {}
    if set(counts) == {"rows"}:
        entries.append(("rows", [f"{_number(counts['rows'])} (one dataset, no named splits)"]))
    elif counts:
        entries.append(("rows" if artifact.dataset_path.is_dir() else "counts",
                        [", ".join(f"{k} {_number(v)}" for k, v in counts.items())]))
    entries.append(("parents", _parents(manifest, root) or [_no_parent(manifest)]))
    config = _key_config(manifest.get("config") or {}, KEY_CONFIG.get(artifact.kind, ()))
    if config:
        entries.append(("config", config))
    specific = {"traces": _traces, "filtered": _filtered, "imported": _imported, "checkpoint": _checkpoint,
                "eval": _eval}.get(artifact.kind)
    if specific is not None:
        entries.extend(specific(artifact))
    sha = artifact.content_sha256
    entries.append(("sha256", [f"{sha[:12]}… (content)" if sha else "none recorded"]))
    return entries


def _created(value: Any) -> str:
    text = str(value or "?")
    return text.replace("T", " ").replace("+00:00", " UTC")


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return cell_text(value)


def _pack(items: Iterable[str], width: int = _LINE) -> list[str]:
    """Items joined by two spaces into lines of at most ``width`` characters (a longer item stands alone)."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 2 + len(item) <= width:
            lines[-1] += "  " + item
        else:
            lines.append(item)
    return lines


def _key_config(config: dict[str, Any], keys: Sequence[str]) -> list[str]:
    items = [f"{k}={_value(config[k])}" for k in keys if config.get(k) not in (None, "", [], {}, False)]
    return _pack(items)


def _parents(manifest: dict[str, Any], root: Path | None) -> list[str]:
    from distill import artifacts

    lines = []
    for parent in manifest.get("parents") or []:
        sha = parent.get("sha256") or ""
        line = f"{parent.get('ref')} ({parent.get('kind', '?')}, sha256 {sha[:12]}…)"
        try:
            current = artifacts.resolve(parent["ref"], root=root)
        except (UserError, KeyError):
            line += "  missing"
        else:
            if current.content_sha256 != sha:
                line += "  CHANGED since use"
        lines.append(line)
    return lines


def _no_parent(manifest: dict[str, Any]) -> str:
    """``none``, with where the input came from when it was a file or a Hub dataset."""
    source = (manifest.get("config") or {}).get("source")
    if not isinstance(source, dict):
        return "none"
    where = source.get("path") or source.get("hub_id") or source.get("id") or source.get("ref")
    sha = source.get("sha256") or ""
    return "none" + (f" (input: {source.get('type', '?')} {where}" + (f", sha256 {sha[:12]}…" if sha else "") + ")"
                     if where else "")


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "?"


def funnel_lines(stats: dict[str, Any]) -> list[str]:
    """The filter's funnel as aligned lines: check, rows dropped, rows remaining, share of the input, and
    the ``reject_reason`` values the drops carry (each reason on its own, e.g. incorrect and unverified)."""
    rows = stats.get("funnel") or []
    total = max(int(stats.get("input_rows") or (rows[0]["remaining"] if rows else 0)), 1)
    table = [("check", "dropped", "remaining", "of input", "reject_reason")]
    for row in rows:
        name = row["check"] + (" (skipped)" if row.get("skipped") else "")
        reasons = ", ".join(f"{r} {n}" for r, n in (row.get("by_reason") or {}).items() if n)
        table.append((name, str(row.get("dropped", 0)) if row["check"] != "input" else "",
                      str(row["remaining"]), f"{row['remaining'] / total:.1%}", reasons))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    return [f"{r[0].ljust(widths[0])}  {r[1].rjust(widths[1])}  {r[2].rjust(widths[2])}  {r[3].rjust(widths[3])}"
            f"  {r[4]}".rstrip() for r in table]


def _traces(artifact) -> list[tuple[str, list[str]]]:
    manifest, stats = artifact.manifest, artifact.manifest.get("stats") or {}
    teacher = manifest.get("teacher") or {}
    out = []
    if teacher:
        out.append(("teacher", [f"{teacher.get('spec')} -> {teacher.get('model')} ({teacher.get('engine')})"]))
    items = [f"{k.replace('_', ' ')} {_number(stats[k])}" for k in
             ("samples", "prompts", "mean_completion_tokens", "tokens_per_second") if stats.get(k) is not None]
    if stats.get("truncated_share") is not None:
        items.append(f"truncated {_percent(stats['truncated_share'])}")
    if stats.get("cost_usd") is not None:
        items.append(f"cost ${stats['cost_usd']:.2f}")
    if items:
        out.append(("generation", _pack(items)))
    return out


def _filtered(artifact) -> list[tuple[str, list[str]]]:
    stats = artifact.manifest.get("stats") or {}
    out = []
    if stats.get("funnel"):
        out.append(("funnel", funnel_lines(stats)))
    if "kept" in stats and "input_rows" in stats:
        line = f"{stats['kept']} of {stats['input_rows']} rows ({_percent(stats.get('yield'))})"
        if "prompts_kept" in stats:
            line += f", {stats['prompts_kept']} of {stats.get('prompts')} prompts"
        out.append(("kept", [line]))
    verdicts = stats.get("verdicts")
    if verdicts:
        line = ", ".join(f"{k} {v}" for k, v in verdicts.items())
        if stats.get("timeouts"):
            line += f"  ({stats['timeouts']} grader timeouts)"
        out.append(("verdicts", [line]))
    return out


def _imported(artifact) -> list[tuple[str, list[str]]]:
    manifest, stats = artifact.manifest, artifact.manifest.get("stats") or {}
    source = manifest.get("source") or {}
    out = []
    if source:
        where = source.get("hub_id") or source.get("path") or "?"
        extra = ", ".join(f"{k} {source[k]}" for k in ("config", "split", "format", "license") if source.get(k))
        out.append(("source", [where + (f" ({extra})" if extra else "")]))
    items = [f"{k.replace('_', ' ')} {_value(v)}" for k, v in stats.items() if not isinstance(v, (dict, list))]
    if items:
        out.append(("stats", _pack(items)))
    return out


def _checkpoint(artifact) -> list[tuple[str, list[str]]]:
    manifest = artifact.manifest
    state = manifest.get("trainer_state") or {}
    training = manifest.get("training") or {}
    metrics = (manifest.get("stats") or {}).get("metrics") or {}
    out = [("base model", [str(manifest.get("base_model") or (manifest.get("config") or {}).get("model") or "?")])]
    items = []
    for key in ("global_step", "max_steps", "epoch"):
        if state.get(key) is not None:
            items.append(f"{key} {_number(state[key])}")
    for key in ("train_loss", "eval_loss"):
        value = state.get(key, metrics.get(key))
        if value is not None:
            items.append(f"{key.replace('_', ' ')} {value:.4f}" if isinstance(value, float) else f"{key} {value}")
    if metrics.get("train_runtime") is not None:
        items.append(f"runtime {metrics['train_runtime']:.0f} s")
    if items:
        out.append(("training", _pack(items)))
    shape = []
    if training:
        shape.append("adapter (LoRA)" if training.get("adapter") else "full fine-tune")
        if training.get("merged"):
            shape.append("merged")
        distributed = training.get("distributed") or {}
        processes = distributed.get("processes") or 1
        if distributed.get("type") not in (None, "NO"):
            shape.append(f"{distributed['type']}, {processes} processes")
        elif distributed:
            shape.append("1 process")
        if training.get("precision"):
            shape.append(str(training["precision"]))
    if shape:
        out.append(("model", [", ".join(shape)]))
    return out


def _eval(artifact) -> list[tuple[str, list[str]]]:
    manifest = artifact.manifest
    out = []
    model = manifest.get("model") or {}
    if model:
        out.append(("model", [str(model.get("ref") or model.get("spec") or model.get("path"))
                              + (f" (base {model['base_model']})" if model.get("base_model") else "")]))
    try:
        results = json.loads((artifact.path / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        results = None
    if results is None:  # the manifest keeps the point estimates only
        stats = manifest.get("stats") or {}
        lines = [f"{k} {_percent(v)} (no {RESULTS_FILE}: intervals unknown)" for k, v in stats.items()]
        return out + ([("results", lines)] if lines else [])
    sampling = results.get("sampling") or {}
    if sampling:
        out.append(("sampling", [", ".join(f"{k} {_value(v)}" for k, v in sampling.items() if v is not None)]))
    lines = []
    benchmarks = results.get("benchmarks") or {}
    width = max((len(b) for b in benchmarks), default=0)
    for name, bench in benchmarks.items():
        metrics = bench.get("metrics") or {}
        shown = [m for m in metrics if m.startswith(("pass@", "maj@"))] or [m for m in metrics][:1]
        parts = [f"{m} {_estimate(metrics[m])}" for m in shown]
        per = bench.get("samples_per_problem", "?")
        size = f"{bench.get('problems', '?')} problems × {per} sample{'' if per == 1 else 's'}"
        lines.append(f"{name.ljust(width)}  " + "  ".join(parts) + f"  ({size})")
    if lines:
        out.append(("results", lines + ["95% intervals, clustered over problems"]))
    return out


def _estimate(metric: dict[str, Any] | None) -> str:
    if not metric or metric.get("mean") is None:
        return "n/a"
    ci = metric.get("ci95")
    interval = f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci and None not in ci else ""
    return f"{100 * metric['mean']:.1f}%{interval}"
