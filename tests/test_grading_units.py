"""The math grader's units and number rules (issue 19), the language check's bounded regex work, the sandbox's
disk option as a grading option.

- units: when both answers carry one they are compared as quantities (``500 cm`` = ``5 m``, ``5 m`` != ``5 cm``,
  ``5 kg`` != ``5 m``, unknown units by name); a unit only the prediction carries is dropped, one only the
  reference carries is assumed; a one-sided percent may also be read as a fraction;
- numbers: a decimal prediction equals an exact reference only when it is that exact value (``0.5`` = ``1/2``,
  ``0.3333333`` != ``1/3``); a decimal reference matches within a relative 1e-6 (the peers' six digits);
- the peer suites in ``../shared/data/peer``: see tests/test_answer_extraction.py (per extraction mode);
- ``distill.verify.language``: inputs full of unclosed ``\\[`` / ``\\(`` return, with the same counts;
- ``--code-disk-mb`` reaches the sandbox's ``disk_mb`` and is range-checked where it enters.
"""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from pathlib import Path

import pytest

from distill import config, log
from distill.errors import UserError
from distill.stages.filter import FilterConfig
from distill.verify import language
from distill.verify.grader import GradeConfig, GradeItem, GradeOptions, grade_batch, make_pool, sandbox_config
from distill.verify.math import Number, numbers_match, simple_number, verify_math
from distill.verify.units import conversion, parse_unit, split_unit

PEER = Path(__file__).resolve().parents[2] / "shared" / "data" / "peer"
THINK = "<think>\nLet me work through this carefully, checking every step twice.\n</think>\n\n"


def status(prediction: str, reference: str) -> str:
    return verify_math(f"The answer is $\\boxed{{{prediction}}}$.", reference, 4).status


# ---------------------------------------------------------------------------- units

# (boxed prediction, reference, expected status)
UNIT_CASES = [
    # both carry a unit: compared as quantities
    ("500\\text{ cm}", "5\\text{ m}", "correct"),
    ("5\\text{ m}", "500\\text{ cm}", "correct"),
    ("5\\text{ m}", "5\\text{ cm}", "incorrect"),
    ("5 m", "5 cm", "incorrect"),
    ("5\\text{ cm}", "5\\text{ m}", "incorrect"),
    ("2\\text{ km}", "2000\\text{ meters}", "correct"),
    ("12 \\text{ inches}", "1\\text{ foot}", "correct"),
    ("3\\text{ feet}", "1\\text{ yard}", "correct"),
    ("5280\\text{ ft}", "1\\text{ mile}", "correct"),
    ("6\\text{ ft}^2", "864 \\mbox{ inches}^2", "correct"),
    ("6\\text{ ft}", "864 \\mbox{ inches}^2", "incorrect"),  # a length is no area
    ("10000\\text{ cm}^2", "1\\text{ m}^2", "correct"),
    ("1\\text{ square meter}", "10000\\text{ cm}^2", "correct"),
    ("2\\text{ L}", "2000\\text{ mL}", "correct"),
    ("2\\text{ L}", "2\\text{ mL}", "incorrect"),
    ("1\\text{ gallon}", "4\\text{ quarts}", "correct"),
    ("1000\\text{ cm}^3", "1\\text{ liter}", "correct"),
    ("2.5\\text{ kg}", "2500\\text{ g}", "correct"),
    ("2.5\\text{ kg}", "2.5\\text{ g}", "incorrect"),
    ("16\\text{ ounces}", "1\\text{ pound}", "correct"),
    ("90\\text{ minutes}", "1.5\\text{ hours}", "correct"),
    ("90\\text{ seconds}", "1.5\\text{ hours}", "incorrect"),
    ("2\\text{ weeks}", "14\\text{ days}", "correct"),
    ("24\\text{ months}", "2\\text{ years}", "correct"),
    ("60 \\text{ mph}", "60\\text{ miles per hour}", "correct"),
    ("100 \\text{ km/h}", "100\\text{ kilometers per hour}", "correct"),
    ("60 \\text{ mph}", "60\\text{ km/h}", "incorrect"),
    ("\\$10", "1000\\text{ cents}", "correct"),
    ("\\$10", "10\\text{ cents}", "incorrect"),
    ("10\\text{ dollars}", "\\$10", "correct"),
    ("\\$12 \\text{ per hour}", "12\\text{ dollars per hour}", "correct"),
    ("5\\text{ kg}", "5\\text{ m}", "incorrect"),  # different dimensions
    ("5\\text{ m}", "\\$5", "incorrect"),
    ("10\\%", "10\\text{ percent}", "correct"),
    ("45^\\circ", "45\\text{ degrees}", "correct"),
    ("\\frac{\\pi}{2}\\text{ rad}", "90^\\circ", "correct"),  # radians, written: converted
    ("\\frac{\\pi}{2}\\text{ radians}", "45^\\circ", "incorrect"),
    ("2\\sqrt{3}\\text{ cm}", "\\frac{\\sqrt{3}}{50}\\text{ m}", "correct"),  # math-verify on converted values
    ("20^\\circ C", "20^\\circ F", "incorrect"),  # temperatures compare by name
    ("20^\\circ\\text{C}", "20^{\\circ} C", "correct"),
    ("5\\text{ apples}", "5\\text{ apple}", "correct"),  # unknown units: by name, plurals folded
    ("5\\text{ boxes}", "5\\text{ box}", "correct"),
    ("5\\text{ apples}", "5\\text{ pears}", "incorrect"),
    ("10\\text{ square units}", "10\\text{ units}^2", "correct"),
    ("10\\text{ units}", "10\\text{ square units}", "incorrect"),
    # only the prediction carries a unit: dropped (GSM8K references have none)
    ("18\\text{ meters}", "18", "correct"),
    ("18\\text{ meters}", "19", "incorrect"),
    ("5\\text{ cm}", "5", "correct"),
    ("\\frac{1}{3} \\text{meters}", "$1/3$", "correct"),
    ("45^\\circ", "45", "correct"),
    ("3.14\\text{ inches}", "3.14", "correct"),
    ("10\\%", "10", "correct"),
    ("10\\%", "0.1", "correct"),  # a one-sided percent also reads as a fraction
    ("10\\%", "0.2", "incorrect"),
    ("\\$70,000", "#### 70000", "correct"),
    ("\\$32,\\!348", "32348", "correct"),
    # only the reference carries one: the prediction is read in it
    ("15", "15\\mbox{ cm}^2", "correct"),
    ("16", "15\\mbox{ cm}^2", "incorrect"),
    ("10", "\\$10", "correct"),
    ("5.4", "5.4 \\text{ cents}", "correct"),
    ("0.75", "75\\%", "correct"),
    ("75", "75\\%", "correct"),
    ("0.7", "75\\%", "incorrect"),
    ("\\frac{\\pi}{2}", "90^\\circ", "incorrect"),  # degrees vs radians only when the radians are written
    ("17", "17\\text{ any text}", "correct"),
]


