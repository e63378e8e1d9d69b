"""From graded samples to numbers with error bars, and the tables `distill eval` prints.

    summary = summarize(records, ks=[1, 4])         # per benchmark: per-problem counts + metrics
    print(results_table(results))                   # one eval, markdown
    print(compare_table([results_a, results_b], ["eval-base@v1", "eval-sft@v1"]))   # paired deltas

A record is one graded sample: ``benchmark, id, n?, correct, lenient, well_formed, finish_reason,
completion_tokens, predicted?, domain?``. Every metric is a mean over problems of a per-problem value, with
the clustered standard error of `distill.stages.eval.metrics`; pass@k uses the unbiased estimator on each problem's
(n, c); maj@n (DeepSeek-R1's cons@n) scores the answer most of a problem's n samples give.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from distill.errors import UserError
from distill.stages.eval.metrics import Estimate, estimate, paired_difference, pass_at_k

RESULTS_FILE = "results.json"
SCHEMA_VERSION = 1
STDERR_NOTE = ("stderr: clustered over problems (each problem's samples averaged first), sd/sqrt(problems); "
               "ci95 = mean ± 1.96·stderr, clipped to [0, 1] for rates, widened to the Wilson interval for a rate "
               "with under 5 successes or failures")
# Per-problem rates (share of a problem's samples) reported for every benchmark, in table order.
RATES = {
    "lenient_accuracy": "lenient: the last number of the reply equals the reference, whatever the format",
    "well_formed": "share of samples with a well-formed <think>…</think> reasoning block and an answer",
    "stopped": "share of samples that ended with the end token (finish_reason stop): does it stop?",
    "truncated": "share of samples cut at the token limit (finish_reason length)",
    "unverified": "share of samples the verifier could not judge (timeout, no reference)",
}
TOKENS = "completion_tokens"


# ---------------------------------------------------------------------------- per-problem counts


_FLAGS = {
    "correct": lambda r: r.get("correct"),
    "lenient": lambda r: r.get("lenient"),
    "well_formed": lambda r: r.get("well_formed"),
    "stopped": lambda r: None if r.get("finish_reason") is None else r["finish_reason"] == "stop",
    "truncated": lambda r: None if r.get("finish_reason") is None else r["finish_reason"] == "length",
    "unverified": lambda r: None if r.get("status") is None else r["status"] == "unverified",
}


def majority_correct(votes: list[tuple[int, str | None, bool]]) -> int | None:
    """Majority voting over one problem's samples ``(sample_index, predicted answer, correct)``: 1 when the
    most frequent answer is right. All correct answers are one answer (each equals the reference, so each
    other: "1/2" and "0.5" vote together); wrong ones group by normalized text; samples without an answer
    do not vote; a tie goes to the answer given first. 0 when no sample gave an answer."""
    from distill.verify.math import normalize_text

    tally: dict[str, list[int]] = {}  # answer -> [votes, first sample index]
    for index, predicted, correct in sorted(votes, key=lambda v: v[0]):
        if predicted is None or not str(predicted).strip():
            continue
        key = "\x00correct" if correct else normalize_text(str(predicted))
        entry = tally.setdefault(key, [0, index])
        entry[0] += 1
    if not tally:
        return 0
    winner = max(tally.items(), key=lambda item: (item[1][0], -item[1][1]))[0]
    return int(winner == "\x00correct")


def problem_key(problem: Any, reference: Any) -> str:
    """What makes two evals' problems the same problem: a hash of the text and the reference answer
    (never the row number: two files under one benchmark name are not the same problems)."""
    return hashlib.sha256(f"{problem}\x00{reference}".encode()).hexdigest()[:16]


def per_problem(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{benchmark: {problem id: counts}}``: n samples, and how many were correct, lenient-correct,
    well_formed, stopped, truncated, unverified (None when unknown for all of them: no finish reason in an
    outputs file, no lenient check for code), plus the problem's mean completion_tokens (or None)."""
    grouped: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for record in records:
        bench, key = str(record["benchmark"]), str(record["id"])
        counts = grouped[bench].get(key)
        if counts is None:
            counts = grouped[bench][key] = {"n": 0, **{flag: 0 for flag in _FLAGS}, "_known": set(), "_tokens": [],
                                            "_votes": []}
            if record.get("problem") is not None:
                counts["problem_sha"] = problem_key(record.get("problem"), record.get("reference"))
        if record.get("domain") != "code" and "predicted" in record and record.get("correct") is not None:
            index = record.get("sample_index")
            counts["_votes"].append((counts["n"] if index is None else int(index), record["predicted"],
                                     bool(record["correct"])))
        counts["n"] += 1
        for flag, read in _FLAGS.items():
            value = read(record)
            if value is not None:
                counts["_known"].add(flag)
                counts[flag] += bool(value)
        if record.get("completion_tokens") is not None:
            counts["_tokens"].append(int(record["completion_tokens"]))
    for problems in grouped.values():
        for counts in problems.values():
            known = counts.pop("_known")
            for flag in _FLAGS:
                if flag not in known:
                    counts[flag] = None
            tokens = counts.pop("_tokens")
            counts[TOKENS] = sum(tokens) / len(tokens) if tokens else None
            votes = counts.pop("_votes")
            counts["majority"] = majority_correct(votes) if votes else None
    return dict(grouped)


