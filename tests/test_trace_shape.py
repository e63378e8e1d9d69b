"""Trace-shape checks of `distill filter`: a looping trace is rejected as ``repetition``, text rambling on
after the final answer as ``tail``; a long calculation whose numbers change is no loop. The real filter
runs in process on a small jsonl: both reasons show in the funnel, the columns and the stats."""

from __future__ import annotations

import json
import random

import pytest

from distill import log
from distill.config import build
from distill.errors import UserError
from distill.stages import filter as filter_stage
from distill.stages.filter import FilterConfig
from distill.stages.filter.features import reasoning_answer_ratio, row_checks
from distill.verify.grader import GradeResult
from distill.verify.shape import (
    MAX_PERIOD,
    is_loop,
    longest_run,
    measure_shape,
    tail_chars,
    tokens,
)

REASONING = ("We need the sum of 2 and 3. Counting up from 2 gives 3, 4 and then 5, so the sum is 5. "
             "As a check, 5 minus 3 leaves 2, which is where we started.")
SENTENCE = "Let me verify the sum once more to be completely sure. "
PHRASE = "Let me check again. "
CJK_PROBLEM = "计算二加三等于多少？"
CJK_LOOP = "我们再检查一次这个结果是否正确。"


def _completion(reasoning: str, answer: str = "The answer is \\boxed{5}.") -> str:
    return f"<think>\n{reasoning}\n</think>\n\n{answer}"


def _arithmetic(steps: int = 300) -> tuple[str, int]:
    """A long, legitimate trace: one template said ``steps`` times, its numbers changing every time."""
    total, lines = 0, []
    for k in range(1, steps + 1):
        add = (k * 7) % 13 + 1
        lines.append(f"Step {k}: the running total is {total}, we add {add} to get {total + add}. Let me double "
                     "check that addition once more before moving on to the next step.")
        total += add
    return _completion("\n".join(lines), f"The total is \\boxed{{{total}}}."), total


# ---------------------------------------------------------------------------- the measures


def test_a_sentence_repeated_40_times_is_a_loop():
    shape = measure_shape(_completion(REASONING + " " + SENTENCE * 40))
    assert shape.max_ngram_repeats > 20  # AM-Thinking's rule: a 20-gram more than 20 times
    assert (shape.loop_repeats, shape.loop_period) == (40, len(SENTENCE.split()))
    assert is_loop(shape)


def test_a_short_phrase_loop_at_the_end_is_caught_by_the_run_not_the_ngram_count():
    shape = measure_shape(_completion(REASONING + " " + PHRASE * 10))
    assert shape.max_ngram_repeats <= 20  # too short for the 20-gram rule...
    assert (shape.loop_repeats, shape.loop_period) == (10, 4) and shape.loop_share >= 0.3
    assert is_loop(shape)  # ...the consecutive run catches it
    assert not is_loop(shape, min_loop_repeats=11) and not is_loop(shape, min_loop_share=0.9)  # thresholds apply


def test_cjk_and_text_without_spaces_are_read_character_by_character():
    assert tokens("答案是5。") == ["答", "案", "是", "5", "。"]
    assert tokens("mixed 中文 text") == ["mixed", "中", "文", "text"]
    cjk = measure_shape(_completion("二加三等于五。" + CJK_LOOP * 40))
    assert cjk.max_ngram_repeats > 20 and cjk.loop_repeats == 40 and is_loop(cjk)
    laughing = measure_shape(_completion(REASONING + " " + "ha" * 300))  # one 600-character "word"
    assert (laughing.loop_repeats, laughing.loop_period) == (300, 2) and is_loop(laughing)
    assert not is_loop(measure_shape(_completion("二加三，从二数起：三、四、五。所以和是五。再验算：五减三等于二。")))


def test_a_long_arithmetic_trace_with_changing_numbers_is_not_a_loop():
    completion, _ = _arithmetic()
    shape = measure_shape(completion)
    assert shape.num_tokens > 7000 and shape.max_ngram_repeats == 1 and shape.loop_repeats == 0
    assert not is_loop(shape)
    # the digits are what tell the steps apart: the same trace with its numbers blanked is a loop
    blanked = measure_shape("".join("N" if c.isdigit() else c for c in completion))
    assert blanked.max_ngram_repeats > 20 and is_loop(blanked)


