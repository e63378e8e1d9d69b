"""`distill eval --outputs FILE`: grade precomputed completions with the real grader, no generation.

tests/data/eval_outputs.jsonl holds 2 samples for each of the 4 problems of tests/data/eval_small.jsonl;
the expected verdicts below are worked out by hand from the completions (a stub grader fails them):

    add-1  (5)   s0 well-formed, \\boxed{5}                 correct   lenient yes
                 s1 well-formed, \\boxed{6}                 wrong     lenient no
    mul-1  (42)  s0 no <think>, "6 times 7 is \\boxed{42}."  correct   lenient yes  (not well-formed)
                 s1 truncated inside <think> (length)      wrong     lenient yes  (last number 42)
    sub-1  (6)   s0 well-formed, "\\boxed{7}. Wait, no: 6"  wrong     lenient yes  (the box is the answer)
                 s1 well-formed, \\boxed{6}                 correct   lenient yes
    half-1 (9)   s0 well-formed, \\boxed{9}                 correct   lenient yes
                 s1 no <think>, \\boxed{8}                  wrong     lenient no
"""

import json
from pathlib import Path

import pytest
from fixtures_models import run_cli

from distill import artifacts

DATA = Path(__file__).parent / "data"
EXPECTED_CORRECT = {("add-1", 0): True, ("add-1", 1): False, ("mul-1", 0): True, ("mul-1", 1): False,
                    ("sub-1", 0): False, ("sub-1", 1): True, ("half-1", 0): True, ("half-1", 1): False}


def test_grade_fixed_outputs(home):
    result = run_cli("eval", "--outputs", str(DATA / "eval_outputs.jsonl"), "--benchmark",
                     str(DATA / "eval_small.jsonl"), "--name", "eval-fixed", home=home, check=True)
    assert "wrote eval-fixed@v0001" in result.stdout
    artifact = artifacts.resolve("eval-fixed", kind="eval")
    rows = artifact.load_dataset().to_list()
    assert {(r["id"], r["sample_index"]): r["correct"] for r in rows} == EXPECTED_CORRECT
    assert {r["id"] for r in rows if r["sample_index"] == 1 and r["status"] == "incorrect"} == {
        "add-1", "mul-1", "half-1"}
    by_key = {(r["id"], r["sample_index"]): r for r in rows}
    assert by_key[("mul-1", 1)]["verdict_reason"] == "no final answer found"
    assert by_key[("sub-1", 0)]["predicted"] == "7"
    assert by_key[("mul-1", 0)]["well_formed"] is False and by_key[("add-1", 0)]["well_formed"] is True

    results = json.loads((artifact.path / "results.json").read_text())
    bench = results["benchmarks"]["eval_small"]
    metrics = {name: value["mean"] for name, value in bench["metrics"].items()}
    assert bench["problems"] == 4 and bench["samples_per_problem"] == 2
    assert metrics["pass@1"] == pytest.approx(0.5)  # every problem has exactly one right sample
    assert bench["metrics"]["pass@1"]["stderr"] == pytest.approx(0.0)
    assert metrics["pass@2"] == pytest.approx(1.0)
    assert metrics["lenient_accuracy"] == pytest.approx((0.5 + 1 + 1 + 0.5) / 4)
    assert metrics["well_formed"] == pytest.approx((1 + 0 + 1 + 0.5) / 4)
    assert metrics["stopped"] == pytest.approx(7 / 8) and metrics["truncated"] == pytest.approx(1 / 8)
    assert metrics["completion_tokens"] == pytest.approx((30 + 20 + 8 + 64 + 40 + 24 + 22 + 6) / 8)
    assert results["sampling"]["source"] == "outputs"
    assert artifact.manifest["kind"] == "eval" and artifact.manifest["results_sha256"]
    assert "| eval_small | 4 × 2 | 50.0 [50.0, 50.0] | 100.0 [100.0, 100.0] | 75.0 [" in result.stdout


def test_outputs_without_references_are_refused(home):
    result = run_cli("eval", "--outputs", str(DATA / "eval_outputs.jsonl"), home=home)
    assert result.returncode == 2
    assert result.stderr.startswith("error: outputs") and "--answer-column 'answer'" in result.stderr
    assert result.stderr.count("\n") == 1 and not (home / "evals").exists()


def test_bad_benchmark_name_lists_known_ones(home):
    result = run_cli("eval", "--model", "bundled", "--benchmark", "gsm8kk", home=home)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "unknown benchmark 'gsm8kk'" in result.stderr
    for name in ("gsm8k", "math500", "aime24", "aime25", "gpqa-diamond", "livecodebench"):
        assert name in result.stderr
