"""Per-row features computed in the check workers (language mix, trace shape, dedup fingerprints), the
funnel and the run's statistics.

``row_checks``, ``row_features`` and ``dedup_fingerprint`` run in ``distill.verify.pool`` workers (pickled by
reference), so the parent only orchestrates. ``REASONS`` is the order in which checks reject a row: a row's
``reject_reason`` is the first that fails.
"""

from __future__ import annotations

from collections import Counter

from distill.verify.dedup import fingerprint
from distill.verify.format import split_reasoning
from distill.verify.language import check_language
from distill.verify.shape import measure_shape, tail_chars

# (check name as in --skip, reject_reason values it produces), in the order checks apply
CHECKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("complete", ("incomplete",)),
    ("format", ("format",)),
    ("tail", ("tail",)),              # before repetition: "I hope this helps!" x 30 after the answer is a tail
    ("repetition", ("repetition",)),  # before correct: a looping trace is named so, even when its answer is right
    ("correct", ("incorrect", "unverified")),
    ("pass_rate", ("pass_rate",)),    # --pass-rate-range: the prompt's teacher pass rate is out of the band
    ("language", ("language",)),
    ("length", ("length",)),
    ("decontamination", ("contaminated",)),
    ("dedup", ("duplicate", "near_duplicate")),
    ("max_per_prompt", ("over_cap",)),
)
CHECK_NAMES = tuple(name for name, _ in CHECKS)
_BEFORE_CORRECT = {reason for name, reasons in CHECKS[:CHECK_NAMES.index("correct")] for reason in reasons}
REASONS = tuple(reason for _, reasons in CHECKS for reason in reasons)


def row_features(payload: tuple) -> tuple:
    """``(language_ok, language_mix, script)`` of one completion (runs in a worker)."""
    completion, problem, assume_prefilled_think, max_mix = payload
    reasoning, answer = split_reasoning(completion or "", assume_prefilled_think)
    return check_language(problem, reasoning if reasoning is not None else answer, max_mix)


def row_checks(payload: tuple) -> tuple:
    """``(language, shape, tail_chars)`` of one completion (runs in a worker): ``row_features``' triple or
    ``(None, None, None)``, a ``TraceShape`` or None, the characters after the final answer or None (not
    measured: the check is off, a code row — its answer is a program, often explained after — or no final
    answer to measure from)."""
    completion, problem, assume_prefilled_think, max_mix, want_language, repetition_ngram, want_tail = payload
    completion = completion or ""
    reasoning, answer = split_reasoning(completion, assume_prefilled_think)
    language = (check_language(problem, reasoning if reasoning is not None else answer, max_mix) if want_language
                else (None, None, None))
    shape = measure_shape(completion, repetition_ngram) if repetition_ngram else None
    return language, shape, tail_chars(answer) if want_tail else None


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


def run_stats(cfg, rows: dict, graded: list, reasons: list[str | None], num_tokens: list[int], token_source: str,
              index, contaminated: list, skip: set[str]) -> dict:
    """The manifest's ``stats`` of a filter run: counts per reason, the funnel, verdicts, kept per prompt,
    token and reasoning/answer length statistics of the kept rows, decontamination."""
    n = len(reasons)
    kept = [i for i, r in enumerate(reasons) if r is None]
    counts = Counter(r for r in reasons if r)
    per_prompt = Counter(rows["group"][i] for i in kept)
    prompts = list(dict.fromkeys(rows["group"]))
    kept_counts = [per_prompt.get(g, 0) for g in prompts]
    kept_tokens = sorted(num_tokens[i] for i in kept)
    return {
        "input_rows": n,
        "kept": len(kept),
        "rejected": n - len(kept),
        "yield": round(len(kept) / n, 4),
        "rejected_by_reason": {r: counts.get(r, 0) for r in REASONS},
        "funnel": funnel(reasons, skip),
        "verdicts": dict(sorted(Counter(g.verdict.status for g in graded).items())),
        # the verdicts of the rows that reached the correctness check (every row is graded, but a row cut off or
        # without a closed <think> block has no answer part to read: "incorrect" there says nothing of the answer)
        "verdicts_checked": dict(sorted(Counter(g.verdict.status for g, r in zip(graded, reasons, strict=True)
                                                if r not in _BEFORE_CORRECT).items())),
        "format_reasons": dict(sorted(Counter(g.format_reason for g in graded).items())),
        "timeouts": sum(1 for g in graded if g.verdict.details.get("timeout")),
        "domains": dict(sorted(Counter(rows["domain"]).items())),
        "prompts": len(prompts),
        "prompts_kept": sum(1 for c in kept_counts if c),
        "kept_per_prompt": {"mean": round(sum(kept_counts) / max(len(prompts), 1), 3),
                            "min": min(kept_counts, default=0), "max": max(kept_counts, default=0),
                            "histogram": {str(k): v for k, v in sorted(Counter(kept_counts).items())}},
        "num_tokens_kept": {"mean": round(sum(kept_tokens) / len(kept_tokens), 1) if kept_tokens else 0,
                            "median": kept_tokens[len(kept_tokens) // 2] if kept_tokens else 0,
                            "max": kept_tokens[-1] if kept_tokens else 0, "source": token_source},
        "reasoning_answer_ratio": reasoning_answer_ratio([graded[i] for i in kept]),
        "decontamination": None if index is None else {
            "benchmarks": index.sizes, "ngram": cfg.ngram,
            "fuzzy_threshold": cfg.fuzzy_threshold if cfg.fuzzy_decontamination else None,
            "contaminated_rows": sum(1 for c in contaminated if c),
            "by_benchmark": dict(sorted(Counter(c for c in contaminated if c).items()))},
        "skipped_checks": sorted(skip),
    }


def reasoning_answer_ratio(graded: list) -> dict:
    """Median and 95th percentile (nearest rank) of ``len(reasoning) / len(answer)`` in characters over rows
    with both parts: how much thinking the rows teach per character of answer (reported, never a reject)."""
    ratios = sorted(len(g.reasoning) / len(g.answer_text) for g in graded if g.reasoning and g.answer_text)
    if not ratios:
        return {"rows": 0, "median": None, "p95": None}
    p95 = ratios[max(0, -(-len(ratios) * 95 // 100) - 1)]  # nearest rank: ceil(0.95 n)-th smallest
    middle = len(ratios) // 2
    median = ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2
    return {"rows": len(ratios), "median": round(median, 2), "p95": round(p95, 2)}


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

    ratio = stats.get("reasoning_answer_ratio") or {}
    ratio_text = (f"; reasoning/answer length: median {ratio['median']:g}x, p95 {ratio['p95']:g}x"
             if ratio.get("rows") else "")
    log.table(f"distill filter -> {artifact.ref}", ("check", "dropped", "remaining", "% of input"),
              funnel_table(stats),
              footer=f"kept {stats['kept']} of {stats['input_rows']} rows (yield {stats['yield']:.1%}), "
                     f"{stats['prompts_kept']} of {stats['prompts']} prompts{ratio_text} -> {artifact.ref}  "
                     f"({artifact.path})")
