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


def test_traces_without_reasoning_blocks_get_a_hint_not_a_silent_zero(home, tmp_path, capsys):
    """A non-reasoning teacher (the bundled model without few-shot) writes no <think> blocks: the filter
    says why it keeps nothing and what to do."""
    rows = [{"id": str(i), "problem": f"{i}+1?", "completion": f"The answer is \\boxed{{{i + 1}}}.", "answer": str(i + 1)}
            for i in range(20)]
    kept = _run(_traces(tmp_path, rows))
    assert kept.manifest["counts"]["train"] == 0
    err = capsys.readouterr().err
    assert "only 0.0% of the rows have a <think>…</think> block" in err and "--few-shot" in err
    assert "--skip format" in err


def test_generate_flags_samples_without_reasoning_blocks():
    from distill.stages.generate.loop import has_reasoning_block, no_reasoning_hint

    assert has_reasoning_block("<think>\nadd\n</think>\n\n5") and has_reasoning_block("add</think>5")
    assert not has_reasoning_block("The answer is 5.") and not has_reasoning_block("<think>never closed")
    assert "is the teacher a reasoning model?" in no_reasoning_hint(0.01)