def test_short_repeats_in_ordinary_text_are_kept():
    vector = "The initial state is the zero vector 0 0 0 0 0 0 0 0 0 0, and after one step it becomes 1 0 0 0."
    shape = measure_shape(_completion(REASONING + " " + vector + " " + REASONING.replace("2", "4")))
    assert shape.loop_repeats >= 8 and shape.loop_share < 0.3  # ten zeros in a row: measured, but a small share
    assert not is_loop(shape)
    assert measure_shape("").num_tokens == 0 and not is_loop(measure_shape(""))


def test_longest_run_agrees_with_a_brute_force_scan():
    """The block-comparison search (``longest_run``) finds the same run as trying every start and period."""
    def brute(s: str) -> tuple[int, int]:
        best = (0, 0, 0)
        for period in range(1, min(MAX_PERIOD, len(s) // 3) + 1):
            j = 0
            while j < len(s) - period:
                if s[j] != s[j + period]:
                    j += 1
                    continue
                k = j
                while k < len(s) - period and s[k] == s[k + period]:
                    k += 1
                copies = (k + period - j) // period
                if copies >= 3 and copies * period > best[0]:
                    best = (copies * period, copies, period)
                j = k
        return best[1], best[2]

    rng = random.Random(7)
    for _ in range(400):
        alphabet = rng.choice(["ab", "abc", "abcdefgh", "abcdefghijklmnopqrstuvwxyz"])
        parts = []
        for _ in range(rng.randint(1, 6)):
            unit = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
            noise = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
            parts.append(unit * rng.randint(1, 10) + unit[:rng.randint(0, len(unit))] if rng.random() < 0.5 else noise)
        text = "".join(parts)
        assert longest_run(text) == brute(text), text


def test_tail_after_the_final_answer():
    assert tail_chars("So the answer is \\boxed{\\frac{1}{2}}.") == 1  # nested braces: the box ends at its own }
    assert tail_chars("\\[\n\\boxed{5}\n\\]") == 2
    helps = "The answer is \\boxed{5}. " + "I hope this helps! " * 30
    assert tail_chars(helps) == len(". " + ("I hope this helps! " * 30).strip()) > 500  # from the "." on
    # the last box counts: an earlier part's answer followed by the final one leaves no tail
    assert tail_chars("(a) \\boxed{3}; then for (b) we double it: \\boxed{6}") == 0
    assert tail_chars("Working it out gives 12 apples.\nFinal Answer: 12\nHope that helps.") == 16
    assert tail_chars("**Answer:** C") == 0
    assert tail_chars("No marker here, just prose about the result.") is None
    assert tail_chars("") is None


def test_row_checks_measure_what_is_asked():
    looping = _completion(REASONING + " " + SENTENCE * 40)
    language, shape, tail = row_checks((looping, "What is 2 plus 3?", True, 0.05, True, 20, True))
    assert language == (True, 0.0, "latin") and is_loop(shape) and tail == 1
    assert row_checks((looping, "What is 2 plus 3?", True, 0.05, False, 0, False)) == ((None, None, None), None, None)


def test_reasoning_answer_ratio_median_and_p95():
    rows = [GradeResult(True, "ok", "r" * (10 * k), "a" * 10, True) for k in range(1, 21)]  # ratios 1..20
    rows.append(GradeResult(False, "empty_answer", "r" * 50, "", True))  # no answer: not a ratio
    assert reasoning_answer_ratio(rows) == {"rows": 20, "median": 10.5, "p95": 19.0}
    assert reasoning_answer_ratio([]) == {"rows": 0, "median": None, "p95": None}


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize("field, value", [("max_tail_chars", 0), ("repetition_ngram", 0),
                                          ("repetition_max_count", 0), ("repetition_loop_repeats", -1),
                                          ("repetition_loop_share", 0.0), ("repetition_loop_share", 1.5),
                                          ("repetition_loop_share", float("nan"))])
def test_thresholds_are_validated(field, value):
    flag = "--" + field.replace("_", "-")
    with pytest.raises(UserError, match=flag):
        build(FilterConfig, {"input": "traces.jsonl", field: value})


def test_both_checks_can_be_skipped():
    cfg = build(FilterConfig, {"input": "traces.jsonl", "skip": ["repetition,tail"]})
    assert cfg.skip == ["repetition", "tail"]


# ---------------------------------------------------------------------------- the real filter, in process


def _rows() -> list[dict]:
    arithmetic, total = _arithmetic()
    return [
        {"id": "good", "problem": "What is 2 plus 3?", "answer": "5", "completion": _completion(REASONING)},
        {"id": "sentence-loop", "problem": "What is 2 plus 3?", "answer": "5",
         "completion": _completion(REASONING + " " + SENTENCE * 40)},
        {"id": "phrase-loop", "problem": "What is 2 plus 3?", "answer": "5",
         "completion": _completion(REASONING + " " + PHRASE * 10)},
        {"id": "cjk-loop", "problem": CJK_PROBLEM, "answer": "5",
         "completion": _completion("二加三等于五。" + CJK_LOOP * 40, "答案是 \\boxed{5}。")},
        {"id": "rambling", "problem": "What is 2 plus 3?", "answer": "5",
         "completion": _completion(REASONING, "The answer is \\boxed{5}. " + "I hope this helps! " * 30)},
        {"id": "arithmetic", "problem": "Add the 300 step increments.", "answer": str(total),
         "completion": arithmetic},
    ]


def _filter(tmp_path, **options):
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in _rows()))
    return filter_stage.run(build(FilterConfig, {"input": str(path), "num_proc": 1, "timeout": 10.0, **options}))


