"""Math answers: take the final answer from the answer part, compare it with math-verify.

    verify_math(answer_text, reference, internal_timeout=2, mode="standard") -> Verdict

Only the text after ``</think>`` is read (the caller splits it), never the reasoning: a number
the model tried and dropped halfway through its thinking is not its answer. Which forms of that text
are read as the final answer depends on ``mode`` (``--answer-extraction``; ``distill.verify.extraction``).

Then, in order: the same text after LaTeX-insensitive normalization is correct; units
(``distill.verify.units``) — when both answers carry one they are compared as quantities
(``500\\text{ cm}`` = ``5\\text{ m}``; a different dimension or, for units outside the table, a
different name is incorrect); a unit only the prediction carries is dropped (``18\\text{ meters}`` for
GSM8K's ``18``); a unit only the reference carries is assumed (``15`` for ``15\\mbox{ cm}^2``); a percent on
one side only may also be read as a fraction (``0.75`` for ``75\\%``). Two plain numbers / simple fractions
are compared without sympy by ``numbers_match``; everything else goes to math-verify.

Numbers (``numbers_match``): a decimal prediction equals an exact reference (an integer, a fraction, a
symbolic value) only when it is that exact value (``0.5`` = ``\\frac{1}{2}``; ``0.3333333`` ≠
``\\frac{1}{3}``), or when it is printed at float64 precision (``0.0833333333333333`` for ``\\frac{1}{12}``).
A decimal reference is itself a rounding: it matches within a relative 1e-6, the six digits math-verify
and the peer graders round to, so a short reference wants its own digits (``2.232`` ≠ ``2.23``) and a long
one its first six (``0.0666668`` = ``0.066666793``; ``\\frac{1}{3}`` = ``0.3333333``). math-verify rounds to 6
decimals, so after it says equal, a prediction holding decimals is compared again with those decimals as
exact fractions unless the reference holds decimals itself (``0.7071068`` ≠ ``\\frac{\\sqrt{2}}{2}``).

math-verify's own timeouts (``signal.alarm``, main thread only) are set below the caller's hard
wall-clock limit, so a slow comparison usually ends as ``unverified`` without killing the worker; work that
ignores the alarm (C-level sympy) is killed from outside (``distill.verify.pool``).
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

from distill.verify import CORRECT, INCORRECT, UNVERIFIED, Verdict
from distill.verify.extraction import clean_number, final_answer
from distill.verify.units import Factor, conversion, split_unit

# a trailing text group that is not a unit (units are read first, distill.verify.units): prose such as
# "17\text{ any text}", dropped as before; one letter (\mathrm{e}, \mathrm{i}) is a symbol and stays
_UNIT_SUFFIX = re.compile(r"\\(?:text|mbox|mathrm)\s*\{\s*[A-Za-z][A-Za-z ./]*[A-Za-z./]\s*\}$")
_SIMPLE_FRACTION = re.compile(r"(-?)\\[dt]?frac\{(-?\d+)\}\{(\d+)\}|(-?)\\[dt]?frac(\d)(\d)|(-?\d+)/(\d+)")
_DECIMAL = re.compile(r"-?\d+(?:\.\d+)?|-?\.\d+")
_DECIMAL_LITERAL = re.compile(r"\d*\.\d+")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|operatorname|mbox)\s*\{([^{}]*)\}")
_WS = re.compile(r"\s+")


# ---------------------------------------------------------------------------- comparison


def normalize_text(text: str) -> str:
    """A LaTeX-insensitive form for exact comparison (``\\dfrac``=``\\frac``, no ``\\text``, spaces, ``$``)."""
    text = _TEXT_CMD.sub(r"\1", text or "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\displaystyle", "")
    for token in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ ", "\\$", "$", "~"):
        text = text.replace(token, "")
    return clean_number(_WS.sub("", text).rstrip(".")).lower()


class Number(NamedTuple):
    value: Fraction
    decimals: int | None = None  # digits after the point when written as a decimal; None: integer / fraction
    significant: int = 0  # significant digits of a decimal (0.0333 -> 3)


def simple_number(text: str) -> Number | None:
    """The value of an integer, decimal or simple fraction, with ``$`` signs, thousands separators and
    an optional trailing ``\\text{…}`` that is not a unit (``17\\text{ any text}``; units are read
    before, by ``distill.verify.units``); None for anything else."""
    text = (text or "").strip().strip("$").replace("\\$", "").replace("\\!", "").strip().rstrip(".")
    text = _UNIT_SUFFIX.sub("", text).strip()
    text = clean_number(text).replace(" ", "")
    if len(text) > 40:
        return None
    if _DECIMAL.fullmatch(text):
        if "." not in text:
            return Number(Fraction(text))
        digits = text.lstrip("-").replace(".", "").lstrip("0")
        return Number(Fraction(text), len(text.split(".")[1]), len(digits))
    match = _SIMPLE_FRACTION.fullmatch(text)
    if not match:
        return None
    sign, num, den, sign2, num2, den2, num3, den3 = match.groups()
    numerator, denominator = (num, den) if num is not None else (num2, den2) if num2 is not None else (num3, den3)
    if int(denominator) == 0:
        return None
    value = Fraction(int(numerator), int(denominator))
    return Number(-value if (sign or sign2) else value)


# A decimal reference is itself rounded: it matches values within this relative distance. 1e-6 is the
# 6 digits math-verify and the peer graders (AReaL, lighteval) round to, made relative so that 1e-7 and
# 2e-7 stay different. So a reference decimal with up to 6 significant digits is matched only by its own
# digits (2.232 != 2.23, 2.23 != 2.232: AReaL's cases), a longer one by its first 6 (0.0666668 = 0.066666793).
DECIMAL_REFERENCE_REL_TOL = Fraction(1, 10**6)
# A decimal printed at float64 precision (Python's repr of 1/12 is 0.0833333333333333) is the exact value as
# far as a float can hold it, not a rounding a model chose: it may equal an exact reference to this distance.
FLOAT_REPR_DIGITS, FLOAT_REPR_REL_TOL = 15, Fraction(1, 10**14)


def numbers_match(pred: Number, gold: Number) -> bool:
    """The rule between two plain numbers (see the module docstring).

    ``0.5`` = ``1/2`` (the same value); ``0.3333333`` != ``1/3`` (an exact reference wants the exact value);
    a decimal reference within ``DECIMAL_REFERENCE_REL_TOL``; a float64-precision decimal within ``FLOAT_REPR_REL_TOL``.
    """
    if pred.value == gold.value:
        return True
    distance = abs(pred.value - gold.value)
    if gold.decimals is not None:
        return distance <= DECIMAL_REFERENCE_REL_TOL * abs(gold.value)
    return pred.significant >= FLOAT_REPR_DIGITS and distance <= FLOAT_REPR_REL_TOL * abs(gold.value)


def _float_repr_only(text: str) -> bool:
    """Every decimal in ``text`` is printed at float64 precision (see ``FLOAT_REPR_DIGITS``)."""
    decimals = _DECIMAL_LITERAL.findall(text)
    return bool(decimals) and all(len(d.replace(".", "").lstrip("0")) >= FLOAT_REPR_DIGITS for d in decimals)


def _as_boxed(text: str) -> str:
    return text if ("\\boxed" in text or "$" in text or "\\(" in text) else f"\\boxed{{{text}}}"


def _parse(text: str, internal_timeout: int):
    from math_verify import parse
    from math_verify.errors import TimeoutException

    try:
        return parse(text, parsing_timeout=internal_timeout, raise_on_error=True), False
    except TimeoutException:
        return [], True
    except Exception:  # noqa: BLE001 - latex2sympy raises anything on odd input
        return [], False


@lru_cache(maxsize=4096)
def _parse_gold(reference: str, internal_timeout: int):
    return _parse(_as_boxed(reference), internal_timeout)


def timeout_verdict(stage: str, predicted: str | None = None) -> Verdict:
    """The verdict of a check that ran out of time, the same whichever guard stopped it (math-verify's
    alarm here, or the pool's kill), so that outputs do not depend on machine load."""
    return Verdict(UNVERIFIED, None, "timeout", {"timeout": True, "stage": stage, "predicted": predicted})


_NAMED_NUMBER = re.compile(r"^\s*[A-Za-z]\s*=\s*(.+)$")


def _numeric(gold: str) -> bool:
    """A reference that is a number, a percent or ``x = number`` (lenient mode may read a bare last number)."""
    named = _NAMED_NUMBER.match(gold)
    value = (named.group(1) if named else gold).strip().replace("\\%", "").rstrip("%")
    return simple_number(value) is not None


def verify_math(answer_text: str, reference: str | None, internal_timeout: int = 2,
                mode: str = "standard") -> Verdict:
    """Grade a math answer part against a reference answer string, reading the answer in ``mode``."""
    gold = clean_number(str(reference)) if reference is not None else ""
    answers, form = final_answer(answer_text, mode, numeric_reference=_numeric(gold))
    predicted = ", ".join(answers) if answers else None
    details = {"form": form}
    if not gold.strip():
        return Verdict(UNVERIFIED, predicted, "no reference answer", details)
    if not answers:
        return Verdict(INCORRECT, None, "no final answer found", details)
    if normalize_text(predicted) == normalize_text(gold):
        return Verdict(CORRECT, predicted, "exact match", details)
    if len(answers) == 1:
        quantities = _verify_quantities(answers[0], gold, internal_timeout, predicted, details)
        if quantities is not None:
            return quantities
        return _compare(answers[0], gold, form, internal_timeout, predicted, details)
    return _verify_sympy(answers, gold, form, internal_timeout, predicted, details)


def _verify_quantities(pred: str, gold: str, internal_timeout: int, predicted: str, details: dict) -> Verdict | None:
    """The verdict when either answer carries a unit (see the module docstring); None when neither does."""
    pred_quantity, gold_quantity = split_unit(pred), split_unit(gold)
    if pred_quantity is None and gold_quantity is None:
        return None
    factor = Factor(Fraction(1))
    if pred_quantity is not None and gold_quantity is not None:
        details["units"] = [pred_quantity.unit.name, gold_quantity.unit.name]
        factor = conversion(pred_quantity.unit, gold_quantity.unit)
        if factor is None:
            reason = f"units differ: {pred_quantity.unit.name} vs {gold_quantity.unit.name}"
            return Verdict(INCORRECT, predicted, reason, details)
    pred_magnitude = pred_quantity.magnitude if pred_quantity is not None else pred
    gold_magnitude = gold_quantity.magnitude if gold_quantity is not None else gold
    verdict = _compare(pred_magnitude, gold_magnitude, "boxed", internal_timeout, predicted, details, factor)
    one_sided = gold_quantity if pred_quantity is None else pred_quantity if gold_quantity is None else None
    plain = simple_number(pred_magnitude) is not None and simple_number(gold_magnitude) is not None
    if one_sided is not None and one_sided.unit.percent and verdict.status == INCORRECT and plain:
        # "75\%" and "0.75" are both ways to write three quarters, as math-verify also accepts
        percent = Factor(Fraction(1, 100) if one_sided is pred_quantity else Fraction(100))
        as_fraction = _compare(pred_magnitude, gold_magnitude, "boxed", internal_timeout, predicted, details, percent)
        if as_fraction.correct:
            return as_fraction
    return verdict


def _scaled(magnitude: str, factor: Factor) -> str:
    """LaTeX for ``magnitude`` times a unit conversion factor (math-verify compares it to the reference)."""
    if factor.identity:
        return magnitude
    magnitude = magnitude.rsplit("=", 1)[-1]  # "x = 5" in cm: the value is what converts
    text = f"\\left({magnitude}\\right)\\cdot\\frac{{{factor.ratio.numerator}}}{{{factor.ratio.denominator}}}"
    return text + (f"\\cdot\\pi^{{{factor.pi}}}" if factor.pi else "")


def _compare(pred: str, gold: str, form: str, internal_timeout: int, predicted: str, details: dict,
             factor: Factor = Factor(Fraction(1))) -> Verdict:
    """One predicted value (times ``factor``, a unit conversion) against the reference: plain numbers and
    simple fractions without sympy (``numbers_match``), anything else with math-verify."""
    pred_value, gold_value = simple_number(pred), simple_number(gold)
    if pred_value is not None and gold_value is not None and not factor.pi:
        if not factor.identity:  # a converted decimal is the exact value it names, in the reference's unit
            pred_value = Number(pred_value.value * factor.ratio)
        status = CORRECT if numbers_match(pred_value, gold_value) else INCORRECT
        return Verdict(status, predicted, "numeric comparison", details)
    return _verify_sympy([_scaled(pred, factor)], gold, form, internal_timeout, predicted, details)


def _exact_decimals(expression):
    """``expression`` with every float replaced by the exact fraction its decimal digits write."""
    import sympy

    floats = expression.atoms(sympy.Float) if isinstance(expression, sympy.Basic) else set()
    if not floats:
        return None
    try:
        return expression.xreplace({f: sympy.Rational(str(f)) for f in floats})
    except Exception:  # noqa: BLE001 - sympy raises anything on odd floats (nan, inf): nothing to check
        return None


def _decimal_equals_exact(gold_item, pred_item, pred_text: str, internal_timeout: int) -> bool:
    """After math-verify equated them (it rounds to 6 decimals): does a prediction holding decimals equal an
    exact reference exactly? True when there is nothing to check (no decimals, a decimal reference, or
    decimals printed at float64 precision)."""
    import sympy
    from math_verify import verify

    if not isinstance(gold_item, sympy.Basic) or gold_item.atoms(sympy.Float) or _float_repr_only(pred_text):
        return True
    exact = _exact_decimals(pred_item)
    if exact is None:
        return True
    return bool(verify(gold_item, exact, timeout_seconds=internal_timeout, raise_on_error=True))


def _verify_sympy(answers: list[str], gold: str, form: str, internal_timeout: int, predicted: str,
                  details: dict) -> Verdict:
    from itertools import product

    from math_verify import verify
    from math_verify.errors import TimeoutException

    gold_parsed, gold_timeout = _parse_gold(gold, internal_timeout)
    if gold_timeout:
        return timeout_verdict("parsing the reference", predicted)
    if not gold_parsed:
        return Verdict(UNVERIFIED, predicted, "reference not parseable", details)
    pred_text = ", ".join(f"\\boxed{{{a}}}" for a in answers) if form == "boxed" else _as_boxed(answers[0])
    pred_parsed, pred_timeout = _parse(pred_text, internal_timeout)
    if pred_timeout:
        return timeout_verdict("parsing the answer", predicted)
    if not pred_parsed:
        return Verdict(INCORRECT, predicted, "answer not parseable", details)
    timed_out = False
    for gold_item, pred_item in product(gold_parsed, pred_parsed):
        try:
            if (verify(gold_item, pred_item, timeout_seconds=internal_timeout, raise_on_error=True)
                    and _decimal_equals_exact(gold_item, pred_item, pred_text, internal_timeout)):
                return Verdict(CORRECT, predicted, "math-verify", details)
        except TimeoutException:
            timed_out = True
        except Exception:  # noqa: BLE001 - sympy raises anything on odd input: not equal
            continue
    if timed_out:
        return timeout_verdict("comparing", predicted)
    return Verdict(INCORRECT, predicted, "math-verify", details)
