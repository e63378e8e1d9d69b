"""What `distill filter` decides per row: reject reasons in check order, pass rates per prompt, dedup and the
per-prompt cap, and the output's check columns.

``reject_reasons`` gives each row the first check it fails (``features.CHECKS`` order). ``pass_rates`` is the
teacher's pass rate of each row's prompt: correct samples / graded samples of that prompt in the input (rows with
no verdict — no reference, a timeout — are not counted; a prompt with none graded has no rate). ``--pass-rate-range
LO,HI`` rejects rows whose prompt's rate is outside [LO, HI] (``pass_rate``): trivially easy prompts (1.0) and
hopeless ones (0.0) teach little, and such a band is what GRPO wants (``distill train --method grpo
--pass-rate-range``). ``--correctness annotate`` keeps incorrect and unverified rows, their verdict in the
``verdict`` column, so verified and unverified data can be compared by training on each (``distill eval --compare``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass
class Measured:
    """What the per-row checks measured (one entry per row)."""

    features: list        # (language_ok, language_mix, script) or (None, None, None) when not checked
    shapes: list          # TraceShape (distill.verify.shape) or None when not checked
    tails: list           # characters after the final answer, or None when not measured
    graded: list          # GradeResult: complete, format, verdict
    num_tokens: list
    token_source: str
    contaminated: list    # the benchmark a row's problem overlaps, or None


def pass_rates(groups: list[str], statuses: list[str]) -> tuple[list[float | None], list[int]]:
    """Each row's prompt pass rate (correct / graded samples of the prompt; None when none was graded) and the
    prompt's sample count (all its rows in the input)."""
    samples = Counter(groups)
    graded = Counter(g for g, s in zip(groups, statuses, strict=True) if s in ("correct", "incorrect"))
    correct = Counter(g for g, s in zip(groups, statuses, strict=True) if s == "correct")
    rates = {g: round(correct[g] / graded[g], 4) for g in graded}
    return [rates.get(g) for g in groups], [samples[g] for g in groups]


def pass_rate_summary(groups: list[str], rates: list[float | None]) -> dict:
    """The prompts' pass rates for the manifest: how many prompts have one, their mean, and a histogram
    (0, (0, 0.25], ..., (0.75, 1), 1) — where adaptive sampling and a --pass-rate-range band would act."""
    per_prompt = {g: r for g, r in zip(groups, rates, strict=True) if r is not None}
    values = list(per_prompt.values())
    buckets = Counter("0" if r == 0 else "1" if r == 1 else f"<={-(-r * 4 // 1) / 4:g}" for r in values)
    order = ["0", "<=0.25", "<=0.5", "<=0.75", "<=1", "1"]
    return {"prompts": len(values), "mean": round(sum(values) / len(values), 4) if values else None,
            "histogram": {k: buckets[k] for k in order if buckets[k]}}


def reject_reasons(cfg, measured: Measured, pass_rates: list) -> tuple[dict[str, list], list[str | None]]:
    """Each row's check columns and its reject reason: the first check, in order, that it fails."""
    from distill.verify.length import check_length
    from distill.verify.shape import is_loop

    skip, want_language = set(cfg.skip), "language" not in cfg.skip
    checking = "correct" not in skip and cfg.correctness == "require"
    band = cfg.pass_rate_band()
    columns: dict[str, list] = {k: [] for k in CHECK_FEATURES}
    reasons: list[str | None] = []
    for i, result in enumerate(measured.graded):
        language_ok, mix, script = measured.features[i]
        verdict, contaminated = result.verdict, measured.contaminated[i]
        length_ok = check_length(measured.num_tokens[i], cfg.min_tokens, cfg.max_tokens)
        shape, tail = measured.shapes[i], measured.tails[i]  # None: not measured, never a reject
        looping = shape is not None and is_loop(shape, cfg.repetition_max_count, cfg.repetition_loop_repeats,
                                                cfg.repetition_loop_share)
        failed = [("incomplete", "complete" not in skip and not result.complete),
                  ("format", "format" not in skip and not result.well_formed),
                  ("tail", tail is not None and tail > cfg.max_tail_chars),
                  ("repetition", looping),
                  ("incorrect", checking and verdict.status == "incorrect"),
                  ("unverified", checking and verdict.status == "unverified" and not cfg.keep_unverified),
                  ("pass_rate", band is not None and "pass_rate" not in skip
                   and not (pass_rates[i] is not None and band[0] <= pass_rates[i] <= band[1])),
                  ("language", want_language and not language_ok),
                  ("length", "length" not in skip and not length_ok),
                  ("contaminated", contaminated is not None)]
        reasons.append(next((reason for reason, bad in failed if bad), None))
        for key, value in (("complete", result.complete), ("format_ok", result.well_formed),
                           ("format_reason", result.format_reason), ("verdict", verdict.status),
                           ("predicted", short(verdict.predicted)), ("verdict_reason", short(verdict.reason)),
                           ("language_ok", language_ok if want_language else None),
                           ("language_mix", mix if want_language else None),
                           ("script", script if want_language else None), ("num_tokens", measured.num_tokens[i]),
                           ("length_ok", length_ok), ("contaminated_by", contaminated), ("tail_chars", tail),
                           ("max_ngram_repeats", shape and shape.max_ngram_repeats),
                           ("loop_repeats", shape and shape.loop_repeats),
                           ("loop_period", shape and shape.loop_period), ("loop_share", shape and shape.loop_share),
                           ("pass_rate", pass_rates[i])):
            columns[key].append(value)
    return columns, reasons


