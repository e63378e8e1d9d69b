"""The row checks of `distill filter`, one by one (pure functions, no processes)."""

from __future__ import annotations

import json

import pytest

from distill import benchmarks
from distill.errors import UserError
from distill.stages.filter.features import REASONS, dedup_fingerprint, funnel, row_features
from distill.verify import dedup, language, length
from distill.verify import format as fmt

REASONING = "Let me work through this carefully. 16 - 3 - 4 = 9, and 9 * 2 = 18."


# ---------------------------------------------------------------------------- format


@pytest.mark.parametrize("completion, reason", [
    (f"<think>\n{REASONING}\n</think>\n\n\\boxed{{18}}", "ok"),
    (f"  \n<think>{REASONING}</think>\\boxed{{18}}", "ok"),  # leading whitespace allowed
    (f"{REASONING}\n</think>\n\\boxed{{18}}", "ok"),  # opening tag prefilled by the template
    ("\\boxed{18}", "no_think_block"),
    (f"<think>{REASONING} and then", "unclosed_think"),
    (f"Sure!\n<think>{REASONING}</think>\\boxed{{18}}", "think_not_at_start"),
    (f"<think>{REASONING}</think>18<think>{REASONING}</think>\\boxed{{18}}", "multiple_think_blocks"),
    (f"<think>{REASONING}</think>\\boxed{{18}}\n<think>wait", "think_tag_in_answer"),
    ("<think>short</think>\\boxed{18}", "short_reasoning"),
    (f"<think>{REASONING}</think>\n   ", "empty_answer"),
])
def test_format_reasons(completion, reason):
    assert fmt.check_format(completion, min_reasoning_chars=20)[0] == reason


def test_prefilled_think_can_be_refused():
    assert fmt.check_format(f"{REASONING}</think>\\boxed{{18}}", assume_prefilled_think=False)[0] == "no_think_block"


def test_other_markers_are_normalized():
    openthoughts = (f"<|begin_of_thought|>\n\n{REASONING}\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n"
                    "The answer is $\\boxed{18}$.\n\n<|end_of_solution|>")
    reason, reasoning, answer = fmt.check_format(openthoughts)
    assert (reason, reasoning, answer) == ("ok", REASONING, "The answer is $\\boxed{18}$.")
    summary = f"<reasoning_process>{REASONING}</reasoning_process>\n<summary>So \\boxed{{18}}.</summary>"
    assert fmt.split_reasoning(summary) == (REASONING, "So \\boxed{18}.")
    # <summary> alone (no reasoning markers) is ordinary text
    assert fmt.normalize_markers("<summary>x</summary>") == "<summary>x</summary>"


def test_split_reasoning_answer_is_after_the_last_close_tag():
    assert fmt.split_reasoning("no tags at all") == (None, "no tags at all")
    assert fmt.split_reasoning("<think>never closed") == (None, "")
    assert fmt.split_reasoning("<think>a</think>b<think>c</think> d") == ("a</think>b<think>c", "d")


# ---------------------------------------------------------------------------- language


def test_language_same_script_passes_and_math_is_ignored():
    ok, mix, script = language.check_language(
        "Find x such that x^2 = 4.", "We have $x^2 = 4$, so x = 2 or x = -2; with \\frac{\\pi}{2} and θ too.")
    assert (ok, mix, script) == (True, 0.0, "latin")


def test_language_mixing_is_rejected():
    reasoning = ("Okay, the eggs: 16 - 3 - 4 = 9. 她以每个两美元的价格出售这些蛋，所以她每天赚十八美元。"
                 "So she makes 18 dollars.")
    ok, mix, script = language.check_language("How much does Janet make?", reasoning, max_mix=0.05)
    assert not ok and script == "latin" and mix > 0.5


def test_language_cjk_prompt_expects_cjk_reasoning():
    assert language.check_language("珍妮特每天赚多少钱？", "她每天赚十八美元。", 0.05)[0]
    ok, mix, script = language.check_language("珍妮特每天赚多少钱？", "She makes eighteen dollars every single day.", 0.05)
    assert not ok and script == "han" and mix == 1.0
    # Japanese: kana and kanji together are one language
    assert language.check_language("これは何ですか？", "これは数学の問題です。答えは十八です。", 0.05)[0]


def test_language_without_prompt_uses_the_reasoning_majority():
    assert language.check_language(None, "All in English, every word of it.")[0]


# ---------------------------------------------------------------------------- length


def test_token_counts_prefer_reported_then_tokenizer_then_estimate():
    texts = ["a" * 400, "b" * 10]
    assert length.count_tokens(texts) == ([100, 3], "chars/4")
    assert length.count_tokens(texts, [7, None]) == ([7, 3], "reported+chars/4")

    class Tokenizer:  # the HF call signature, counting words
        def __call__(self, batch, add_special_tokens=False):
            return {"input_ids": [t.split() for t in batch]}

    assert length.count_tokens(["one two three", "x"], [None, 9], Tokenizer()) == ([3, 9], "reported+tokenizer")
    assert length.check_length(10, 5, 10) and not length.check_length(11, 5, 10) and not length.check_length(4, 5)


# ---------------------------------------------------------------------------- dedup

LONG = " ".join(f"step {i}: we add {i} and {i + 1} to get {2 * i + 1}." for i in range(150))


