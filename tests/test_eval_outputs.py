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


@pytest.mark.cli
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
    # 4 problems at 1 of 2 each: no spread between problems, but 4 problems cannot give a point (Wilson union)
    assert "| eval_small | 4 × 2 | 50.0 [15.0, 85.0] | 100.0 [51.0, 100.0] | 75.0 [" in result.stdout


@pytest.mark.cli
def test_outputs_without_references_are_refused(home):
    result = run_cli("eval", "--outputs", str(DATA / "eval_outputs.jsonl"), home=home)
    assert result.returncode == 2
    assert result.stderr.startswith("error: outputs") and "--answer-column 'answer'" in result.stderr
    assert result.stderr.count("\n") == 1 and not (home / "evals").exists()


@pytest.mark.cli
def test_bad_benchmark_name_lists_known_ones(home):
    result = run_cli("eval", "--model", "bundled", "--benchmark", "gsm8kk", home=home)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "unknown benchmark 'gsm8kk'" in result.stderr
    for name in ("gsm8k", "math500", "aime24", "aime25", "gpqa-diamond", "livecodebench"):
        assert name in result.stderr


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _gpqa_copy(tmp_path):
    """Two made-up questions in GPQA's columns (the real set is gated and never bundled)."""
    rows = [{"Question": "Which gas do plants take in for photosynthesis?", "Correct Answer": "carbon dioxide",
             "Incorrect Answer 1": "oxygen", "Incorrect Answer 2": "helium", "Incorrect Answer 3": "neon",
             "Record ID": "q1"},
            {"Question": "Which planet is the largest?", "Correct Answer": "Jupiter", "Incorrect Answer 1": "Mars",
             "Incorrect Answer 2": "Venus", "Incorrect Answer 3": "Mercury", "Record ID": "q2"}]
    return _write_jsonl(tmp_path / "gpqa.jsonl", rows)


def test_multiple_choice_outputs_use_the_letter_grader(home, tmp_path):
    from distill.benchmarks import load_benchmark
    from distill.config import build
    from distill.stages.eval import EvalConfig, run

    spec = f"gpqa-diamond={_gpqa_copy(tmp_path)}"
    gold = {p.id: p.reference for p in load_benchmark(spec).problems}
    wrong = {pid: next(letter for letter in "ABCD" if letter != g) for pid, g in gold.items()}
    think = "<think>\nLet me recall the facts about this question carefully.\n</think>\n"
    outputs = _write_jsonl(tmp_path / "out.jsonl", [
        {"id": "gpqa-q1", "completion": f"{think}Answer: {gold['gpqa-q1']}", "finish_reason": "stop"},
        {"id": "gpqa-q1", "completion": f"{think}Answer: {wrong['gpqa-q1']}", "finish_reason": "stop"},
        {"id": "gpqa-q2", "completion": f"{think}The answer is \\boxed{{{gold['gpqa-q2']}}}", "finish_reason": "stop"},
        {"id": "gpqa-q2", "completion": f"{think}Answer: ({gold['gpqa-q2']})", "finish_reason": "stop"},
    ])
    ref = run(build(EvalConfig, {"outputs": outputs, "benchmark": [spec], "name": "eval-mc"}))
    rows = artifacts.resolve(ref).load_dataset().to_list()
    assert [(r["id"], r["sample_index"], r["correct"]) for r in rows] == [
        ("gpqa-q1", 0, True), ("gpqa-q1", 1, False), ("gpqa-q2", 0, True), ("gpqa-q2", 1, True)]
    assert all(r["domain"] == "multiple_choice" and r["lenient"] is None for r in rows)
    metrics = json.loads((artifacts.resolve(ref).path / "results.json").read_text())["benchmarks"]["gpqa-diamond"][
        "metrics"]
    assert metrics["pass@1"]["mean"] == pytest.approx(0.75) and metrics["lenient_accuracy"]["mean"] is None


def test_gated_benchmark_is_never_pushed(home, tmp_path):
    from distill.config import build
    from distill.errors import UserError
    from distill.stages.eval import EvalConfig, run

    cfg = build(EvalConfig, {"model": "bundled", "benchmark": [f"gpqa-diamond={_gpqa_copy(tmp_path)}"],
                             "push_to_hub": "someone/evals"})
    with pytest.raises(UserError, match="gpqa-diamond must not be published"):
        run(cfg)
    assert not (home / "evals").exists()


