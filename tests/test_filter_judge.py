"""`distill filter --judge MODEL [--audit N]`: an LLM judge asked only about rows the rules leave undecided,
never overriding a rule-based "incorrect"; its verdict and rationale stored per row, its prompt and model in the
manifest; an audit of rule vs judge; a judge that cannot be loaded or reached is one error line, exit 2."""

from __future__ import annotations

import json

import pytest
from fixtures_models import run_cli

from distill.config import build
from distill.stages.filter import FilterConfig, run
from distill.stages.filter.judge import JUDGE_PROMPT, audit_table, candidates, parse_verdict
from distill.verify import Verdict
from distill.verify.grader import GradeResult

THINK = "<think>I work through the problem step by step and check the arithmetic twice.</think>\n\n"


def test_parse_verdict():
    assert parse_verdict("Both are 7/2.\nVERDICT: CORRECT") == ("correct", "Both are 7/2.")
    assert parse_verdict("3.5 is not 4.\n**VERDICT: INCORRECT**")[0] == "incorrect"
    assert parse_verdict("verdict: correct... wait. VERDICT: INCORRECT")[0] == "incorrect"  # the last line counts
    assert parse_verdict("I think it is right.")[0] == "unclear"
    assert parse_verdict("")[0] == "unclear"


def _graded(status: str, reason: str) -> GradeResult:
    return GradeResult(well_formed=True, format_reason="ok", reasoning="r", answer_text="a", complete=True,
                       verdict=Verdict(status, None, reason))


def test_only_undecided_rows_are_asked():
    graded = [_graded("correct", "exact match"), _graded("incorrect", "math-verify"),  # decided by the rules
              _graded("incorrect", "no final answer found"), _graded("unverified", "timeout"),
              _graded("unverified", "no reference answer"), _graded("incorrect", "no final answer found")]
    graded[5].well_formed = False  # rejected by format before correctness: never asked
    references = ["1", "2", "3", "4", None, "6"]
    assert candidates(graded, ["math"] * 6, references) == [2, 3]
    assert candidates(graded, ["code"] * 6, references) == []


def test_audit_table():
    table = audit_table([("correct", "correct"), ("incorrect", "correct"), ("incorrect", "incorrect"),
                         ("correct", "unclear")])
    assert table == {"rows": 4, "judge_decided": 3, "agree": 2, "agreement": 0.6667,
                     "counts": {"correct/correct": 1, "incorrect/correct": 1, "incorrect/incorrect": 1,
                                "correct/unclear": 1}}


def _traces(path) -> None:
    rows = [{"id": "right", "problem": "What is 3 + 4?", "answer": "7", "completion": THINK + "So \\boxed{7}."},
            {"id": "wrong", "problem": "What is 2 + 2?", "answer": "4", "completion": THINK + "So \\boxed{5}."},
            {"id": "prose", "problem": "What is 5 + 5?", "answer": "10",
             "completion": THINK + "She ends up with ten apples in her basket."},
            {"id": "noref", "problem": "Prove that it holds.", "answer": None,
             "completion": THINK + "It holds by induction."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.vllm
def test_judge_through_a_real_server(home, tmp_path, vllm_server):
    path = tmp_path / "traces.jsonl"
    _traces(path)
    config = build(FilterConfig, {"input": str(path), "num_proc": 1, "skip": ["language", "dedup"],
                                  "judge": vllm_server.model, "judge_engine": "openai",
                                  "judge_base_url": vllm_server.base_url, "judge_max_tokens": 48, "audit": 2})
    artifact = run(config)
    data = artifact.load_dataset()
    rows = {r["id"]: r for split in ("train", "rejected") for r in data[split]}
    assert rows["prose"]["judge_verdict"] in ("correct", "incorrect", "unclear")  # asked: the rules found no answer
    assert rows["noref"]["judge_verdict"] is None  # no reference: nothing to judge against
    assert rows["wrong"]["verdict"] == "incorrect"  # a rule-based wrong stays wrong, whatever the judge says
    assert rows["right"]["verdict"] == "correct"
    judge = artifact.manifest["stats"]["judge"]
    assert judge["asked"] == 1 and sum(judge["verdicts"].values()) == 1
    assert judge["model"] == vllm_server.model and judge["prompt_template"] == JUDGE_PROMPT
    assert judge["audit"]["rows"] == 2  # the two rows the rules decided
    audited = [r for r in rows.values() if r["id"] in ("right", "wrong")]
    assert all(r["judge_verdict"] in ("correct", "incorrect", "unclear") for r in audited)
    if rows["prose"]["judge_verdict"] == "correct":
        assert rows["prose"]["verdict"] == "correct" and rows["prose"]["verdict_reason"].startswith("judge: ")
    else:
        assert rows["prose"]["verdict"] == "incorrect"


@pytest.mark.cli
@pytest.mark.parametrize("flags, message", [
    (["--judge", "/nowhere/judge-model"], "/nowhere/judge-model"),
    (["--audit", "3"], "--audit N needs --judge MODEL"),
    (["--judge", "some-model", "--judge-engine", "openai"], "--judge-engine openai needs --judge-base-url"),
    (["--judge", "some-model", "--judge-engine", "openai", "--judge-base-url", "http://127.0.0.1:9/v1"],
     "cannot reach the OpenAI-compatible server"),
])
def test_a_judge_that_cannot_load_is_one_error_line(home, tmp_path, flags, message):
    path = tmp_path / "traces.jsonl"
    _traces(path)
    result = run_cli("filter", "--input", str(path), "--skip", "language", *flags, home=home)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert not (home / "data" / "filtered").exists() or not any((home / "data" / "filtered").iterdir())


@pytest.mark.vllm
def test_judge_in_process_with_the_bundled_model(home, tmp_path, monkeypatch):
    """The default engine: the judge loads in-process (vLLM on CPU) and answers the one undecided row."""
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    path = tmp_path / "traces.jsonl"
    _traces(path)
    artifact = run(build(FilterConfig, {"input": str(path), "num_proc": 1, "skip": ["language", "dedup"],
                                        "judge": "bundled", "judge_max_tokens": 32, "judge_max_model_len": 2048}))
    judge = artifact.manifest["stats"]["judge"]
    assert judge["engine"] == "vllm" and judge["asked"] == 1 and sum(judge["verdicts"].values()) == 1
    rows = {r["id"]: r for split in ("train", "rejected") for r in artifact.load_dataset()[split]}
    assert rows["prose"]["judge_verdict"] in ("correct", "incorrect", "unclear") and rows["wrong"]["verdict"] == "incorrect"