def _rate(counts: Mapping[str, Any], key: str) -> float | None:
    value = counts.get({"lenient_accuracy": "lenient"}.get(key, key))
    return value / counts["n"] if value is not None and counts.get("n") else None


def problem_value(counts: Mapping[str, Any], metric: str) -> float | None:
    """One problem's value of ``metric`` (pass@k, a rate, or its mean completion tokens)."""
    if metric.startswith("pass@"):
        k = int(metric[5:])
        n = int(counts.get("n") or 0)
        return pass_at_k(n, int(counts["correct"] or 0), k) if n >= k else None
    if metric.startswith("maj@"):
        return counts.get("majority") if int(counts.get("n") or 0) == int(metric[4:]) else None
    if metric == TOKENS:
        return counts.get(TOKENS)
    return _rate(counts, metric)


def sample_metric_names(metrics: Iterable[str]) -> list[str]:
    """The pass@k and maj@n metrics among ``metrics``, in table order (pass@ by k, then maj@)."""
    names = set(metrics)
    ordered = sorted((m for m in names if m.startswith("pass@")), key=lambda m: int(m[5:]))
    return ordered + sorted((m for m in names if m.startswith("maj@")), key=lambda m: int(m[4:]))


def default_ks(n: int) -> list[int]:
    """pass@1 and pass@n (the unbiased estimator at the largest k the samples allow)."""
    return sorted({1, n}) if n >= 1 else [1]


def metrics_for(problems: Mapping[str, Mapping[str, Any]], ks: Iterable[int]) -> dict[str, Estimate]:
    """Metric name -> Estimate over the problems of one benchmark."""
    most = max((int(c.get("n") or 0) for c in problems.values()), default=0)
    votes = [f"maj@{most}"] if most > 1 else []  # one sample is no vote
    names = [f"pass@{k}" for k in sorted(set(ks))] + votes + list(RATES) + [TOKENS]
    out: dict[str, Estimate] = {}
    for name in names:
        values = [problem_value(counts, name) for counts in problems.values()]
        if name.startswith(("pass@", "maj@")) and all(v is None for v in values):
            continue  # no problem has k samples (or, for maj@, no answer to vote on: code)
        out[name] = estimate(values, low=None, high=None) if name == TOKENS else estimate(values)
    return out


def summarize(records: Iterable[Mapping[str, Any]], ks: Iterable[int] | None = None) -> dict[str, dict[str, Any]]:
    """``{benchmark: {problems, samples, samples_per_problem, metrics, per_problem}}`` (JSON-ready)."""
    out = {}
    for bench, problems in per_problem(records).items():
        sizes = sorted({c["n"] for c in problems.values()})
        wanted = sorted(set(ks)) if ks else default_ks(max(sizes))
        out[bench] = {
            "problems": len(problems),
            "samples": sum(c["n"] for c in problems.values()),
            "samples_per_problem": sizes[0] if len(sizes) == 1 else sizes,
            "metrics": {name: est.to_dict() for name, est in metrics_for(problems, wanted).items()},
            "per_problem": problems,
        }
    return out


