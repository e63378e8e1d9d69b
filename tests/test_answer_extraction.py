"""`--answer-extraction strict|standard|lenient`: which answer forms count (``distill.verify.extraction``).

- a table of answer forms per mode: Minerva's "Final Answer: The final answer is X", answer phrases, bare values,
  multiple-choice letter forms, non-English anchors, the last number (lenient, numeric references only);
- references: a gold holding several ``\\boxed{}`` is a set, a gold written as "answer is X" is X;
- the peer suites (other projects' own verdicts, ``../shared/data/peer``): 0 false accepts in every mode, and at
  least the keeps measured when the modes landed;
- the mode reaches the grader from filter and eval configs; an unknown mode is one error line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.errors import UserError
from distill.stages.eval import EvalConfig
from distill.stages.filter import FilterConfig
from distill.verify.choice import extract_choice
from distill.verify.extraction import final_answer, reference_answer
from distill.verify.grader import GradeConfig, GradeItem, grade_batch, make_pool
from distill.verify.math import verify_math

PEER = Path(__file__).resolve().parents[2] / "shared" / "data" / "peer"

# (answer part, reference, {mode: expected status})
C, X = "correct", "incorrect"
ALL_C = {"strict": C, "standard": C, "lenient": C}
MATH_CASES = [
    ("So $x = \\boxed{18}$.", "18", ALL_C),
    ("\\boxed{3} was wrong, it is \\boxed{4}.", "4", {"strict": C, "standard": X, "lenient": X}),  # boxes: a set
    ("Final Answer: The final answer is 7.78. I hope it is correct.", "7.78",
     {"strict": X, "standard": C, "lenient": C}),
    ("$\\boxed{200}$, then $10,200 + $255. Final Answer: The final answer is $10,455$. I hope it is correct.",
     "10455", {"strict": X, "standard": C, "lenient": C}),  # the Minerva line after an earlier box wins
    ("Final Answer: The largest $n$ is 34.", "34", {"strict": X, "standard": C, "lenient": C}),
    ("Final Answer: The final answer is 5866608. I hope it is correct.", "5866608",
     {"strict": X, "standard": C, "lenient": C}),
    ("Therefore, the final answer is 100.", "100", {"strict": X, "standard": C, "lenient": C}),
    ("My final answer is: 3.14", "3.14", {"strict": X, "standard": C, "lenient": C}),
    ("The answer is -50.", "-50", {"strict": X, "standard": C, "lenient": C}),
    ("-15", "-15", {"strict": X, "standard": C, "lenient": C}),  # a bare value
    ("x = 3", "3", {"strict": X, "standard": C, "lenient": C}),
    ("1 000", "1000", {"strict": X, "standard": C, "lenient": C}),
    ("-\\frac{10}{9}", "-10/9", {"strict": X, "standard": C, "lenient": C}),
    ("est de **25%**.", "25%", {"strict": X, "standard": C, "lenient": C}),
    ("The probability is 0.75.", "0.75", {"strict": X, "standard": X, "lenient": C}),  # unanchored: lenient only
    ("The angle is [90].", "90", {"strict": X, "standard": X, "lenient": C}),
    ("Donc, il a déjà 79 g de cire.", "79", {"strict": X, "standard": X, "lenient": C}),
    ("Réponse: Janeth aura encore 220 $ à payer d'ici 12 mois.", "220", {"strict": X, "standard": X, "lenient": C}),
    ("答案：每份应该是 (\\frac{2}{5}) 吨。", "2/5", {"strict": X, "standard": X, "lenient": C}),
    ("计划的比例为13/28", "13/28", {"strict": X, "standard": X, "lenient": C}),
    ("My reply is 0.75.", "75%", {"strict": X, "standard": X, "lenient": C}),
    # precision: the last number is never read for a letter in a word, nor for a non-numeric reference
    ("AZYUK2A", "2", {"strict": X, "standard": X, "lenient": X}),
    ("The roots are 2 and 3.", "x^2-5x+6", {"strict": X, "standard": X, "lenient": X}),
    ("The probability is 0.75.", "0.7", {"strict": X, "standard": X, "lenient": X}),
]


@pytest.mark.parametrize("mode", ["strict", "standard", "lenient"])
@pytest.mark.parametrize("answer, reference, expected", MATH_CASES)
def test_math_answer_forms_per_mode(answer, reference, expected, mode):
    assert verify_math(answer, reference, 2, mode).status == expected[mode], final_answer(answer, mode, True)


# (answer part, {mode: letter read})
CHOICE_CASES = [
    ("\\boxed{C}", {"strict": "C", "standard": "C", "lenient": "C"}),
    ("The answer is for sure D, it can't be A or B", {"strict": None, "standard": "D", "lenient": "D"}),
    ('The capital of Japan is Tokyo.\n\nAnswer: "C"', {"strict": None, "standard": "C", "lenient": "C"}),
    ("**C**", {"strict": None, "standard": "C", "lenient": "C"}),
    ("B) Pumps blood to the body", {"strict": None, "standard": "B", "lenient": "B"}),
    ("B。不是 A", {"strict": None, "standard": None, "lenient": "B"}),
    ("réponse est C non A", {"strict": None, "standard": None, "lenient": "C"}),
    ("It's not A because it doesn't make sense, therefore I think it's B",
     {"strict": None, "standard": None, "lenient": "B"}),
    ("A good first step is to list the options.", {"strict": None, "standard": None, "lenient": None}),
]


@pytest.mark.parametrize("mode", ["strict", "standard", "lenient"])
@pytest.mark.parametrize("answer, expected", CHOICE_CASES)
def test_choice_forms_per_mode(answer, expected, mode):
    assert extract_choice(answer, mode)[0] == expected[mode]


def test_references_sets_and_phrases():
    assert reference_answer("\\boxed{2}, \\boxed{3}, \\boxed{5}") == "2, 3, 5"
    assert reference_answer("\\boxed{1} papers and \\boxed{2} bins") == "1, 2"
    assert reference_answer("\\boxed{4} and again \\boxed{4}") == "4"  # the same box twice is one answer
    assert reference_answer("answer is 0.6666667") == "0.6666667"
    assert reference_answer("The correct result is \\boxed{42}") == "42"
    assert reference_answer("#### 1,000") == "1,000"
    assert verify_math("Final answer: $\\boxed{1,2}$", reference_answer("\\boxed{1} papers and \\boxed{2} bins")).correct
    assert not verify_math("Final answer: $\\boxed{1}$", reference_answer("\\boxed{1} papers and \\boxed{2} bins")).correct
    assert verify_math("The final answer is \\boxed{2/3}.", reference_answer("answer is 0.6666667")).correct


def test_mode_reaches_the_grader_from_filter_and_eval():
    items = [GradeItem("<think>\nI add the numbers step by step and check.\n</think>\n\nThe probability is 0.75.",
                       reference="0.75")]
    for config in (FilterConfig(answer_extraction="lenient"), EvalConfig(answer_extraction="lenient")):
        config.validate_grading()
        assert config.grade_config().answer_extraction == "lenient"
        assert grade_batch(items, config.grade_config(), num_proc=1)[0].verdict.correct
    assert not grade_batch(items, FilterConfig().grade_config(), num_proc=1)[0].verdict.correct  # standard


def test_unknown_mode_is_one_error():
    with pytest.raises(UserError, match="--answer-extraction must be one of strict, standard, lenient"):
        FilterConfig(answer_extraction="fuzzy").validate_grading()


# keeps graded correct when the modes landed (math, multiple choice); the rest are forms no mode reads
MEASURED_KEEPS = {"strict": (156, 0), "standard": (290, 32), "lenient": (319, 38)}


@pytest.mark.parametrize("mode", ["strict", "standard", "lenient"])
def test_peer_suites_per_mode(mode):
    """Other projects' verdicts: no row they reject is graded correct in any mode; keeps not fewer than measured."""
    if not PEER.is_dir():
        pytest.skip(f"no peer suites at {PEER}")
    rows = [json.loads(line) for name in ("peer_cases.jsonl", "peer2_cases.jsonl")
            for line in (PEER / name).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["domain"] in ("math", "multiple_choice")]
    config = GradeConfig(timeout_s=10, answer_extraction=mode)
    with make_pool(2, config) as pool:
        results = grade_batch([GradeItem(r["completion"], domain=r["domain"], reference=r["answer"]) for r in rows],
                              config, pool=pool)
    false_accepts = [r["id"] for r, g in zip(rows, results, strict=True)
                     if r["expect"] == "reject" and g.well_formed and g.verdict.correct]
    kept = [sum(r["expect"] == "keep" and r["domain"] == domain and g.verdict.correct
                for r, g in zip(rows, results, strict=True)) for domain in ("math", "multiple_choice")]
    print(f"\n{mode}: false accepts {false_accepts}; keeps graded correct (math, multiple choice) {kept}")
    assert not false_accepts
    assert kept[0] >= MEASURED_KEEPS[mode][0] and kept[1] >= MEASURED_KEEPS[mode][1]