def dedup_and_cap(cfg, groups_of, reasons, num_tokens, pool, completions, want_dedup) -> list[str | None]:
    """Dedup, then the per-prompt cap, among the rows that passed every row check (``reasons`` updated).

    Fingerprints are computed (in the workers) only for prompts with several surviving rows.
    """
    from distill.stages.filter import features
    from distill.verify import dedup

    marks: list[str | None] = [None] * len(reasons)
    groups: dict[str, list[int]] = {}
    for i, reason in enumerate(reasons):
        if reason is None:
            groups.setdefault(groups_of[i], []).append(i)
    prints: dict[int, tuple] = {}
    if want_dedup:
        need = [i for members in groups.values() if len(members) > 1 for i in members]
        found = pool.map(features.dedup_fingerprint, [completions[i] for i in need],
                         timeout_s=max(60.0, cfg.timeout * 4), on_timeout=lambda _: (None, None),
                         on_error=lambda _, msg: (None, None))
        prints = dict(zip(need, found, strict=True))
    for key, members in groups.items():
        if want_dedup:
            found = dedup.find_duplicates([prints.get(i, (None, None)) for i in members],
                                          cfg.near_duplicate_threshold)
            for i, mark in zip(members, found, strict=True):
                marks[i] = mark
                if mark != "unique":
                    reasons[i] = mark
            members = [i for i in members if reasons[i] is None]
        chosen = dedup.select(members, [num_tokens[i] for i in members], cfg.max_per_prompt, cfg.per_prompt_policy,
                              cfg.seed, key)
        for i in members:
            if i not in chosen:
                reasons[i] = "over_cap"
    return marks


CHECK_FEATURES = {
    "complete": "bool", "format_ok": "bool", "format_reason": "string", "verdict": "string", "predicted": "string",
    "verdict_reason": "string", "language_ok": "bool", "language_mix": "float64", "script": "string",
    "num_tokens": "int64", "length_ok": "bool", "contaminated_by": "string", "tail_chars": "int64",
    "max_ngram_repeats": "int64", "loop_repeats": "int64", "loop_period": "int64", "loop_share": "float64",
    "pass_rate": "float64", "samples": "int64", "judge_verdict": "string", "judge_rationale": "string",
    "dedup": "string", "reject_reason": "string",
}


def short(text: str | None, limit: int = 500) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit] + "…"


def build_output(data, columns: dict[str, list], reasons: list[str | None]):
    import datasets

    keep = [c for c in data.column_names if c not in columns]
    base = data.select_columns(keep) if len(keep) != len(data.column_names) else data
    features = datasets.Features({k: datasets.Value(t) for k, t in CHECK_FEATURES.items()})
    checks = datasets.Dataset.from_dict({k: columns[k] for k in CHECK_FEATURES}, features=features)
    if getattr(base, "_indices", None) is not None:  # a selected view: materialize before joining columns
        base = base.flatten_indices()
    full = datasets.concatenate_datasets([base, checks], axis=1)
    kept = [i for i, r in enumerate(reasons) if r is None]
    rejected = [i for i, r in enumerate(reasons) if r is not None]
    return datasets.DatasetDict({"train": full.select(kept), "rejected": full.select(rejected)})