@pytest.mark.parametrize("prediction, reference, expected", UNIT_CASES)
def test_units(prediction, reference, expected):
    assert status(prediction, reference) == expected


# (answer text, magnitude, unit name) — None: no unit read
SPLIT_CASES = [
    ("5\\text{ m}", "5", "m"),
    ("15\\mbox{ cm}^2", "15", "cm^2"),
    ("3\\,\\text{m}/\\text{s}^2", "3", "m s^-2"),
    ("\\$32,\\!348", "32,348", "$"),
    ("-\\$5", "-5", "$"),
    ("$10", "10", "$"),  # a lone leading $ is a price
    ("$5$ cm", "5", "cm"),  # a pair of $ is math
    ("\\text{5 cm}", "5", "cm"),
    ("12cm", "12", "cm"),
    ("60 miles per hour", "60", "mile hour^-1"),
    ("\\frac{270}7\\text{ degrees}", "\\frac{270}7", "degree"),
    ("25^{\\circ}\\text{F}", "25", "°f"),
    ("x = 5\\text{ cm}", "x = 5", "cm"),
    ("10\\text{ apples}", "10", "apple"),
    ("5m", None, None),  # glued single letter: 5 times m
    ("10 apples", None, None),  # plain words only when every word is a unit of the table
    ("1 in", None, None),  # "in" is prose without \text
    ("17\\text{ any text}", None, None),
    ("6 \\text{ and } 8", None, None),
    ("3, 4\\text{ cm}", None, None),  # a list is not one quantity
    ("x \\geq 5\\text{ cm}", None, None),
    ("\\text{Evelyn}", None, None),
    ("\\text{(C)}", None, None),
    ("18", None, None),
]


@pytest.mark.parametrize("text, magnitude, unit", SPLIT_CASES)
def test_split_unit(text, magnitude, unit):
    quantity = split_unit(text)
    assert (quantity and quantity.magnitude, quantity and quantity.unit.name) == (magnitude, unit)


