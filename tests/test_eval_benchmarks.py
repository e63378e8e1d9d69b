"""Benchmark registry and loading: built-ins from local copies, user files, GPQA shuffling, LiveCodeBench tests."""

import base64
import json
import pickle
import zlib
from pathlib import Path

import pytest

from distill import benchmarks
from distill.benchmarks import BENCHMARKS, builtin, decode_private_tests, load_benchmark
from distill.errors import UserError

DATA = Path(__file__).parent / "data"


def test_registry_names_hub_sources():
    assert set(BENCHMARKS) == {"gsm8k", "math500", "aime24", "aime25", "gpqa-diamond", "livecodebench"}
    assert (BENCHMARKS["gsm8k"].hub_id, BENCHMARKS["gsm8k"].config, BENCHMARKS["gsm8k"].split) == (
        "openai/gsm8k", "main", "test")
    assert BENCHMARKS["math500"].hub_id == "HuggingFaceH4/MATH-500"
    assert BENCHMARKS["gpqa-diamond"].gated and BENCHMARKS["gpqa-diamond"].config == "gpqa_diamond"
    # lighteval's sample counts (open-r1 README): AIME 64, MATH-500 4, GPQA 8, LiveCodeBench 16
    assert [BENCHMARKS[b].samples["open-r1"] for b in ("aime24", "math500", "gpqa-diamond", "livecodebench")] == [
        64, 4, 8, 16]
    assert builtin("MATH-500").name == "math500" and builtin("gpqa").name == "gpqa-diamond"


def test_builtin_from_a_local_copy_keeps_its_conventions():
    bench = load_benchmark(f"gsm8k={DATA / 'eval_gsm8k.jsonl'}")
    assert bench.name == "gsm8k" and bench.builtin is BENCHMARKS["gsm8k"]
    assert [p.reference for p in bench.problems] == ["18", "3", "70000", "540"]  # "#### 70,000" style stripped
    assert [p.id for p in bench.problems] == ["gsm8k-0", "gsm8k-1", "gsm8k-2", "gsm8k-3"]
    assert bench.problems[0].problem.startswith("Janet")
    assert bench.source["type"] == "file" and len(bench.source["sha256"]) == 64


def test_local_file_with_problem_answer_columns_and_limit():
    bench = load_benchmark(str(DATA / "eval_small.jsonl"), limit=2)
    assert bench.name == "eval_small" and bench.builtin is None
    assert [(p.id, p.reference, p.domain) for p in bench.problems] == [("add-1", "5", "math"), ("mul-1", "42", "math")]


def test_other_columns_and_worked_solutions(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "solution": "We add. #### 2"}) + "\n"
                    + json.dumps({"question": "2+2?", "solution": "so the answer is \\boxed{4}"}) + "\n")
    bench = load_benchmark(str(path), problem_column="question", answer_column="solution")
    assert [(p.id, p.reference) for p in bench.problems] == [("mine-0", "2"), ("mine-1", "4")]
    with pytest.raises(UserError, match="no column --problem-column 'problem'.*question"):
        load_benchmark(str(path))


def test_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(UserError) as info:
        load_benchmark("gsm9k")
    message = str(info.value)
    assert "unknown benchmark 'gsm9k'" in message
    for name in BENCHMARKS:
        assert name in message
    with pytest.raises(UserError, match="NAME=FILE needs a built-in NAME"):
        load_benchmark("nope=tests/data/eval_small.jsonl")


def test_duplicate_ids_are_refused(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": 1, "problem": "a", "answer": "1"}\n{"id": 1, "problem": "b", "answer": "2"}\n')
    with pytest.raises(UserError, match="duplicate id '1'"):
        load_benchmark(str(path))


def _gpqa_row(record="rec123"):
    return {"Question": "Which is heavier? ", "Correct Answer": "lead", "Incorrect Answer 1": "feather",
            "Incorrect Answer 2": "air", "Incorrect Answer 3": "foam", "Record ID": record}


def test_gpqa_options_are_shuffled_with_a_fixed_seed():
    problem = benchmarks._gpqa(_gpqa_row(), 0)
    again = benchmarks._gpqa(_gpqa_row(), 7)
    assert problem == again  # same question -> same order, whatever its row position
    assert problem.domain == "multiple_choice" and problem.prompt_template == "{problem}"
    choices = problem.extra["choices"]
    assert sorted(choices.values()) == ["air", "feather", "foam", "lead"]
    assert choices[problem.reference] == "lead"
    assert f"{problem.reference}) lead" in problem.problem
    assert problem.problem.startswith("Answer the following multiple choice question.")
    # the order depends on the question: across many records the gold letter is not always the same
    letters = {benchmarks._gpqa(_gpqa_row(f"r{i}"), i).reference for i in range(40)}
    assert letters == {"A", "B", "C", "D"}


def test_livecodebench_private_tests_decode_and_refuse_code():
    tests = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]
    encoded = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()
    assert decode_private_tests(encoded) == tests
    evil = base64.b64encode(zlib.compress(pickle.dumps(Path("/etc/passwd")))).decode()
    with pytest.raises(UserError, match="refusing to unpickle"):
        decode_private_tests(evil)
    row = {"question_id": "abc", "question_content": "Add two numbers.", "starter_code": "",
           "public_test_cases": json.dumps([{"input": "0 0\n", "output": "0\n", "testtype": "stdin"}]),
           "private_test_cases": encoded, "metadata": "{}", "difficulty": "easy"}
    problem = benchmarks._livecodebench(row, 0)
    assert problem.domain == "code" and problem.reference is None and len(problem.test_cases) == 2
    assert "Read the inputs from stdin" in problem.problem and problem.fn_name is None


def test_offline_hub_benchmark_says_how_to_use_a_local_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match=r"cannot load Hub dataset 'openai/gsm8k'.*--benchmark gsm8k=FILE"):
        load_benchmark("gsm8k")
