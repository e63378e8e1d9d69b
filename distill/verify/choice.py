"""Multiple-choice answers (GPQA style): the chosen letter, from the answer part only.

Forms, in order: ``\\boxed{C}`` (also ``\\boxed{\\text{(C)}}``, ``\\boxed{C) 42}``), "Answer: C" /
"the answer is (C)" / "Answer: **C**", the last standalone "(C)", a bare "C" answer. The
reference is a letter (``C``, ``(C)``, ``\\boxed{C}``); a reference that is not a letter is
compared as text with the answer's box or phrase.
"""

from __future__ import annotations

import re

from distill.verify import CORRECT, INCORRECT, UNVERIFIED, Verdict
from distill.verify.math import TAIL_CHARS, extract_boxed, normalize_text

LETTERS = "ABCDEFGHIJ"
_LETTER = re.compile(r"^\(?\s*([A-J])\s*\)?(?:[\s.:)\]]|$)")
_PHRASE = re.compile(r"(?i:answer)(?:\s*\*\*)?(?:\s+(?i:is))?[\s*:=]*(?:(?i:option|choice)\s+)?"
                     r"\(?\s*\**([A-J])\**\s*\)?(?![A-Za-z0-9])")
_PAREN = re.compile(r"\(([A-J])\)")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")


def _letter_of(text: str) -> str | None:
    text = _TEXT_CMD.sub(r"\1", text or "").strip().strip("$*").strip()
    match = _LETTER.match(text)
    return match.group(1) if match else None


def extract_choice(answer_text: str) -> tuple[str | None, str]:
    """``(letter, form)`` with form boxed | phrase | paren | bare | none."""
    boxes = extract_boxed(answer_text)
    if boxes:
        letter = _letter_of(boxes[-1])
        if letter:
            return letter, "boxed"
    tail = (answer_text or "")[-TAIL_CHARS:]
    phrases = list(_PHRASE.finditer(tail))
    if phrases:
        return phrases[-1].group(1), "phrase"
    parens = list(_PAREN.finditer(tail))
    if parens:
        return parens[-1].group(1), "paren"
    letter = _letter_of(tail) if len(tail.strip()) <= 4 else None
    return (letter, "bare") if letter else (None, "none")


def reference_choice(reference: str | None) -> str | None:
    if reference is None:
        return None
    boxes = extract_boxed(str(reference))
    return _letter_of(boxes[-1] if boxes else str(reference))


def verify_choice(answer_text: str, reference: str | None) -> Verdict:
    letter, form = extract_choice(answer_text)
    details = {"form": form}
    if reference is None or not str(reference).strip():
        return Verdict(UNVERIFIED, letter, "no reference answer", details)
    gold = reference_choice(reference)
    if gold is None:  # the reference is the option's text, not its letter
        boxes = extract_boxed(answer_text)
        predicted = boxes[-1] if boxes else None
        if predicted is None:
            return Verdict(INCORRECT, letter, "no final answer found", details)
        ok = normalize_text(predicted) == normalize_text(str(reference))
        return Verdict(CORRECT if ok else INCORRECT, predicted, "text comparison", details)
    if letter is None:
        return Verdict(INCORRECT, None, "no choice found", details)
    return Verdict(CORRECT if letter == gold else INCORRECT, letter, f"choice {letter} vs {gold}", details)