@pytest.mark.parametrize("small, many, big", [
    ("in", 12, "ft"), ("ft", 3, "yd"), ("ft", 5280, "mi"), ("cm", 100, "m"), ("m", 1000, "km"), ("mm", 10, "cm"),
    ("ml", 1000, "l"), ("cup", 16, "gal"), ("qt", 4, "gal"), ("pt", 2, "qt"), ("tsp", 3, "tbsp"),
    ("oz", 16, "lb"), ("g", 1000, "kg"), ("mg", 1000, "g"), ("kg", 1000, "tonne"),
    ("s", 60, "min"), ("min", 60, "h"), ("h", 24, "day"), ("day", 7, "week"), ("month", 12, "year"),
    ("cent", 100, "dollar"), ("m^2", 10_000, "hectare"), ("cm^3", 1000, "liter"),
])
def test_conversion_table(small, many, big):
    factor = conversion(parse_unit(big), parse_unit(small))
    assert factor is not None and factor.ratio == many and factor.pi == 0


def test_conversions_between_dimensions_and_of_angles():
    assert conversion(parse_unit("kg"), parse_unit("m")) is None
    assert conversion(parse_unit("m"), parse_unit("m^2")) is None
    assert conversion(parse_unit("day"), parse_unit("month")) is None  # no exact number of days in a month
    assert conversion(parse_unit("apples"), parse_unit("pears")) is None
    degree_in_radians = conversion(parse_unit("degree"), parse_unit("rad"))
    assert degree_in_radians.ratio == Fraction(1, 180) and degree_in_radians.pi == 1
    acre = conversion(parse_unit("acre"), parse_unit("m^2"))
    assert float(acre.ratio) == pytest.approx(4046.8564224)


# ---------------------------------------------------------------------------- numbers

FLOAT_CASES = [
    # a decimal prediction vs an exact reference: only its exact value
    ("0.3333333", "\\frac{1}{3}", "incorrect"),
    ("0.333333", "1/3", "incorrect"),
    ("0.33", "\\frac{1}{3}", "incorrect"),
    ("0.5", "\\frac{1}{2}", "correct"),
    ("0.0625", "\\frac{1}{16}", "correct"),
    ("-0.25", "-\\frac{1}{4}", "correct"),
    ("18.0", "18", "correct"),
    ("18.00001", "18", "incorrect"),
    ("0.0833333333333333", "$\\frac{1}{12}$", "correct"),  # float64 repr: lighteval's q119
    ("0.08333333", "$\\frac{1}{12}$", "incorrect"),
    # ... also where math-verify compares (it rounds to 6 decimals)
    ("0.7071068", "\\frac{\\sqrt{2}}{2}", "incorrect"),
    ("3.1415927", "\\pi", "incorrect"),
    ("x = 0.3333333", "x = \\frac{1}{3}", "incorrect"),
    ("(0.3333333, 1)", "(\\frac{1}{3}, 1)", "incorrect"),
    ("0.7071067811865476", "\\frac{\\sqrt{2}}{2}", "correct"),  # float64 repr
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", "correct"),
    # a decimal reference: within a relative 1e-6
    ("\\frac{1}{3}", "0.3333333", "correct"),
    ("\\frac{1}{3}", "0.333", "incorrect"),
    ("0.0666668", "0.066666793", "correct"),  # AReaL: six places match
    ("0.067", "0.066793", "incorrect"),  # AReaL: three places do not
    ("2.232", "2.23", "incorrect"),  # AReaL: extra precision is not rounded away
    ("2.23", "2.232", "incorrect"),
    ("5.001", "5", "incorrect"),
    ("5", "5.001", "incorrect"),
    ("0.46", "0.5", "incorrect"),
    ("16386.16", "16386.16", "correct"),
    ("1000.99", "1,000.99", "correct"),
    # integers, GSM8K style
    ("70,000", "#### 70,000", "correct"),
    ("70000", "#### 70,000", "correct"),
    ("1,000,000", "1000", "incorrect"),
    ("72", "Natalia sold 48/2 = 24 clips in May.\n#### 72", "correct"),
]


@pytest.mark.parametrize("prediction, reference, expected", FLOAT_CASES)
def test_numbers(prediction, reference, expected):
    assert status(prediction, reference) == expected


def test_numbers_match_reads_digits():
    assert simple_number("0.066666793") == Number(Fraction("0.066666793"), 9, 8)
    assert simple_number("\\frac{1}{3}") == Number(Fraction(1, 3)) and simple_number("x") is None
    third = simple_number("0.3333333")
    assert not numbers_match(third, Number(Fraction(1, 3))) and numbers_match(Number(Fraction(1, 3)), third)


