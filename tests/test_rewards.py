"""GRPO reward functions (distill/stages/train/rewards.py): one grader with `distill filter`, timeouts that cost a 0
and never a hang, the shape rewards on hand-made completions, and TRL's call shape."""

from __future__ import annotations

import copy
import json
import pickle
import time
from pathlib import Path

import pytest

from distill.config import build
from distill.errors import UserError
from distill.stages import filter as filter_stage
from distill.stages.filter import FilterConfig
from distill.stages.train.rewards import (
    REWARDS,
    RewardColumns,
    check_reward_columns,
    completion_text,
    make_reward_functions,
    overlong_penalty,
    parse_reward_specs,
    prompt_text,
    tag_count_score,
)
from distill.verify.code import sandbox_available
from distill.verify.grader import GradeConfig

DATA = Path(__file__).parent / "data"
SANDBOX, WHY = sandbox_available()
needs_sandbox = pytest.mark.skipif(not SANDBOX, reason=f"no code sandbox here: {WHY}")
REASONING = "Let me work through this carefully, checking every step twice before answering."
THINK = f"<think>\n{REASONING}\n</think>\n\n"
SUM_TESTS = json.dumps({"inputs": ["1 2\n", "5 7\n"], "outputs": ["3\n", "12\n"]})


def trl_call(func, prompts, completions, conversational=False, **columns):
    """Call a reward function the way TRL 1.16's GRPOTrainer._calculate_rewards does."""
    completion_ids = [list(range(len(c) // 4)) for c in completions]  # as if 4 characters a token
    if conversational:
        prompts = [[{"role": "system", "content": "Think first."}, {"role": "user", "content": p}] for p in prompts]
        completions = [[{"role": "assistant", "content": c}] for c in completions]
    metrics, extra = {}, {}
    out = func(prompts=prompts, completions=completions, completion_ids=completion_ids,
               **columns, trainer_state=object(), log_metric=lambda name, value: metrics.setdefault(name, value),
               log_extra=lambda column, values: extra.setdefault(column, values))
    assert isinstance(out, list) and len(out) == len(completions) and all(isinstance(r, float) for r in out)
    return out


@pytest.fixture(scope="module")
def rewards():
    """Every reward, one shared warm pool (closed at the end)."""
    funcs, _ = make_reward_functions(list(REWARDS), GradeConfig(timeout_s=3.0, code_timeout=2.0), RewardColumns(),
                                     max_completion_length=100, num_proc=2)
    yield {f.__name__: f for f in funcs}
    for f in funcs:
        f.close()


# ---------------------------------------------------------------------------- specs


def test_parse_reward_specs_names_weights_and_defaults():
    assert parse_reward_specs(["accuracy:1.0", "format:0.2", "language:0.1", "length", "tag_count"]) == [
        ("accuracy", 1.0), ("format", 0.2), ("language", 0.1), ("length", 1.0), ("tag_count", 1.0)]
    assert parse_reward_specs(["accuracy:2, format:0", "Tag-Count:0.5"]) == [
        ("accuracy", 2.0), ("format", 0.0), ("tag_count", 0.5)]


@pytest.mark.parametrize("specs, message", [
    (["accuracy", "speed:1"], r"'speed' is not a reward; use one of accuracy, format, language, length, tag_count"),
    (["accuracy:nan"], "finite number >= 0"),
    (["accuracy:inf"], "finite number >= 0"),
    (["format:-0.5"], "finite number >= 0"),
    (["format:abc"], "'abc' is not a number"),
    (["format:"], "'' is not a number"),
    (["accuracy:1", "accuracy:2"], "given twice"),
    ([], "no --reward given"),
])
def test_bad_reward_specs_are_one_line_user_errors(specs, message):
    with pytest.raises(UserError, match=message) as caught:
        parse_reward_specs(specs)
    assert "\n" not in str(caught.value)


def test_make_reward_functions_names_weights_and_bad_options():
    grade = GradeConfig()
    funcs, weights = make_reward_functions(["length:0.5", ("accuracy", 1.0), "tag_count"], grade, RewardColumns(),
                                           max_completion_length=64, num_proc=1)
    assert [f.__name__ for f in funcs] == ["length", "accuracy", "tag_count"] and weights == [0.5, 1.0, 1.0]
    from trl.trainer.utils import get_callable_name  # the name TRL logs rewards/<name>/mean under

    assert [get_callable_name(f) for f in funcs] == ["length", "accuracy", "tag_count"]
    for f in funcs:
        f.close()
    with pytest.raises(UserError, match="not a reward"):
        make_reward_functions([("speed", 1.0)], grade, RewardColumns(), 64, 1)
    with pytest.raises(UserError, match="max-completion-length"):
        make_reward_functions(["length"], grade, RewardColumns(), 0, 1)
    with pytest.raises(UserError, match="overlong cache"):
        make_reward_functions(["length"], grade, RewardColumns(), 64, 1, overlong_cache=65)


def test_check_reward_columns_refuses_data_the_accuracy_reward_cannot_grade():
    cols = RewardColumns()
    check_reward_columns(["accuracy"], cols, ["prompt", "solution"])  # the filter's fallback column is enough
    check_reward_columns(["format"], cols, ["prompt"])  # no reference needed
    with pytest.raises(UserError, match="no column 'answer'.*available columns: prompt, gold"):
        check_reward_columns(["accuracy"], cols, ["prompt", "gold"])
    with pytest.raises(UserError, match="no column 'test_cases'"):
        check_reward_columns(["accuracy"], cols, ["prompt", "answer"], domains=["math", "code"])
    funcs, _ = make_reward_functions(["accuracy"], GradeConfig(), cols, 64, 1)
    with pytest.raises(UserError, match="no reference answers"):  # called anyway: an error, never silent zeros
        trl_call(funcs[0], ["2+3?"], [THINK + "\\boxed{5}"], gold=["5"])


# ---------------------------------------------------------------------------- one grader with `distill filter`


def _filter_verdicts(tmp_path, rows: list[dict]) -> tuple[dict[str, str], set[str], FilterConfig]:
    """Run the real `distill filter` (in process) on ``rows``: (case -> its verdict column, kept cases, config)."""
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = build(FilterConfig, {"input": str(path), "num_proc": 2, "timeout": 5.0, "max_tokens": 32768})
    data = filter_stage.run(cfg).load_dataset()
    verdicts = {r["case"]: r["verdict"] for split in data.values() for r in split}
    return verdicts, {r["case"] for r in data["train"]}, cfg


def _assert_reward_is_filter_verdict(tmp_path, rows):
    verdicts, kept, cfg = _filter_verdicts(tmp_path, rows)
    funcs, _ = make_reward_functions(["accuracy"], cfg.grade_config(), RewardColumns(), 32768, num_proc=2)
    columns = {key: [r.get(key) for r in rows] for key in ("answer", "solution", "domain", "test_cases", "id")}
    try:
        for conversational in (False, True):
            got = trl_call(funcs[0], [r["problem"] for r in rows], [r["completion"] for r in rows],
                           conversational=conversational, **columns)
            mismatches = [(r["case"], verdicts[r["case"]], reward) for r, reward in zip(rows, got, strict=True)
                          if reward != float(verdicts[r["case"]] == "correct")]
            assert not mismatches, mismatches
            assert all(reward == 1.0 for r, reward in zip(rows, got, strict=True) if r["case"] in kept)
    finally:
        funcs[0].close()
    return verdicts


def test_accuracy_reward_is_the_filter_verdict_on_math_and_choice(home, tmp_path):
    rows = [json.loads(line) for line in (DATA / "realistic_traces.jsonl").read_text().splitlines()]
    extra = [  # GSM8K references, a boxed fraction, multiple-choice letters, a solution-column reference
        ("gsm8k_right", "math", "Janet sells 16 - 3 - 4 = 9 eggs at $2.\n#### 18", None, "She makes \\boxed{\\$18}."),
        ("gsm8k_thousands", "math", "#### 70000", None, "He made a profit of \\boxed{70,000} dollars."),
        ("gsm8k_wrong", "math", "#### 18", None, "She makes \\boxed{16} dollars."),
        ("gsm8k_no_box", "math", "#### 72", None, "Natalia sold 72 clips altogether."),
        ("fraction", "math", "0.5", None, "The probability is $\\boxed{\\frac{1}{2}}$."),
        ("choice_right", "multiple_choice", "B", None, "The answer is \\boxed{B}."),
        ("choice_wrong", "multiple_choice", "(B)", None, "Answer: D"),
        ("solution_column", "math", None, "So $x = \\boxed{7}$.", "Therefore \\boxed{7}."),
        ("no_answer", "math", "7", None, ""),
    ]
    for case, domain, answer, solution, final in extra:
        rows.append({"case": case, "id": case, "domain": domain, "answer": answer, "solution": solution,
                     "problem": f"Problem {case}: compute the requested value.", "finish_reason": "stop",
                     "completion": THINK + final if final else "<think>\nI keep thinking without ever stopping"})
    verdicts = _assert_reward_is_filter_verdict(tmp_path, rows)
    assert {verdicts[c] for c in ("gsm8k_right", "gsm8k_thousands", "fraction", "choice_right", "solution_column")} \
        == {"correct"}
    assert verdicts["gsm8k_wrong"] == verdicts["choice_wrong"] == verdicts["no_answer"] == "incorrect"
    assert sum(v == "correct" for v in verdicts.values()) >= 20


@needs_sandbox
def test_accuracy_reward_is_the_filter_verdict_on_code(home, tmp_path):
    program = "```python\na, b = map(int, input().split())\nprint(a {} b)\n```"
    rows = [{"case": case, "id": case, "domain": "code", "test_cases": SUM_TESTS, "finish_reason": "stop",
             "problem": f"Read two integers and print their sum ({case}).", "completion": THINK + body}
            for case, body in (("code_right", program.format("+")), ("code_wrong", program.format("*")),
                               ("code_crash", "```python\nprint(1 // 0)\n```"), ("code_none", "It is a + b."))]
    verdicts = _assert_reward_is_filter_verdict(tmp_path, rows)
    assert verdicts == {"code_right": "correct", "code_wrong": "incorrect", "code_crash": "incorrect",
                        "code_none": "incorrect"}


def test_choices_column_turns_an_index_or_option_text_into_its_letter(rewards):
    options = ["2.1 eV", "3.1 eV", "4.2 eV", "5.3 eV"]
    got = trl_call(rewards["accuracy"], ["Energy?"] * 4, [THINK + "\\boxed{C}", THINK + "\\boxed{C}",
                                                           THINK + "Answer: A", THINK + "\\boxed{B}"],
                   answer=[2, "4.2 eV", 2, "B"], domain=["multiple_choice"] * 4,
                   choices=[options, dict(zip("ABCD", options, strict=True)), options, None])
    assert got == [1.0, 1.0, 0.0, 1.0]


# ---------------------------------------------------------------------------- timeouts cost a 0, never a hang


def test_hanging_math_check_costs_one_timeout_and_the_pool_goes_on():
    timeout_s = 2.0
    funcs, _ = make_reward_functions(["accuracy"], GradeConfig(timeout_s=timeout_s), RewardColumns(), 1024, 2)
    accuracy = funcs[0]
    completions = [THINK + "\\boxed{2^{2^{2^{2^{2^{2}}}}}}", THINK + "\\boxed{10^{10^{10}}}", THINK + "\\boxed{18}"]
    try:
        trl_call(accuracy, ["warm up"], [THINK + "\\boxed{1}"], answer=["1"])  # the pool is up before the clock
        started = time.monotonic()
        got = trl_call(accuracy, ["Tower?", "Power?", "Eggs?"], completions, answer=["5", "5", "18"])
        elapsed = time.monotonic() - started
        assert got == [0.0, 0.0, 1.0]
        assert elapsed < timeout_s + 3, elapsed  # two workers: both hanging checks killed side by side
        metrics = {}
        accuracy(prompts=["Tower?"], completions=completions[:1], answer=["5"], log_metric=metrics.__setitem__)
        assert metrics == {"accuracy/timeouts": 1.0, "accuracy/unverified": 1.0}
        assert trl_call(accuracy, ["Eggs?"], [THINK + "\\boxed{18}"], answer=["#### 18"]) == [1.0]  # fresh workers
    finally:
        accuracy.close()


@needs_sandbox
def test_sleeping_program_costs_one_timeout():
    code_timeout = 1.5
    funcs, _ = make_reward_functions(["accuracy"], GradeConfig(code_timeout=code_timeout), RewardColumns(), 1024, 2)
    sleeper = THINK + "```python\nimport time\ntime.sleep(60)\n```"
    good = THINK + "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    try:
        started = time.monotonic()
        got = trl_call(funcs[0], ["Sum?", "Sum?"], [sleeper, good], domain=["code", "code"],
                       test_cases=[SUM_TESTS, SUM_TESTS])
        elapsed = time.monotonic() - started
    finally:
        funcs[0].close()
    assert got == [0.0, 1.0]
    assert elapsed < code_timeout + 5, elapsed  # the first test times out and the row stops there


def test_degenerate_reasoning_is_checked_within_the_timeout():
    # thousands of unclosed "\[" once made the language check's LaTeX regex quadratic (~10 s in process for this
    # one; the "θ" keeps it off the Latin-only fast path); it is linear now: the finished check passes, in time
    timeout_s = 1.5
    funcs, _ = make_reward_functions(["language"], GradeConfig(timeout_s=timeout_s), RewardColumns(), 1024, 1)
    degenerate = "<think>\nLet θ be the angle. " + "\\[ a " * 20000 + "\n</think>\n\nDone."
    try:
        trl_call(funcs[0], ["warm up"], [THINK + "ok"])
        started = time.monotonic()
        got = trl_call(funcs[0], ["What is 2+2?", "What is 2+2?"], [degenerate, THINK + "It is 4."])
        elapsed = time.monotonic() - started
    finally:
        funcs[0].close()
    assert got == [1.0, 1.0] and elapsed < timeout_s + 3, (got, elapsed)


# ---------------------------------------------------------------------------- shape rewards on hand-made completions


@pytest.mark.parametrize("completion, expected", [
    (THINK + "The answer is \\boxed{4}.", 1.0),
    (f"{REASONING}\n</think>\n\nThe answer is 4.", 1.0),  # <think> prefilled by the chat template
    ("The answer is \\boxed{4}.", 0.0),  # no reasoning block
    (f"<think>\n{REASONING}", 0.0),  # unclosed (cut off)
    ("<think>\nshort\n</think>\n\n4", 0.0),  # under min_reasoning_chars
    (THINK, 0.0),  # no answer
    (THINK + THINK + "4", 0.0),  # two blocks
    ("Sure. " + THINK + "4", 0.0),  # block not at the start
    (THINK.replace("<think>", "<|begin_of_thought|>").replace("</think>", "<|end_of_thought|>") + "4", 1.0),
])
def test_format_reward_is_the_filter_format_check(rewards, completion, expected):
    assert trl_call(rewards["format"], ["Q?"], [completion]) == [expected]
    assert trl_call(rewards["format"], ["Q?"], [completion], conversational=True) == [expected]


@pytest.mark.parametrize("completion, domain, expected", [
    (THINK + "So \\boxed{4}.", "math", 1.0),
    (THINK + "It is 4.", "math", 0.75),  # no \boxed{}
    (f"<think>{REASONING}</think>\n\n\\boxed{{4}}", "math", 0.5),  # tags not on their own lines
    (f"{REASONING}\n</think>\n\n\\boxed{{4}}", "math", 1.0),  # prefilled <think>
    (THINK + "<think>\nmore\n</think>\n\n\\boxed{4}", "math", 0.5),  # second block: opens/closes twice
    (THINK, "math", 0.5),  # a closed block, no answer
    (f"<think>\n{REASONING}", "math", 0.25),  # opened, never closed
    ("\\boxed{4}", "math", 0.0),
    (THINK + "Answer: C", "multiple_choice", 1.0),
    (THINK + "I am not sure.", "multiple_choice", 0.75),
    (THINK + "```python\nprint(1)\n```", "code", 1.0),
    (THINK + "print(1)", "code", 0.75),
])
def test_tag_count_partial_credit(rewards, completion, domain, expected):
    assert tag_count_score(completion, domain) == expected
    assert trl_call(rewards["tag_count"], ["Q?"], [completion], domain=[domain]) == [expected]


def test_language_reward_follows_the_last_user_message(rewards):
    english = THINK + "4"
    chinese = "<think>\n我们先把两个数相加，二加二等于四，然后再检查一遍答案是否正确。\n</think>\n\n4"
    got = trl_call(rewards["language"], ["What is 2+2?", "What is 2+2?", "二加二等于几？"], [english, chinese, chinese])
    assert got == [1.0, 0.0, 1.0]
    few_shot = [{"role": "system", "content": "Reason step by step."}, {"role": "user", "content": "一加一等于几？"},
                {"role": "assistant", "content": "二"}, {"role": "user", "content": "What is 2+2?"}]
    completions = [[{"role": "assistant", "content": c}] for c in (english, chinese)]
    assert rewards["language"](prompts=[few_shot, few_shot], completions=completions, trainer_state=None) == [1.0, 0.0]


def test_length_reward_is_dapo_soft_overlong_penalty(rewards):
    # max_completion_length 100, cache 100 // 4 = 25: flat up to 75 tokens, then down to -1 at 100
    assert [overlong_penalty(n, 100, 25) for n in (0, 75, 80, 90, 100, 120)] == [0.0, 0.0, -0.2, -0.6, -1.0, -1.0]
    length = rewards["length"]
    got = length(prompts=["Q"] * 3, completions=["a", "b", "c"], completion_ids=[[0] * 10, [0] * 85, [0] * 100])
    assert got == [0.0, -0.4, -1.0]
    assert length(prompts=["Q"], completions=["x" * 320]) == [-0.2]  # no token ids: the filter's chars/4 estimate
    assert length(prompts=["Q"], completions=["x" * 300]) == [0.0]


# ---------------------------------------------------------------------------- TRL's call shape


def test_every_reward_takes_trl_keywords_and_returns_one_float_per_completion(rewards):
    completions = [THINK + "So \\boxed{4}.", "The answer is 4.", "", THINK + "\\boxed{5}"]
    columns = dict(answer=["4", "4", "4", "4"], domain=["math"] * 4, id=[1, 2, 3, 4], unrelated=["x"] * 4)
    for name, func in rewards.items():
        plain = trl_call(func, ["What is 2+2?"] * 4, completions, **columns)
        assert plain == trl_call(func, ["What is 2+2?"] * 4, completions, conversational=True, **columns), name
        assert func(prompts=[], completions=[], completion_ids=[], answer=[], trainer_state=None) == [], name
    assert trl_call(rewards["accuracy"], ["What is 2+2?"] * 4, completions, **columns) == [1.0, 1.0, 0.0, 0.0]


def test_completion_and_prompt_text_of_messages():
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text",
                                                                                              "text": "b"}]}]) == "ab"
    parsed = [{"role": "assistant", "reasoning_content": REASONING, "content": "\\boxed{4}"}]  # transformers' parser
    assert completion_text(parsed) == THINK + "\\boxed{4}"
    tool_turns = [{"role": "assistant", "content": "calling"}, {"role": "tool", "content": "4"},
                  {"role": "assistant", "content": "final"}]
    assert completion_text(tool_turns) == "final" and completion_text(None) == ""
    assert prompt_text([{"role": "system", "content": "s"}]) is None and prompt_text("p") == "p"


