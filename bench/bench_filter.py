"""Filter / grader throughput on realistic long traces, against open-r1's accuracy reward.

    python bench/bench_filter.py            # prints the rows; BENCH_FILTER_N=800 for more traces
    python bench/run.py --only filter       # the markdown table

Traces: R1-style completions with ~4,000 tokens of reasoning (arithmetic, inline LaTeX, "Wait, ..."
detours, a boxed guess inside the thinking) and a short answer part ending in ``**Final Answer**
\\boxed{N}``; about 70% right, 20% wrong, 10% right in another form (units, thousands separators,
``\\dfrac``). Problems and answers are GSM8K test items when ``../shared/data/gsm8k_test.jsonl``
exists (dev machines, CI), else generated arithmetic.

Baseline: open-r1's ``accuracy_reward`` — ``math_verify.parse`` of the gold, ``parse`` of the WHOLE
completion (boxed first, equations, units), then ``verify``, one process, as GRPO recipes run it.
distill: ``grading.grade_batch`` (answer part only, fast paths, killable workers), with one worker
and with all cores; plus an end-to-end ``distill filter`` run (all checks) on the same traces.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GSM8K = REPO.parent / "shared" / "data" / "gsm8k_test.jsonl"
N_TRACES = int(os.environ.get("BENCH_FILTER_N", "1000"))

_PARAGRAPHS = [
    "Okay, so I need to figure out {q} Let me start by restating what we know.",
    "First, let's compute the partial amounts. We have ${a} \\times {b} = {ab}$, and then adding {c} gives "
    "${ab} + {c} = {abc}$. Hmm, that seems reasonable, but let me double-check the multiplication: {a} times {b} "
    "is {ab}. Yes.",
    "Wait, maybe I misread the problem. Let me go back. The question says each item costs {a} and there are {b} of "
    "them, so the total should be {ab}. But then there's the extra {c}, so {abc}. Is that right? I think so.",
    "Alternatively, I could set up an equation. Let $x$ be the unknown quantity. Then $\\frac{{x}}{{{b}}} = {a}$, so "
    "$x = {ab}$. That matches what I had before, which is reassuring.",
    "Let me verify with a different approach, just to be sure. If we subtract {c} from {abc} we get {ab}, and "
    "dividing by {b} gives {a}. Everything is consistent. So far so good.",
    "Hmm, but what if the rate changes halfway? The problem doesn't say that, so I'll assume it's constant. "
    "Then the answer would be \\boxed{{{abc}}}? No wait, I haven't used all the information yet.",
    "Let me list the quantities again: {a}, {b}, {c}. The combination ${a} \\cdot {b} + {c} = {abc}$ uses all of "
    "them. I should also consider whether there's any rounding involved, but all values are integers.",
]


def _problems(n: int, rng: random.Random) -> list[tuple[str, int]]:
    if GSM8K.is_file():
        rows = [json.loads(line) for line in GSM8K.read_text().splitlines()]
        picked = [rows[i % len(rows)] for i in range(n)]
        return [(r["question"], int(r["answer"].split("####")[1].strip().replace(",", ""))) for r in picked]
    out = []
    for _ in range(n):
        a, b, c = rng.randint(2, 90), rng.randint(2, 90), rng.randint(1, 500)
        out.append((f"A shop sells {b} boxes of {a} pens and {c} loose pens. How many pens?", a * b + c))
    return out


def make_traces(n: int = N_TRACES, seed: int = 0, reasoning_tokens: int = 4000) -> list[dict]:
    """Realistic long R1-style traces with a known label (answer == reference)."""
    rng = random.Random(seed)
    rows = []
    for i, (question, answer) in enumerate(_problems(n, rng)):
        parts = []
        while sum(len(p) for p in parts) < reasoning_tokens * 4:
            a, b, c = rng.randint(2, 60), rng.randint(2, 40), rng.randint(1, 300)
            parts.append(rng.choice(_PARAGRAPHS).format(q=question[:120], a=a, b=b, c=c, ab=a * b, abc=a * b + c))
        roll = rng.random()
        if roll < 0.7:
            final, label = str(answer), "correct"
        elif roll < 0.9:
            final, label = str(answer + rng.choice([1, -1, 10, answer or 3])), "incorrect"
        else:
            final = rng.choice([f"{answer:,}", f"{answer} \\text{{ dollars}}", f"\\dfrac{{{2 * answer}}}{{2}}"])
            label = "correct"
        summary = ("To solve this, we combine the quantities step by step:\n\n1. Compute the partial amounts.\n"
                   "2. Add the remaining items.\n\n\\[\n\\text{total} = " + final + "\n\\]\n\n")
        completion = ("<think>\n" + "\n\n".join(parts) + "\n</think>\n\n" + summary + "**Final Answer**\n\\boxed{"
                      + final + "}")
        rows.append({"id": f"q{i}", "problem": question, "answer": str(answer), "completion": completion,
                     "finish_reason": "stop", "label": label})
    return rows


def baseline_open_r1(rows: list[dict]) -> list[bool]:
    """open-r1's accuracy_reward (src/open_r1/rewards.py), sequential."""
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(normalization_config=NormalizationConfig(
        nits=False, malformed_operators=False, basic_latex=True, equations=True, boxed="all", units=True),
        boxed_match_priority=0, try_extract_without_anchor=False)]
    out = []
    for row in rows:
        gold = parse(f"${row['answer']}$", extraction_mode="first_match")
        answer = parse(row["completion"], extraction_config=config, extraction_mode="first_match")
        out.append(bool(verify(gold, answer)))
    return out