def test_grading_through_the_worker_pool():
    """The same rules in the grader `distill filter` and `distill eval` call (real worker processes)."""
    cases = UNIT_CASES[:4] + FLOAT_CASES[:4]
    items = [GradeItem(THINK + f"So the answer is $\\boxed{{{p}}}$.", reference=r) for p, r, _ in cases]
    with make_pool(2, GradeConfig()) as pool:
        results = grade_batch(items, GradeConfig(timeout_s=10), pool=pool)
    assert [r.verdict.status for r in results] == [expected for _, _, expected in cases]
    assert results[2].verdict.details["units"] == ["m", "cm"]


# ---------------------------------------------------------------------------- language: bounded regex work


# (text, expected counts): 200k-character inputs; the counts follow _IGNORED's own rules (a \\[ that has a
# closer further on swallows everything up to it, whatever lies between)
LONG_CASES = [
    ("\\[" * 100_000, {}),  # unclosed display math
    ("\\(" * 100_000, {}),
    ("word \\( " * 25_000, {"latin": 25_000}),  # the words after an unclosed \\( still count
    # each trailing "\\[" swallows the next "Some words \\[ x^2 \\]": two words a repetition, plus the first two
    ("Some words \\[ x^2 \\] and \\( y \\) more \\[ " * 5_000, {"latin": 2 * 5_000 + 2}),
    ("Слово \\( " * 20_000 + "\\( a \\) end", {"cyrillic": 1, "latin": 1}),  # one \\( ... \\) span
]


@pytest.mark.parametrize("text, expected", LONG_CASES)
def test_language_counts_on_unclosed_math(text, expected):
    assert len(text) >= 100_000 and language.script_counts(text) == expected


def test_language_counts_equal_the_unbounded_regex(monkeypatch):
    """On inputs small enough for the old quadratic path, the counts are the same with and without the fix."""
    import random

    pieces = ["word ", "слово ", "中", "\\[", "\\]", "\\(", "\\)", "$", "$$", "`", "```", "\\frac", "x", "\n", "\\\\",
              " ", "αβ "]
    rng = random.Random(0)
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    texts += [text[:3000] for text, _ in LONG_CASES]
    fixed = [language.script_counts(t) for t in texts]
    monkeypatch.setattr(language, "_without_dangling_openers", lambda text: text)
    assert fixed == [language.script_counts(t) for t in texts]


def test_language_unclosed_openers_change_nothing_else():
    """Only openers with no closer after them are touched; what the regex removes stays the same."""
    normal = "We get \\(x = 2\\) and \\[y = 3\\], so $z$ is 5; see ```code``` and `inline`."
    assert language._without_dangling_openers(normal) == normal
    assert language.script_counts(normal) == {"latin": 7}  # We get and so is see and
    dangling = "First \\[ a \\] then \\( b \\) and \\( never closed \\[ either"
    assert language._without_dangling_openers(dangling) == dangling[:-25] + " ( never closed  [ either"
    cleaned = language._IGNORED.sub(" ", language._without_dangling_openers(dangling))
    assert re.findall("[A-Za-z]{2,}", cleaned) == ["First", "then", "and", "never", "closed", "either"]
    assert language.script_counts(dangling) == {"latin": 6}


# ---------------------------------------------------------------------------- --code-disk-mb


def test_code_disk_mb_reaches_the_sandbox():
    options = GradeOptions(code_disk_mb=64)
    options.validate_grading()
    assert sandbox_config(options.grade_config()).disk_mb == 64
    assert sandbox_config(GradeConfig()).disk_mb == GradeOptions().code_disk_mb == 256


@pytest.mark.parametrize("value", [0, 15, 65_537, 10**9, -1, float("nan"), math.inf])
def test_code_disk_mb_out_of_range_is_a_user_error(value):
    with pytest.raises(UserError, match=r"--code-disk-mb is out of range: must be >= 16 and <= 65536"):
        GradeOptions(code_disk_mb=value).validate_grading()


@pytest.mark.parametrize("raw, why", [("8", "out of range"), ("nan", "finite|expects int"), ("1e999", "finite|int"),
                                      ("lots", "expects int")])
def test_code_disk_mb_from_set_and_flag(raw, why, home, tmp_path, capsys):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"problem": "1+1?", "completion": THINK + "\\boxed{2}", "answer": "2"}) + "\n")
    with pytest.raises(UserError, match=why):
        config.build(FilterConfig, {"input": str(data)}, config.parse_sets([f"code_disk_mb={raw}"])).validate()
    from distill.cli import main

    renderer = log._renderer
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["filter", "--input", str(data), f"--code-disk-mb={raw}"])
    finally:
        log.set_renderer(renderer)
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2 and stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert "--code-disk-mb" in stderr
    assert not home.exists() or not any(home.iterdir())