def _reasons(artifact) -> dict[str, str]:
    data = artifact.load_dataset()
    return {row["id"]: row["reject_reason"] or "kept" for split in data.values() for row in split}


def test_filter_names_loops_and_tails_in_the_funnel_and_the_stats(home, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(log, "_renderer", log.PlainRenderer())  # the table as plain text, whatever ran before
    artifact = _filter(tmp_path)
    assert _reasons(artifact) == {"good": "kept", "arithmetic": "kept", "sentence-loop": "repetition",
                                  "phrase-loop": "repetition", "cjk-loop": "repetition", "rambling": "tail"}
    stats = artifact.manifest["stats"]
    assert stats["rejected_by_reason"]["repetition"] == 3 and stats["rejected_by_reason"]["tail"] == 1
    funnel = {row["check"]: row for row in stats["funnel"]}
    assert [row["check"] for row in stats["funnel"]][:6] == ["input", "complete", "format", "tail", "repetition",
                                                             "correct"]
    assert (funnel["tail"]["dropped"], funnel["repetition"]["dropped"], funnel["repetition"]["remaining"]) == (1, 3, 2)
    ratio = stats["reasoning_answer_ratio"]
    assert ratio["rows"] == 2 and 0 < ratio["median"] <= ratio["p95"]
    out = capsys.readouterr().out
    assert any(line.split()[:3] == ["repetition", "3", "2"] for line in out.splitlines())
    assert "reasoning/answer length: median" in out

    data = artifact.load_dataset()
    rows = {row["id"]: row for split in data.values() for row in split}
    assert rows["sentence-loop"]["max_ngram_repeats"] > 20 and rows["sentence-loop"]["loop_repeats"] == 40
    assert rows["phrase-loop"]["max_ngram_repeats"] <= 20 and rows["phrase-loop"]["loop_period"] == 4
    assert rows["arithmetic"]["max_ngram_repeats"] == 1 and rows["arithmetic"]["verdict"] == "correct"
    assert rows["rambling"]["tail_chars"] > 500 and rows["good"]["tail_chars"] == 1


def test_skipping_the_shape_checks_keeps_what_they_would_drop(home, tmp_path):
    only_tail_skipped = _reasons(_filter(tmp_path, skip=["tail"]))
    assert only_tail_skipped["rambling"] == "repetition"  # "I hope this helps!" x 30 is a loop too
    artifact = _filter(tmp_path, name="unshaped", skip=["tail", "repetition"])
    reasons = _reasons(artifact)
    assert reasons["sentence-loop"] == reasons["phrase-loop"] == reasons["rambling"] == "kept"
    funnel = {row["check"]: row for row in artifact.manifest["stats"]["funnel"]}
    assert funnel["tail"]["skipped"] and funnel["repetition"]["skipped"] and funnel["repetition"]["dropped"] == 0
    row = artifact.load_dataset()["train"][0]
    assert row["tail_chars"] is None and row["max_ngram_repeats"] is None and row["loop_share"] is None