def test_rewards_close_pickle_and_reopen():
    funcs, _ = make_reward_functions(["accuracy", "language"], GradeConfig(), RewardColumns(), 64, 1)
    accuracy, language = funcs
    assert accuracy.pool is language.pool  # one pool serves both
    assert trl_call(accuracy, ["Q"], [THINK + "\\boxed{3}"], answer=["3"]) == [1.0]
    workers = list(accuracy.pool.pool.workers)
    assert workers and all(w.process.is_alive() for w in workers)
    clone = pickle.loads(pickle.dumps(accuracy))  # TRL / accelerate may copy a reward: the copy has no pool yet
    assert clone.pool.pool is None and copy.deepcopy(language).pool.pool is None
    accuracy.close()
    assert accuracy.pool.pool is None and not any(w.process.is_alive() for w in workers)
    assert trl_call(language, ["Q"], [THINK + "ok"]) == [1.0]  # reopened on use
    assert trl_call(clone, ["Q"], [THINK + "\\boxed{3}"], answer=["3"]) == [1.0]
    for f in (language, clone):
        f.close()


def test_accuracy_reward_reads_the_answer_as_the_extraction_mode_says():
    """strict (R1's reward: the last box only) pays nothing for an unboxed right answer; standard pays the phrase;
    lenient also the last number; and TrainConfig refuses an unknown mode in one line."""
    completions = [THINK + "Final Answer: The final answer is 42. I hope it is correct.", THINK + "It comes to 42."]
    paid = {}
    for mode in ("strict", "standard", "lenient"):
        funcs, _ = make_reward_functions(["accuracy"], GradeConfig(timeout_s=3.0, answer_extraction=mode),
                                         RewardColumns(), max_completion_length=100, num_proc=1)
        try:
            paid[mode] = trl_call(funcs[0], ["What is 6 times 7?"] * 2, completions, answer=["42", "42"])
        finally:
            funcs[0].close()
    assert paid == {"strict": [0.0, 0.0], "standard": [1.0, 0.0], "lenient": [1.0, 1.0]}
    from distill.stages.train import TrainConfig

    with pytest.raises(UserError, match="--answer-extraction must be one of strict, standard, lenient"):
        build(TrainConfig, {"dataset": "x.jsonl", "method": "grpo", "answer_extraction": "fuzzy"})
