"""The filter's console funnel shows each reject reason of a check on its own line: "incorrect" (a wrong
answer) and "unverified" (the grader could not tell: a timeout, no reference) are never one number."""

from __future__ import annotations

import json
import re

import pytest
from fixtures_models import run_cli

from distill import log
from distill.stages.filter.features import funnel, funnel_table, print_funnel


class _Artifact:
    ref = "filtered@v0001"
    path = "/somewhere/filtered/v0001"


def _stats(reasons: list[str | None]) -> dict:
    kept = reasons.count(None)
    return {"input_rows": len(reasons), "kept": kept, "yield": kept / len(reasons), "prompts": len(reasons),
            "prompts_kept": kept, "funnel": funnel(reasons)}


def _lines(table) -> dict[str, tuple]:
    return {name: rest for name, *rest in table}


def test_unverified_alone_is_not_shown_as_the_check():
    rows = _lines(funnel_table(_stats([None, "unverified", "unverified", None])))
    assert rows["correct"] == ["2", "2", "50.0%"]
    assert rows["  unverified"] == ["2", "", ""] and rows["  incorrect"] == ["0", "", ""]
    assert "  duplicate" not in rows and "  near_duplicate" not in rows  # dedup dropped nothing: no breakdown


def test_incorrect_and_unverified_each_on_their_line(capsys, monkeypatch):
    monkeypatch.setattr(log, "_renderer", log.PlainRenderer())  # what a caller without the CLI sees
    print_funnel(_stats([None, "incorrect", "unverified", "unverified", "duplicate", "format"]), _Artifact())
    out = capsys.readouterr().out
    lines = out.splitlines()
    correct = lines.index(next(line for line in lines if line.startswith("correct ")))
    assert lines[correct].split() == ["correct", "3", "2", "33.3%"]
    assert lines[correct + 1].split() == ["incorrect", "1"] and lines[correct + 2].split() == ["unverified", "2"]
    assert lines[correct + 1].startswith("  ")  # indented under its check
    dedup = lines.index(next(line for line in lines if line.startswith("dedup ")))
    assert [lines[dedup + 1].split(), lines[dedup + 2].split()] == [["duplicate", "1"], ["near_duplicate", "0"]]
    assert "  format" not in out and "  incomplete" not in out  # a check with one reason is its own line
    assert lines[-1].startswith("kept 1 of 6 rows")


@pytest.mark.cli
def test_filter_cli_prints_incorrect_and_unverified_apart(home, tmp_path):
    rows = [{"problem": "What is 2+2?", "answer": "4", "completion": "<think>two and two, counted up</think> \\boxed{5}"},
            {"problem": "What is 3+3?", "completion": "<think>three and three, counted up</think> \\boxed{6}"},
            {"problem": "What is 1+1?", "answer": "2", "completion": "<think>one and one, counted up</think> \\boxed{2}"}]
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run_cli("filter", "--input", str(traces), "--name", "f", "--timeout", "3", home=home, check=True).stdout
    cells = [[c.strip() for c in re.split(r"[│|]", line) if c.strip()] for line in out.splitlines()]
    assert ["correct", "2", "1", "33.3%"] in cells
    assert ["incorrect", "1"] in cells and ["unverified", "1"] in cells  # rich drew them (no markup eaten)

    from distill import artifacts

    stats = artifacts.resolve("f").manifest["stats"]  # what the artifact records is unchanged
    correct = next(r for r in stats["funnel"] if r["check"] == "correct")
    assert correct == {"check": "correct", "remaining": 1, "dropped": 2,
                       "by_reason": {"incorrect": 1, "unverified": 1}, "skipped": False}


@pytest.mark.cli
def test_nothing_kept_is_said_with_what_helps_and_verdicts_count_only_checked_rows(home, tmp_path):
    """A GSM8K trial with a weak teacher kept 0 rows with exit 0 and no hint; and the summary counted rows with
    no closed <think> block (nothing graded) as "incorrect"."""
    rows = [{"problem": f"What is {i}+{i}?", "answer": str(2 * i),
             "completion": f"<think>adding {i} and {i} step by step</think> \\boxed{{{2 * i + 1}}}"} for i in range(3)]
    rows += [{"problem": "What is 5+5?", "answer": "10", "completion": "<think>five and five make ten \\boxed{10}"}]
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli("filter", "--input", str(traces), "--name", "f", "--timeout", "3", home=home, check=True)
    assert "kept 0 of 4 rows; most were dropped as 'incorrect' (3)" in result.stderr
    assert "--until-verified" in result.stderr and "--correctness annotate" in result.stderr
    summary = run_cli("artifacts", "show", "f@latest", "--summary", home=home, check=True).stdout
    assert "incorrect 3  (of the 3 rows that reached the correctness check)" in summary
