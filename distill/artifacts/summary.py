"""`distill artifacts show REF --summary`: a short human summary of an artifact instead of its whole manifest.

    for label, lines in summary(artifact): ...   # kind, rows, parents, key config, and per kind its results

The CLI only prints what ``summary`` returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from distill.artifacts.browse import RESULTS_FILE, cell_text
from distill.errors import UserError

# The config values worth a glance, per kind (others: `distill artifacts show REF` prints the whole manifest).
KEY_CONFIG = {
    "traces": ("teacher", "engine", "dataset", "split", "limit", "num_generations", "until_verified", "max_samples",
               "temperature", "top_p", "max_tokens", "shard"),
    "filtered": ("input", "split", "domain", "skip", "answer_extraction", "correctness", "keep_unverified",
                 "require_reference", "pass_rate_range", "max_tokens", "max_per_prompt", "per_prompt_policy",
                 "decontaminate"),
    "imported": ("source", "config", "split", "format", "limit", "revision", "data_files"),
    "checkpoint": ("recipe", "model", "dataset", "lora", "load_in_4bit", "merge", "max_length", "packing",
                   "num_train_epochs", "learning_rate", "global_batch_size",
                   "per_device_train_batch_size", "gradient_accumulation_steps", "precision", "num_gpus"),
    "eval": ("model", "benchmark", "protocol", "n", "temperature", "top_p", "max_tokens", "pass_at", "limit",
             "answer_extraction", "outputs"),
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
    checked = stats.get("verdicts_checked")
    verdicts = checked if checked is not None else stats.get("verdicts")
    if verdicts:
        line = ", ".join(f"{k} {v}" for k, v in verdicts.items())
        if checked is not None:
            line += f"  (of the {sum(checked.values())} rows that reached the correctness check)"
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
