"""Per-row features computed in the check workers (language mix, dedup fingerprints), and the funnel.

``row_features`` and ``dedup_fingerprint`` run in ``distill.verify.pool`` workers (pickled by
reference), so the parent only orchestrates. ``REASONS`` is the order in which checks reject a row: a row's
``reject_reason`` is the first that fails.
"""

from __future__ import annotations

from collections import Counter

from distill.verify.dedup import fingerprint
from distill.verify.format import split_reasoning
from distill.verify.language import check_language

# (check name as in --skip, reject_reason values it produces), in the order checks apply
CHECKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("complete", ("incomplete",)),
    ("format", ("format",)),
    ("correct", ("incorrect", "unverified")),
    ("language", ("language",)),
    ("length", ("length",)),
    ("decontamination", ("contaminated",)),
    ("dedup", ("duplicate", "near_duplicate")),
    ("max_per_prompt", ("over_cap",)),
)
CHECK_NAMES = tuple(name for name, _ in CHECKS)
REASONS = tuple(reason for _, reasons in CHECKS for reason in reasons)


def row_features(payload: tuple) -> tuple:
    """``(language_ok, language_mix, script)`` of one completion (runs in a worker)."""
    completion, problem, assume_prefilled_think, max_mix = payload
    reasoning, answer = split_reasoning(completion or "", assume_prefilled_think)
    return check_language(problem, reasoning if reasoning is not None else answer, max_mix)


def dedup_fingerprint(completion: str) -> tuple[str, bytes]:
    """``(exact digest, MinHash)`` of one completion (runs in a worker, only for prompts with several
    surviving rows: a lone row cannot be a duplicate)."""
    return fingerprint(completion)


def funnel(reject_reasons: list[str | None], skipped: set[str] | tuple = ()) -> list[dict]:
    """Rows remaining after each check, in order (skipped checks drop nothing and are marked)."""
    counts = Counter(r for r in reject_reasons if r)
    remaining = len(reject_reasons)
    rows = [{"check": "input", "remaining": remaining, "dropped": 0}]
    for name, reasons in CHECKS:
        dropped = sum(counts[r] for r in reasons)
        remaining -= dropped
        rows.append({"check": name, "remaining": remaining, "dropped": dropped,
                     "by_reason": {r: counts[r] for r in reasons if counts[r]}, "skipped": name in skipped})
    return rows


def plot_funnel(rows: list[dict], path, title: str = "distill filter") -> None:
    """The funnel as a horizontal bar chart (PNG, matplotlib Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["check"] + (" (skipped)" if r.get("skipped") else "") for r in rows]
    values = [r["remaining"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    bars = ax.barh(range(len(rows)), values, color="#4c72b0")
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    total = max(values[0], 1)
    for bar, value in zip(bars, values, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value} ({value / total:.0%})", va="center")
    ax.set_xlim(0, total * 1.25)
    ax.set_xlabel("rows remaining")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def funnel_table(stats: dict) -> list[tuple[str, str, str, str]]:
    """The funnel's table rows ``(check, dropped, remaining, % of input)``. A check that rejects for several
    reasons (correct: incorrect / unverified; dedup: duplicate / near_duplicate) and dropped rows gets one
    indented line per reason under it, zeros included, so a grader timeout is never read as a wrong answer."""
    total = max(stats["input_rows"], 1)
    possible = dict(CHECKS)
    rows = []
    for row in stats["funnel"]:
        name = row["check"] + (" (skipped)" if row.get("skipped") else "")
        rows.append((name, str(row["dropped"]), str(row["remaining"]), f"{row['remaining'] / total:.1%}"))
        by_reason = row.get("by_reason") or {}
        reasons = list(possible.get(row["check"], ())) + [r for r in by_reason if r not in possible.get(row["check"], ())]
        if row["dropped"] and len(reasons) > 1:
            rows.extend((f"  {reason}", str(by_reason.get(reason, 0)), "", "") for reason in reasons)
    return rows


def print_funnel(stats: dict, artifact) -> None:
    """The funnel as a table on stdout, then one line with the yield and the artifact."""
    from distill import log

    log.table(f"distill filter -> {artifact.ref}", ("check", "dropped", "remaining", "% of input"),
              funnel_table(stats),
              footer=f"kept {stats['kept']} of {stats['input_rows']} rows (yield {stats['yield']:.1%}), "
                     f"{stats['prompts_kept']} of {stats['prompts']} prompts -> {artifact.ref}  ({artifact.path})")
