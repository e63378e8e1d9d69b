"""Summaries, the results table and `distill eval --compare` on hand-built graded samples."""

import json
import math

import pytest
from fixtures_models import run_cli

from distill import artifacts
from distill.stages.eval.report import compare_table, majority_correct, per_problem, results_table, summarize


def _records(bench, outcomes, finish="stop", tokens=10):
    """outcomes: {problem id: [correct per sample]} -> graded sample records."""
    out = []
    for pid, flags in outcomes.items():
        for i, ok in enumerate(flags):
            out.append({"benchmark": bench, "id": pid, "sample_index": i, "correct": ok, "lenient": ok or pid == "p4",
                        "well_formed": i == 0, "finish_reason": finish if i == 0 else "length", "status":
                        "correct" if ok else "incorrect", "completion_tokens": tokens * (i + 1)})
    return out


BASE = {"p1": [1, 0], "p2": [0, 0], "p3": [1, 1], "p4": [0, 0]}
TUNED = {"p1": [1, 1], "p2": [1, 0], "p3": [1, 1], "p4": [0, 0]}


def test_summarize_hand_values():
    summary = summarize(_records("toy", BASE))["toy"]
    assert summary["problems"] == 4 and summary["samples"] == 8 and summary["samples_per_problem"] == 2
    metrics = summary["metrics"]
    assert metrics["pass@1"]["mean"] == pytest.approx((0.5 + 0 + 1 + 0) / 4)
    # pass@2 with n=2: a problem passes if any of its 2 samples is right
    assert metrics["pass@2"]["mean"] == pytest.approx(0.5)
    assert metrics["lenient_accuracy"]["mean"] == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert metrics["well_formed"]["mean"] == 0.5 and metrics["stopped"]["mean"] == 0.5
    assert metrics["truncated"]["mean"] == 0.5 and metrics["unverified"]["mean"] == 0.0
    assert metrics["completion_tokens"]["mean"] == 15
    # per-problem pass@1 values .5, 0, 1, 0: sample sd = sqrt(((.125)^2+(.375)^2+(.625)^2+(.375)^2)/3)
    sd = math.sqrt((0.125 ** 2 + 0.375 ** 2 + 0.625 ** 2 + 0.375 ** 2) / 3)
    assert metrics["pass@1"]["stderr"] == pytest.approx(sd / 2)
    assert summary["per_problem"]["p1"]["correct"] == 1 and summary["per_problem"]["p1"]["n"] == 2


def test_unknown_fields_are_not_counted_as_failures():
    records = [{"benchmark": "b", "id": "x", "correct": True, "lenient": None, "well_formed": True,
                "finish_reason": None, "status": "correct", "completion_tokens": None}]
    counts = per_problem(records)["b"]["x"]
    assert counts["lenient"] is None and counts["stopped"] is None and counts["completion_tokens"] is None
    metrics = summarize(records)["b"]["metrics"]
    assert metrics["pass@1"]["mean"] == 1.0 and metrics["stopped"]["mean"] is None


def test_majority_vote_counts_equivalent_correct_answers_as_one():
    # 2 of 5 say "12" (wrong), 3 are right in three spellings: the right answer wins 3 to 2
    assert majority_correct([(0, "12", False), (1, "1/2", True), (2, "12", False), (3, "0.5", True),
                             (4, "\\frac{1}{2}", True)]) == 1
    # the wrong answer in two spellings ("12", "$12$") outvotes two right ones
    assert majority_correct([(0, "12", False), (1, "$12$", False), (2, "12.", False), (3, "1/2", True),
                             (4, "0.5", True)]) == 0
    # a tie goes to the answer given first (by sample index, whatever the record order); no answer: no vote
    assert majority_correct([(1, "7", False), (0, "3", True), (2, None, False)]) == 1
    assert majority_correct([(0, "7", False), (1, "3", True)]) == 0
    assert majority_correct([(0, None, False), (1, " ", False)]) == 0