# ---------------------------------------------------------------------------- formatting


def fmt(est: Estimate | Mapping | None, percent: bool = True, digits: int = 1) -> str:
    """``"42.0 [35.9, 48.1]"``: the mean and its 95% interval (percent for rates)."""
    if est is None:
        return "—"
    if not isinstance(est, Estimate):
        est = Estimate.from_dict(est)
    if est.mean is None:
        return "n/a"
    scale = 100.0 if percent else 1.0
    text = f"{est.mean * scale:.{digits}f}"
    if est.ci_low is not None and est.ci_high is not None:
        text += f" [{est.ci_low * scale:.{digits}f}, {est.ci_high * scale:.{digits}f}]"
    return text


def fmt_delta(est: Estimate, percent: bool = True, digits: int = 1) -> str:
    if est.mean is None:
        return "—"
    scale = 100.0 if percent else 1.0
    text = f"{est.mean * scale:+.{digits}f}"
    if est.ci_low is not None and est.ci_high is not None:
        text += f" [{est.ci_low * scale:+.{digits}f}, {est.ci_high * scale:+.{digits}f}]"
        if est.ci_low > 0 or est.ci_high < 0:
            text += " *"  # the interval excludes zero
    return text


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _metric_label(name: str) -> str:
    return {"lenient_accuracy": "lenient acc.", "well_formed": "well-formed <think>", "stopped": "stops (eos)",
            "truncated": "truncated", "unverified": "unverified", TOKENS: "completion tokens"}.get(name, name)


def results_table(results: Mapping[str, Any]) -> str:
    """One eval as a markdown table: a row per benchmark, percent with 95% intervals."""
    benchmarks = results.get("benchmarks") or {}
    pass_names = sample_metric_names(m for b in benchmarks.values() for m in b["metrics"])
    columns = pass_names + list(RATES) + [TOKENS]
    header = ["benchmark", "problems × n"] + [_metric_label(c) + (" %" if c != TOKENS else "") for c in columns]
    rows = []
    for name, bench in benchmarks.items():
        per = bench.get("samples_per_problem")
        row = [name, f"{bench['problems']} × {per}"]
        for column in columns:
            row.append(fmt(bench["metrics"].get(column), percent=column != TOKENS, digits=1 if column != TOKENS else 0))
        rows.append(row)
    return _markdown(header, rows) + f"\n\n{STDERR_NOTE}."


# ---------------------------------------------------------------------------- compare


def load_results(ref: str) -> tuple[Any, dict[str, Any]]:
    """The eval artifact for ``ref`` and its results.json."""
    from distill import artifacts

    artifact = artifacts.resolve(ref, kind="eval")
    path = artifact.path / RESULTS_FILE
    try:
        return artifact, json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{artifact.ref} has no readable {RESULTS_FILE} ({type(exc).__name__}): re-run the eval") from None


def _sampling_key(results: Mapping[str, Any]) -> tuple:
    sampling = results.get("sampling") or {}
    return tuple(sampling.get(k) for k in ("temperature", "top_p", "max_tokens"))


def _by_content(entry: Mapping[str, Any]) -> dict[str, Mapping[str, Any]] | None:
    """A benchmark entry's per-problem counts keyed by problem content (None for results written before
    the key was recorded: those pair by id)."""
    problems = entry["per_problem"]
    if not problems or any("problem_sha" not in c for c in problems.values()):
        return None
    return {c["problem_sha"]: c for c in problems.values()}


def _source_identity(entry: Mapping[str, Any]) -> Any:
    """Where a benchmark's problems came from: a file's or artifact's content hash, or the Hub revision."""
    source = entry.get("source") or {}
    if source.get("sha256"):
        return source["sha256"]
    if source.get("type") == "hub":
        return (source.get("id"), source.get("config"), source.get("split"), source.get("revision"))
    return None