@pytest.mark.cli
def test_livecodebench_outputs_run_in_the_sandbox(home, tmp_path):
    import base64
    import pickle
    import zlib

    from distill.verify.code import sandbox_available

    if not sandbox_available()[0]:
        pytest.skip(f"no sandbox here: {sandbox_available()[1]}")
    private = [{"input": "10 -4\n", "output": "6\n", "testtype": "stdin"}]
    bench = _write_jsonl(tmp_path / "lcb.jsonl", [{
        "question_id": "abc001", "question_content": "Read two integers and print their sum.", "starter_code": "",
        "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
        "private_test_cases": base64.b64encode(zlib.compress(pickle.dumps(json.dumps(private)))).decode(),
        "metadata": "{}", "difficulty": "easy"}])
    outputs = _write_jsonl(tmp_path / "out.jsonl", [
        {"id": "abc001", "completion": "```python\na, b = map(int, input().split())\nprint(a + b)\n```"},
        {"id": "abc001", "completion": "```python\na, b = map(int, input().split())\nprint(a - b)\n```"},
    ])
    result = run_cli("eval", "--outputs", outputs, "--benchmark", f"livecodebench={bench}", "--name", "eval-code",
                     home=home, check=True)
    rows = artifacts.resolve("eval-code").load_dataset().to_list()
    assert [r["correct"] for r in rows] == [True, False]
    assert rows[1]["verdict_reason"].startswith("failed test")
    assert "| livecodebench | 1 × 2 | 50.0" in result.stdout


@pytest.mark.parametrize("values, message", [
    ({"model": "bundled", "benchmark": ["gsm8k"], "protocol": "lighteval"}, "unknown --protocol 'lighteval'"),
    ({"benchmark": ["gsm8k"]}, "no model to score"),
    ({"model": "bundled"}, "no benchmark"),
    ({"model": "bundled", "benchmark": ["gsm8k"], "top_p": 0}, "--top-p must be in"),
    ({"evals": ["eval-a", "eval-b"]}, "eval references are for --compare"),
    ({"model": "bundled", "benchmark": [str(DATA / "eval_small.jsonl")], "protocol": "greedy", "pass_at": [4]},
     "--pass-at 4 needs that many samples per problem"),
])
def test_bad_options_are_one_line_errors(home, values, message):
    from distill.config import build
    from distill.errors import UserError
    from distill.stages.eval import EvalConfig, run

    with pytest.raises(UserError, match=message):
        run(build(EvalConfig, values))
    assert not (home / "evals").exists()


def test_lora_checkpoints_vllm_cannot_attach_are_refused(home, bundled_model_dir):
    from distill.config import build
    from distill.errors import UserError
    from distill.stages.eval import EvalConfig, run

    with artifacts.create("sft-lora", "checkpoint") as writer:
        writer.model_path.mkdir()
        (writer.model_path / "adapter_config.json").write_text(json.dumps(
            {"base_model_name_or_path": str(bundled_model_dir), "r": 8, "modules_to_save": ["embed_tokens"]}))
    bench = [str(DATA / "eval_small.jsonl")]
    with pytest.raises(UserError, match=r"trains \['embed_tokens'\] in full, which vLLM cannot attach"):
        run(build(EvalConfig, {"model": "sft-lora@v1", "benchmark": bench}))
    with pytest.raises(UserError, match="sft-lora@v0001 is a LoRA adapter: evaluate it with --engine vllm"):
        run(build(EvalConfig, {"model": "sft-lora@v1", "benchmark": bench, "engine": "openai",
                               "base_url": "http://127.0.0.1:9/v1"}))
    assert not (home / "evals").exists()


def test_adapter_base_falls_back_to_the_adapters_own_record(home, bundled_model_dir):
    from distill import models

    with artifacts.create("moved-lora", "checkpoint") as writer:
        writer.model_path.mkdir()
        (writer.model_path / "adapter_config.json").write_text(json.dumps(
            {"base_model_name_or_path": str(bundled_model_dir), "r": 8}))
        (writer.model_path / "chat_template.jinja").write_text("{{ messages }}")
        writer.extra["student"] = {"spec": "./relative/student/from/another/cwd"}
    artifact = artifacts.resolve("moved-lora")
    ref = models.resolve(str(artifact.path))
    model, adapter, template = ref.path, ref.adapter, ref.chat_template
    assert model == str(bundled_model_dir) and adapter == str(artifact.model_path)
    assert template == str(artifact.model_path / "chat_template.jinja")