def test_fingerprints_catch_exact_and_near_duplicates():
    same = dedup.fingerprint("  Hello   WORLD ")
    assert same[0] == dedup.fingerprint("hello world")[0]
    near = LONG.replace("step 70:", "Step seventy:")
    other = " ".join(f"case {i}: multiply {i} by {i + 2} giving {i * (i + 2)}." for i in range(150))
    a, b, c = dedup.fingerprint(LONG), dedup.fingerprint(near), dedup.fingerprint(other)
    assert dedup.similarity(a[1], b[1]) >= 0.9 > dedup.similarity(a[1], c[1])
    assert dedup.find_duplicates([a, a, b, c], 0.9) == ["unique", "duplicate", "near_duplicate", "unique"]
    assert dedup.find_duplicates([a, b], 1.0) == ["unique", "unique"]  # 1.0: exact duplicates only
    assert dedup.find_duplicates([(None, None), (None, None)]) == ["unique", "unique"]


def test_fingerprint_is_stable_across_processes():
    import subprocess
    import sys

    code = "from distill.verify.dedup import fingerprint; print(fingerprint('a b c d e f g h')[1].hex())"
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={"PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert outputs == {dedup.fingerprint("a b c d e f g h")[1].hex() + "\n"}


def test_select_per_prompt_policies():
    rows, lengths = [10, 11, 12, 13], [300, 100, 200, 100]
    assert dedup.select(rows, lengths, 2, "shortest") == {11, 13}
    assert dedup.select(rows, lengths, None, "shortest") == set(rows)
    assert dedup.select(rows, lengths, 2, "all") == set(rows)
    picked = dedup.select(rows, lengths, 2, "random", seed=3, key="p1")
    assert len(picked) == 2 and picked == dedup.select(rows, lengths, 2, "random", seed=3, key="p1")
    assert len({frozenset(dedup.select(rows, lengths, 2, "random", seed=s, key="p1")) for s in range(20)}) > 1
    with pytest.raises(ValueError):
        dedup.select(rows, lengths, 2, "longest")


# ---------------------------------------------------------------------------- decontamination

BENCH = "Let $f(x) = x^2 + 3x + 2$. Find the sum of all real numbers $x$ such that $f(f(x)) = 0$ holds."


def test_ngram_overlap_and_fuzzy_match(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps({"problem": BENCH}) + "\n" + json.dumps({"problem": "How many sides?"}) + "\n")
    index = benchmarks.decontamination_index([str(path)], n=8)
    assert index.sizes == {"bench": 2}
    assert index.match("Warm-up. " + BENCH.upper() + " Show your work.") == "bench"  # case / punctuation / context
    assert index.match("How many sides?") == "bench"  # shorter than n words: whole match
    assert index.match("Let g(x) = 2x. Find g(3).") is None
    # a light rewording shares no 8-gram but is >= 0.9 similar
    reworded = BENCH.replace("3x", "3 x").replace("numbers", "values").replace("holds", "hold")
    assert index.match(reworded) is None
    fuzzy = benchmarks.decontamination_index([str(path)], n=8, fuzzy_threshold=0.9)
    assert fuzzy.match(reworded) == "bench"
    assert fuzzy.match("Let g(x) = 2x. Find g(3).") is None


def test_benchmark_specs(tmp_path):
    with pytest.raises(UserError, match="no problem column"):
        path = tmp_path / "b.jsonl"
        path.write_text(json.dumps({"text": "x"}) + "\n")
        benchmarks.decontamination_problems(str(path))
    with pytest.raises(UserError, match="not found"):
        benchmarks.decontamination_problems(str(tmp_path / "missing.jsonl"))
    with pytest.raises(UserError, match="bad benchmark"):
        benchmarks.decontamination_problems("a:b:c:d")



def test_decontamination_reads_the_eval_registry(tmp_path):
    # one registry: every spelling eval accepts names the same entry here (issue: `gpqa-diamond` was unknown)
    path = tmp_path / "gpqa.jsonl"
    row = {"Question": "Which particle mediates the electromagnetic force between two charges?",
           "Correct Answer": "photon", "Incorrect Answer 1": "gluon", "Incorrect Answer 2": "W boson",
           "Incorrect Answer 3": "graviton", "Record ID": "r1"}
    path.write_text(json.dumps(row) + "\n")
    for spelling in ("gpqa-diamond", "gpqa_diamond", "gpqa:diamond"):
        name, problems = benchmarks.decontamination_problems(f"{spelling}={path}")
        assert name == "gpqa-diamond" and len(problems) == 1 and row["Question"] in problems[0]
    index = benchmarks.decontamination_index([f"gpqa-diamond={path}"])
    assert index.match("Quiz: which particle mediates the electromagnetic force between two charges?") == "gpqa-diamond"
    for name in ("math500", "aime24", "aime25", "gsm8k", "livecodebench", "gpqa-diamond"):
        assert benchmarks.builtin(name) is benchmarks.BENCHMARKS[name]
    with pytest.raises(UserError, match="bad benchmark"):
        benchmarks.decontamination_problems("nonsense:a:b:c")


# ---------------------------------------------------------------------------- features + funnel


def test_row_features_and_funnel():
    completion = f"<think>{REASONING}</think>\\boxed{{18}}"
    assert row_features((completion, "Janet's eggs?", True, 0.05)) == (True, 0.0, "latin")
    digest, signature = dedup_fingerprint(completion)
    assert digest == dedup.exact_digest(completion.upper()) and len(signature) == 4 * dedup.NUM_BINS
    rows = funnel([None, "format", "incorrect", "unverified", None, "over_cap"], skipped={"language"})
    assert [r["remaining"] for r in rows] == [6, 6, 5, 5, 5, 3, 3, 3, 3, 3, 3, 2]
    assert rows[5]["by_reason"] == {"incorrect": 1, "unverified": 1} and rows[6]["check"] == "pass_rate"
    assert rows[7]["check"] == "language" and rows[7]["skipped"]
    assert REASONS[0] == "incomplete" and REASONS[-1] == "over_cap"
