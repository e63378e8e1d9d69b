"""`distill filter` never reads a column that is not there as "nothing" (regression tests of silent zeros).

A wrong --answer-column used to mark every row unverified and keep 0 rows with exit 0; a missing
--problem-column made every row its own prompt, silently turning off decontamination and per-prompt caps.
"""

from __future__ import annotations

import json

import pytest

from distill.config import build
from distill.errors import UserError
from distill.stages import filter as filter_stage
from distill.stages.filter import FilterConfig

GOOD = "<think>\nWe add 2 and 3 carefully, counting up from 2: 3, 4, 5.\n</think>\n\nThe answer is \\boxed{5}."


def _traces(tmp_path, rows):
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _run(path, **options):
    return filter_stage.run(build(FilterConfig, {"input": path, "num_proc": 1, **options}))


@pytest.mark.parametrize("flag, value", [("answer_column", "gold"), ("problem_column", "question"),
                                         ("id_column", "uid"), ("domain_column", "kind"),
                                         ("solution_column", "worked"), ("test_cases_column", "tests")])
def test_a_named_column_that_does_not_exist_is_one_error_listing_the_columns(home, tmp_path, flag, value):
    path = _traces(tmp_path, [{"id": "a", "problem": "2+3?", "completion": GOOD, "answer": "5"}])
    with pytest.raises(UserError, match=rf"no column --{flag.replace('_', '-')} '{value}'.*available columns: "
                                        r"id, problem, completion, answer"):
        _run(path, **{flag: value})
    assert not (home / "data").exists()  # nothing written


def test_no_reference_column_is_an_error_not_zero_kept_rows(home, tmp_path):
    path = _traces(tmp_path, [{"id": "a", "problem": "2+3?", "completion": GOOD, "gold": "5"}])
    with pytest.raises(UserError, match="no reference answers.*available columns: id, problem, completion, gold"):
        _run(path)
    assert not (home / "data").exists()
    # the ways out the message names work
    assert _run(path, answer_column="gold").manifest["counts"]["train"] == 1
    assert _run(path, name="format-only", skip=["correct"]).manifest["counts"]["train"] == 1


def test_no_problem_column_is_an_error_not_one_prompt_per_row(home, tmp_path):
    path = _traces(tmp_path, [{"question": "2+3?", "completion": GOOD, "answer": "5"}] * 3)
    with pytest.raises(UserError, match="no problem column 'problem'.*available columns: question, completion"):
        _run(path, max_per_prompt=1)
    kept = _run(path, max_per_prompt=1, problem_column="question", skip=["dedup"])
    assert kept.manifest["counts"]["train"] == 1  # one prompt, capped at 1: the cap works again