def test_maj_at_n_in_summaries_and_tables():
    def graded(pid, answers, gold):
        return [{"benchmark": "toy", "id": pid, "sample_index": i, "predicted": a, "correct": a == gold,
                 "domain": "math", "finish_reason": "stop", "status": "correct" if a == gold else "incorrect"}
                for i, a in enumerate(answers)]

    records = (graded("p1", ["4", "5", "4", "4"], "4") + graded("p2", ["9", "9", "8", "9"], "8")
               + graded("p3", ["1", None, None, None], "1") + graded("p4", [None] * 4, "2"))
    summary = summarize(records)["toy"]
    assert [summary["per_problem"][p]["majority"] for p in ("p1", "p2", "p3", "p4")] == [1, 0, 1, 0]
    metrics = summary["metrics"]
    # p4 never answered: no vote, so it counts as a miss, not as unknown
    assert metrics["maj@4"]["mean"] == pytest.approx(2 / 4)
    assert metrics["pass@1"]["mean"] == pytest.approx((3 / 4 + 1 / 4 + 1 / 4 + 0) / 4)
    assert "| pass@1 % | pass@4 % | maj@4 % |" in results_table({"benchmarks": {"toy": summary}})
    single = summarize(graded("p1", ["4"], "4"))["toy"]["metrics"]
    assert not any(m.startswith("maj@") for m in single)  # one sample is no vote
    code = [{**r, "domain": "code"} for r in records]
    assert not any(m.startswith("maj@") for m in summarize(code)["toy"]["metrics"])


def test_results_table_shows_intervals():
    results = {"benchmarks": summarize(_records("toy", BASE))}
    table = results_table(results)
    lines = table.splitlines()
    assert lines[0].startswith("| benchmark | problems × n | pass@1 % | pass@2 %")
    assert "| toy | 4 × 2 | 37.5 [" in table
    assert "stderr: clustered over problems" in table


def test_compare_pairs_problems():
    base = {"benchmarks": summarize(_records("toy", BASE)), "sampling": {"temperature": 0.6}}
    tuned = {"benchmarks": summarize(_records("toy", TUNED)), "sampling": {"temperature": 0.6}}
    table = compare_table([base, tuned], ["eval-base@v0001", "eval-sft@v0001"])
    row = next(line for line in table.splitlines() if line.startswith("| toy | pass@1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2].startswith("37.5 [") and cells[3].startswith("62.5 [")
    # paired diffs .5, .5, 0, 0: mean .25, se = sqrt((4 * .25^2 / 3) / 4) = .1443; normal 95% CI .25 ± .2829 =
    # [-3.3, +53.3]; but only 2 of 4 problems changed (< 5), so the interval is widened to ± the Wilson upper
    # bound of 2/4 (0.85): a difference of rates is at most the share of problems that changed
    assert cells[4] == "+25.0 [-85.0, +85.0]"
    assert "eval-sft@v0001 − eval-base@v0001 (paired)" in table.splitlines()[0]
    tuned["sampling"] = {"temperature": 0.0}
    assert "sampled differently" in compare_table([base, tuned], ["a", "b"])


def _save_eval(name, outcomes):
    results = {"schema_version": 1, "sampling": {"temperature": 0, "top_p": 1.0, "max_tokens": 64},
               "benchmarks": summarize(_records("toy", outcomes))}
    with artifacts.create(name, "eval", config={"model": name}) as writer:
        (writer.path / "results.json").write_text(json.dumps(results))
    return artifacts.resolve(name).ref


@pytest.mark.cli
def test_compare_cli(home):
    base, tuned = _save_eval("eval-base", BASE), _save_eval("eval-sft", TUNED)
    result = run_cli("eval", "--compare", base, tuned, home=home, check=True)
    assert "| toy | pass@1 | 37.5 [" in result.stdout and "+25.0 [-85.0, +85.0]" in result.stdout
    missing = run_cli("eval", "--compare", base, home=home)
    assert missing.returncode == 2 and "at least two eval references" in missing.stderr
    assert missing.stderr.count("\n") == 1
