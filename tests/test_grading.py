"""The shared grader (filter + eval): labelled precision/recall, tricky answers, hard timeouts, the worker pool."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest

from distill.verify.choice import extract_choice
from distill.verify.extraction import extract_boxed, final_answer
from distill.verify.grader import (
    GradeConfig,
    GradeItem,
    grade_batch,
    lenient_correct,
    make_pool,
    normalize_domain,
    reference_answer,
    split_reasoning,
)
from distill.verify.pool import WorkerPool

DATA = Path(__file__).parent / "data"
THINK = "<think>\nLet me work through this carefully, checking every step twice.\n</think>\n\n"
PRECISION_MIN, RECALL_MIN = 0.99, 0.95


@pytest.fixture(scope="module")
def pool():
    with make_pool(2, GradeConfig()) as workers:
        yield workers


def grade(pool, completion, reference, domain="math", timeout_s=5.0, **kw):
    item = GradeItem(completion=completion, domain=domain, reference=reference, **kw)
    return grade_batch([item], GradeConfig(timeout_s=timeout_s), pool=pool)[0]


# ---------------------------------------------------------------------------- labelled set


def test_labelled_set_precision_and_recall(pool):
    rows = [json.loads(line) for line in (DATA / "grader_labelled.jsonl").read_text().splitlines()]
    assert len(rows) >= 200 and {r["label"] for r in rows} == {"correct", "incorrect"}
    results = grade_batch([GradeItem(r["completion"], domain=r["domain"], reference=r["reference"]) for r in rows],
                          GradeConfig(timeout_s=10), pool=pool)
    tp = sum(r["label"] == "correct" and g.verdict.correct for r, g in zip(rows, results, strict=True))
    fp = sum(r["label"] != "correct" and g.verdict.correct for r, g in zip(rows, results, strict=True))
    fn = sum(r["label"] == "correct" and not g.verdict.correct for r, g in zip(rows, results, strict=True))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    misses = [(r["style"], g.verdict.predicted) for r, g in zip(rows, results, strict=True)
              if (r["label"] == "correct") != g.verdict.correct]
    print(f"\ngrader on {len(rows)} labelled pairs: precision {precision:.4f}, recall {recall:.4f}; misses {misses}")
    assert precision >= PRECISION_MIN and recall >= RECALL_MIN, (precision, recall, misses)


# ---------------------------------------------------------------------------- tricky answers


@pytest.mark.parametrize("answer, reference", [
    ("The probability is $\\boxed{\\frac{1}{2}}$.", "0.5"),
    ("\\boxed{0.5}", "\\frac{1}{2}"),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}"),
    ("The side is \\boxed{5\\text{ cm}}.", "5"),
    ("He made \\boxed{\\$70,000}.", "#### 70000"),
    ("\\boxed{1\\,000\\,000}", "1000000"),
    ("\\boxed{1{,}234}", "1234"),
    ("So $v_R = \\boxed{4}$ and $v_B = \\boxed{10}$.", "v_R=4, v_B=10"),
    ("\\boxed{10} and \\boxed{4}", "v_R=4, v_B=10"),
    ("So she sold \\boxed{72} clips in all, which answers the question.", "72"),
    ("The answer is \\boxed{18}.\n\n**Final Answer**\n\\boxed{18}", "18"),
    ("First \\boxed{4}, then the total.\n\n**Final Answer**\n\\boxed{10}", "10"),
    ("Thus, the answer is 18.", "18"),
    ("The solutions are $x=-2$ and $x=3$.", "-2, 3"),
    ("**Final Answer**\n\\boxed{49\\pi}", "The area is $\\pi r^2 = \\boxed{49\\pi}$."),
])
def test_tricky_correct_answers(pool, answer, reference):
    result = grade(pool, THINK + answer, reference)
    assert result.well_formed and result.verdict.status == "correct", result.verdict


@pytest.mark.parametrize("answer, reference", [
    ("\\boxed{4}", "v_R=4, v_B=10"),  # half a set
    ("\\boxed{1,000,000}", "1000"),
    ("\\boxed{18^2}", "18"),
    ("I could not finish.", "18"),
])
def test_wrong_answers(pool, answer, reference):
    assert grade(pool, THINK + answer, reference).verdict.status == "incorrect"


def test_only_the_answer_part_is_graded(pool):
    completion = "<think>\nMaybe \\boxed{72}? The answer is 72.\n</think>\n\n**Final Answer**\n\\boxed{96}"
    result = grade(pool, completion, "72")
    assert result.verdict.status == "incorrect" and result.verdict.predicted == "96"
    assert "\\boxed{72}" in result.reasoning and result.answer_text == "**Final Answer**\n\\boxed{96}"


def test_no_reference_is_unverified_and_truncation_is_reported(pool):
    assert grade(pool, THINK + "\\boxed{7}", None).verdict.status == "unverified"
    cut = grade(pool, "<think>\nstill thinking about", "7", finish_reason="length")
    assert not cut.complete and not cut.well_formed and cut.format_reason == "unclosed_think"
    assert cut.verdict.status == "incorrect"


def test_multiple_choice(pool):
    for answer in ("\\boxed{C}", "Answer: C", "The correct answer is (C).", "**Answer: C**", "\\boxed{\\text{(C)}}"):
        assert grade(pool, THINK + answer, "C", domain="multiple_choice").verdict.correct, answer
    assert grade(pool, THINK + "Answer: B", "(C)", domain="multiple_choice").verdict.status == "incorrect"
    assert extract_choice("The answer is a function of x.") == (None, "none")
    assert normalize_domain("Multiple-Choice") == "multiple_choice" and normalize_domain(None) == "math"
    assert grade(pool, THINK + "x", "1", domain="poetry").verdict.reason == "no verifier for domain 'poetry'"


# ---------------------------------------------------------------------------- pathological answers


def test_pathological_answers_finish_within_the_timeout(pool):
    timeout_s = 3.0
    huge = "<think>\n" + ("We add the numbers again and again. " * 30000) + "\n</think>\n\nSo \\boxed{18}."
    assert len(huge) > 1_000_000
    items = [
        GradeItem(THINK + "\\boxed{2^{2^{2^{2^{2^{2}}}}}}", reference="5"),
        GradeItem(THINK + "\\boxed{10^{10^{10}}}", reference="5"),
        GradeItem(THINK + "\\boxed{" + "{" * 3000 + "1" + "}" * 3000 + "}", reference="1"),
        GradeItem(THINK + "\\boxed{" * 50000, reference="1"),  # unbalanced, 350 kB
        GradeItem(huge, reference="18"),
        GradeItem("no think " * 120000 + "answer is 18", reference="18"),  # 1 MB answer part
        GradeItem(THINK + "\\boxed{18}", reference="18"),  # the run goes on
    ]
    started = time.monotonic()
    results = grade_batch(items, GradeConfig(timeout_s=timeout_s), pool=pool)
    elapsed = time.monotonic() - started
    # two workers: at most ceil(7/2) checks in a row on one worker, each under the hard limit
    assert elapsed < math.ceil(len(items) / 2) * timeout_s + 2, elapsed
    statuses = [r.verdict.status for r in results]
    assert statuses[0] == statuses[1] == "unverified" and "timeout" in results[0].verdict.reason
    assert statuses[4] == "correct" and statuses[5] == "correct" and statuses[6] == "correct"
    assert statuses[3] == "incorrect"


def test_pool_kills_overrunning_tasks_and_replaces_the_worker():
    with WorkerPool(2) as workers:
        first_pids = {w.process.pid for w in workers.workers}
        started = time.monotonic()
        out = workers.map(time.sleep, [0.01, 60, 0.01, 60, 0.01], timeout_s=1.0, on_timeout=lambda p: "killed",
                          chunk_size=1)
        assert out == [None, "killed", None, "killed", None]
        assert time.monotonic() - started < 6 and workers.killed == 2
        assert len(workers.workers) == 2 and all(w.process.is_alive() for w in workers.workers)
        assert {w.process.pid for w in workers.workers} != first_pids
        errors = workers.map(math.sqrt, [4.0, -1.0], timeout_s=5, on_timeout=lambda p: None,
                             on_error=lambda p, message: message)
        assert errors[0] == 2.0 and errors[1].startswith("ValueError")
        crashed = workers.map(os._exit, [3], timeout_s=5, on_timeout=lambda p: None, on_error=lambda p, m: m)
        assert crashed == ["worker process died"] and workers.crashed == 1
        assert workers.map(math.sqrt, [9.0], timeout_s=5, on_timeout=lambda p: None) == [3.0]


# ---------------------------------------------------------------------------- helpers


def test_reference_answer_forms():
    assert reference_answer("Janet sells 9 eggs.\nShe makes $18.\n#### 18") == "18"
    assert reference_answer("so the answer is $\\boxed{\\frac{3}{4}}$.") == "\\frac{3}{4}"
    assert reference_answer(18.0) == "18" and reference_answer(0.5) == "0.5" and reference_answer(["4", 10]) == "4, 10"
    assert reference_answer(None) is None and reference_answer("  ") is None
    assert reference_answer("A long worked solution\n" + "with many steps. " * 30) is None


def test_extraction_helpers():
    assert extract_boxed("a \\boxed{\\frac{1}{2}} b \\fbox{3} c \\boxed 7 d \\boxed{\\boxed{5}}") == [
        "\\frac{1}{2}", "3", "7", "5"]
    assert final_answer("The answer is $\\frac{1}{2}$, since ...") == (["\\frac{1}{2}"], "phrase")
    assert final_answer("We get $x = 3$ in the end") == (["x = 3"], "math")
    assert final_answer("Each day: **1,800** dollars.") == (["1800"], "bold")
    assert split_reasoning("<think>r</think> a") == ("r", "a")


def test_lenient_correct():
    assert lenient_correct("Janet makes 9 * 2 = 18 dollars", "#### 18")
    assert lenient_correct("<think>...</think> the total is 1,234.", "1234")
    assert lenient_correct("x = 0.5", "\\frac{1}{2}")
    assert not lenient_correct("18 dollars, then 19", "18")
    assert not lenient_correct("no numbers", "18") and not lenient_correct("42", "\\sqrt{2}")


def test_code_domain_goes_to_the_sandbox():
    code = pytest.importorskip("distill.verify.code")
    available, why = code.sandbox_available()
    if not available:
        pytest.skip(f"no sandbox here: {why}")
    tests = json.dumps({"inputs": ["1 2\n", "5 7\n"], "outputs": ["3\n", "12\n"]})
    good = THINK + "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    bad = THINK + "```python\na, b = map(int, input().split())\nprint(a * b)\n```"
    results = grade_batch([GradeItem(good, domain="code", test_cases=tests),
                           GradeItem(bad, domain="code", test_cases=tests)], GradeConfig(code_timeout=10), num_proc=2)
    assert [r.verdict.status for r in results] == ["correct", "incorrect"]
