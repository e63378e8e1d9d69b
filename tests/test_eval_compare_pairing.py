"""`distill eval --compare` pairs problems by what they are (text + reference), never by row number.

Regression: two evals of *different* files under one benchmark name (ids gsm8k-0, gsm8k-1, ... in both)
were paired row by row, giving a meaningless "paired" delta.
"""

from __future__ import annotations

import pytest

from distill.errors import UserError
from distill.stages.eval.report import compare_table, summarize


def _eval(problems: list[tuple[str, str, list[int]]], sha: str) -> dict:
    """problems: (text, reference, [correct per sample]) in row order; ids are row numbers, as for gsm8k."""
    records = [{"benchmark": "gsm8k", "id": f"gsm8k-{row}", "sample_index": i, "problem": text, "reference": ref,
                "correct": ok, "status": "correct" if ok else "incorrect", "finish_reason": "stop",
                "completion_tokens": 10}
               for row, (text, ref, flags) in enumerate(problems) for i, ok in enumerate(flags)]
    benchmarks = summarize(records)
    benchmarks["gsm8k"]["source"] = {"type": "file", "path": f"/data/{sha}.jsonl", "sha256": sha}
    return {"benchmarks": benchmarks, "sampling": {"temperature": 0.0}}


def _delta(table: str) -> str:
    row = next(line for line in table.splitlines() if line.startswith("| gsm8k | pass@1 |"))
    return [c.strip() for c in row.strip("|").split("|")][-1]


A = [("What is 2+3?", "5", [0]), ("What is 4+4?", "8", [0]), ("What is 1+6?", "7", [1]), ("What is 9+0?", "9", [1])]


def test_the_same_problems_in_another_order_pair_by_content():
    improved = [("What is 9+0?", "9", [1]), ("What is 1+6?", "7", [1]), ("What is 4+4?", "8", [1]),
                ("What is 2+3?", "5", [1])]
    table = compare_table([_eval(A, "same"), _eval(improved, "same")], ["base", "tuned"])
    # by content: +1, +1, 0, 0 -> +50; row-number pairing would have said 0, 0, 0, 0 on rows 2-3 and +1 on 0-1
    assert _delta(table).startswith("+50.0 [")
    assert "gsm8k: 4 problems paired by problem text and reference" in table


def test_different_benchmark_files_are_refused_unless_the_overlap_is_declared():
    other = [("What is 3+3?", "6", [1]), ("What is 5+2?", "7", [1]), ("What is 1+6?", "7", [1]),
             ("What is 9+0?", "9", [0])]
    with pytest.raises(UserError, match="gsm8k: other scored another source of this benchmark than base"):
        compare_table([_eval(A, "sha-a"), _eval(other, "sha-b")], ["base", "other"])
    table = compare_table([_eval(A, "sha-a"), _eval(other, "sha-b")], ["base", "other"], allow_overlap=True)
    assert "gsm8k: 2 problems paired by problem text and reference (the evals scored 4, 4)" in table
    assert _delta(table).startswith("-50.0 [")  # 1+6: 1 -> 1, 9+0: 1 -> 0


def test_no_shared_problem_is_an_error_not_a_delta():
    disjoint = [("What is 7+7?", "14", [1])]
    with pytest.raises(UserError, match="share no problem"):
        compare_table([_eval(A, "x"), _eval(disjoint, "y")], ["a", "b"], allow_overlap=True)


def test_evals_graded_with_different_answer_extraction_are_refused():
    strict, lenient = _eval(A, "same"), _eval(A, "same")
    strict["grading"], lenient["grading"] = {"answer_extraction": "strict"}, {"answer_extraction": "lenient"}
    with pytest.raises(UserError, match="graded with different --answer-extraction .base: strict, tuned: lenient"):
        compare_table([strict, lenient], ["base", "tuned"])
    older = _eval(A, "same")  # results written before the mode was recorded were graded the standard way
    standard = {**_eval(A, "same"), "grading": {"answer_extraction": "standard"}}
    assert "pass@1" in compare_table([older, standard], ["old", "new"])