def _paired_problems(bench: str, entries: list, labels: list[str], allow_overlap: bool) -> tuple[list[dict], str]:
    """Each eval's per-problem counts on the problems all of them scored, paired by content; and a note."""
    keyed = [_by_content(e) for e in entries]
    if any(k is None for k in keyed):
        keyed = [dict(e["per_problem"]) for e in entries]
        how = "by problem id (results written before problem hashes were recorded)"
    else:
        how = "by problem text and reference"
    identities = [_source_identity(e) for e in entries]
    differing = [i for i, identity in enumerate(identities)
                 if identity is not None and identities[0] is not None and identity != identities[0]]
    if differing and not allow_overlap:
        raise UserError(f"{bench}: {labels[differing[0]]} scored another source of this benchmark than {labels[0]} "
                        "(a different file or revision): pass --paired-on-overlap to compare them on the problems "
                        "they share")
    common = set(keyed[0])
    for problems in keyed[1:]:
        common &= set(problems)
    if not common:
        raise UserError(f"{bench}: the evals share no problem (same text and reference): nothing to pair")
    sizes = [len(k) for k in keyed]
    note = f"{bench}: {len(common)} problems paired {how}"
    if len(common) != max(sizes):
        note += f" (the evals scored {', '.join(map(str, sizes))})"
    return [{key: problems[key] for key in sorted(common)} for problems in keyed], note


def compare_table(runs: list[Mapping[str, Any]], labels: list[str], allow_overlap: bool = False) -> str:
    """Side by side: a row per (benchmark, metric), a column per eval, then each eval minus the first,
    paired on the problems both scored — the same problem text and reference, not the same row number
    (95% interval; ``*`` when it excludes zero). Evals of different benchmark sources are refused unless
    ``allow_overlap``."""
    if len(runs) < 2:
        raise UserError("--compare needs at least two eval references (e.g. distill eval --compare eval-base eval-sft)")
    base = runs[0]
    modes = [(run.get("grading") or {}).get("answer_extraction", "standard") for run in runs]
    if len(set(modes)) > 1:  # a delta would mix the model with the grader: refuse rather than mislead
        graded = ", ".join(f"{label}: {mode}" for label, mode in zip(labels, modes, strict=True))
        raise UserError(f"the evals were graded with different --answer-extraction ({graded}): regrade one with "
                        f"`distill eval --outputs EVAL --answer-extraction {modes[0]}` and compare those")
    header = ["benchmark", "metric"] + labels + [f"{label} − {labels[0]} (paired)" for label in labels[1:]]
    rows: list[list[str]] = []
    notes: list[str] = []
    bench_names: list[str] = []
    for run in runs:
        for name in run.get("benchmarks") or {}:
            if name not in bench_names:
                bench_names.append(name)
    for bench in bench_names:
        entries = [(run.get("benchmarks") or {}).get(bench) for run in runs]
        present = [e for e in entries if e]
        paired = None
        if all(entries):
            paired, note = _paired_problems(bench, entries, labels, allow_overlap)
            notes.append(note)
        pass_names = sample_metric_names(set.intersection(*[set(e["metrics"]) for e in present]))
        for metric in pass_names + list(RATES) + [TOKENS]:
            percent = metric != TOKENS
            digits = 1 if percent else 0
            row = [bench, _metric_label(metric)]
            row += [fmt(e["metrics"].get(metric), percent, digits) if e else "—" for e in entries]
            for index in range(1, len(entries)):
                if paired is None:
                    row.append("—")
                    continue
                after = {k: problem_value(c, metric) for k, c in paired[index].items()}
                before = {k: problem_value(c, metric) for k, c in paired[0].items()}
                delta = paired_difference(after, before, bound=1.0 if percent else None)
                row.append(fmt_delta(delta, percent, digits))
            rows.append(row)
    for label, run in zip(labels[1:], runs[1:], strict=True):
        if _sampling_key(run) != _sampling_key(base):
            notes.append(f"{label} was sampled differently from {labels[0]} "
                         f"(temperature, top_p, max_tokens {_sampling_key(run)} vs {_sampling_key(base)}): "
                         "differences mix model and protocol")
    text = _markdown(header, rows) + f"\n\n{STDERR_NOTE}; deltas are paired per problem, * = interval excludes 0."
    if notes:
        text += "\n" + "\n".join(f"note: {n}" for n in notes)
    return text