def run() -> list[dict]:
    sys.path.insert(0, str(REPO))
    from distill.verify.grader import GradeConfig, GradeItem, grade_batch

    rows = make_traces()
    from distill.verify.pool import available_cpus

    n, cores = len(rows), available_cpus()
    chars = sum(len(r["completion"]) for r in rows) / n
    source = "GSM8K test problems" if GSM8K.is_file() else "generated problems"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    note = f"{n} traces, ~{chars / 4:,.0f} tokens each (chars/4), {source}; load average {load:.1f} at start"
    items = [GradeItem(r["completion"], reference=r["answer"], finish_reason="stop") for r in rows]
    grade_batch(items[:1], GradeConfig(), num_proc=1)  # start the fork server (imports math-verify once)

    started = time.perf_counter()
    base = baseline_open_r1(rows)
    base_rate = n / (time.perf_counter() - started)

    rates, results = {}, {}
    for procs in (1, cores):
        started = time.perf_counter()
        results[procs] = grade_batch(items, GradeConfig(), num_proc=procs)
        rates[procs] = n / (time.perf_counter() - started)
    ours = [r.verdict.correct for r in results[cores]]
    truth = [r["label"] == "correct" for r in rows]

    with tempfile.TemporaryDirectory() as home:
        path = Path(home) / "traces.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        env = {**os.environ, "DISTILL_HOME": home}
        started = time.perf_counter()  # cold: a fresh `distill filter` process (imports, fork server, artifact)
        subprocess.run([sys.executable, "-m", "distill", "filter", "--input", str(path), "--num-proc", str(cores)],
                       check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cli_rate = n / (time.perf_counter() - started)

        import datasets  # noqa: F401 - warm: imports done, fork server running (large inputs amortize both)

        from distill.config import build
        from distill.stages.filter import FilterConfig
        from distill.stages.filter import run as run_filter

        previous = os.environ.get("DISTILL_HOME")
        os.environ["DISTILL_HOME"] = home
        try:
            started = time.perf_counter()
            run_filter(build(FilterConfig, {"input": str(path), "num_proc": cores}))
            filter_rate = n / (time.perf_counter() - started)
        finally:
            if previous is None:
                os.environ.pop("DISTILL_HOME", None)
            else:
                os.environ["DISTILL_HOME"] = previous

    def accuracy(pred):
        return sum(p == t for p, t in zip(pred, truth, strict=True)) / n

    return [
        {"benchmark": "filter", "metric": "open-r1 accuracy_reward (baseline, 1 process)", "value": base_rate,
         "unit": "traces/s", "notes": f"parse(whole completion) + verify; {note}"},
        {"benchmark": "filter", "metric": "distill grade_batch, 1 worker", "value": rates[1], "unit": "traces/s",
         "notes": f"{rates[1] / base_rate:.1f}x baseline; answer part only; pool start included"},
        {"benchmark": "filter", "metric": f"distill grade_batch, {cores} workers", "value": rates[cores],
         "unit": "traces/s", "notes": f"{rates[cores] / base_rate:.1f}x baseline (target >= 3x)"},
        {"benchmark": "filter", "metric": "distill filter end to end, in process", "value": filter_rate,
         "unit": "traces/s", "notes": f"{filter_rate / base_rate:.1f}x baseline; all checks + artifact write, "
                                     f"{cores} workers; imports and fork server warm"},
        {"benchmark": "filter", "metric": "distill filter end to end, CLI", "value": cli_rate, "unit": "traces/s",
         "notes": f"{cli_rate / base_rate:.1f}x baseline; a fresh `distill filter` process: includes ~3 s of "
                  "imports and fork-server start, so small inputs pay more"},
        {"benchmark": "filter", "metric": "label accuracy baseline / distill", "value": accuracy(ours),
         "unit": "fraction", "notes": f"baseline {accuracy(base):.3f}; distill {accuracy(ours):.3f} "
                                     "(units/dfrac/separators are the 10% 'other form' traces)"},
    ]


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
