"""Multiple-choice answers (GPQA style): the chosen letter, from the answer part only.

Forms, in order (``mode`` as in ``distill.verify.extraction``): ``\\boxed{C}`` (also ``\\boxed{\\text{(C)}}``,
``\\boxed{C) 42}``) — the only form in strict mode; "Answer: C" / "the answer is (C)" / "Answer: **C**" /
``Answer: "C"`` / "the answer is for sure D", the last standalone "(C)", a bare "C" / "**C**" answer, an answer
that is one option line ("B) Pumps blood to the body"); in lenient
mode also an answer that opens with its letter ("D. it can't be A or B", "B。不是 A"), "Réponse : C" / "答案：C"
and the other anchors of ``extraction``, then the last standalone capital
letter that ends a clause ("It's not A because …, therefore I think it's B"). The
reference is a letter (``C``, ``(C)``, ``\\boxed{C}``); a reference that is not a letter is
compared as text with the answer's box or phrase.
"""

from __future__ import annotations

import re

from distill.verify import CORRECT, INCORRECT, UNVERIFIED, Verdict
from distill.verify.extraction import TAIL_CHARS, extract_boxed
from distill.verify.math import normalize_text

LETTERS = "ABCDEFGHIJ"
_LETTER = re.compile(r"^\(?\s*([A-J])\s*\)?(?:[\s.:)\]]|$)")
# "the answer is for sure D", "Answer: \"C\"", "answer is option (B)": filler words and quotes between
_FILLER = r"(?:(?i:for\s+sure|definitely|clearly|certainly|probably|likely|surely|indeed|option|choice|letter)\s+)*"
_QUOTE = "[\"'“”‘’`]?"
_PHRASE = re.compile(r"(?i:answer)(?:\s*\*\*)?(?:\s+(?i:is))?[\s*:=]*" + _FILLER + _QUOTE +
                     r"\(?\s*\**([A-J])\**\s*\)?" + _QUOTE + r"(?![A-Za-z0-9])")
_FOREIGN = re.compile(r"(?:答案|答え|正解|정답|(?i:r[ée]ponse(?:\s+est)?|respuesta(?:\s+es)?|antwort(?:\s+ist)?|ответ|"
                      r"risposta(?:\s+[èe])?|resposta(?:\s+[ée])?|đáp\s+án|jawaban(?:nya)?|cevap))"
                      r"\s*(?:是|为|為|は)?[\s*:：=]*" + _QUOTE + r"\(?\s*\**([A-J])\**\s*\)?" + _QUOTE + r"(?![A-Za-z0-9])")
# lenient: a standalone capital letter that ends a clause ("... I think it's B", "B." ); "A" / "I" followed by a
# lower-case word are an article / a pronoun, which the lookahead rules out
_OPTION_LINE = re.compile(r"\s*\**\(?([A-J])[).:]\**\s+\S[^\n]{0,200}$")
# ("A good first step ..." opens with an article: a letter followed by a lower-case word is not an answer)
_LEADING_LETTER = re.compile(r"\s*\**\(?([A-J])\)?\**(?:[.:：。,、)]|\s*$|\s+(?=[^a-z\s])|[^\x00-\x7F])")
_CLAUSE_LETTER = re.compile(r"(?<![A-Za-z0-9'])([A-J])(?=\s*(?:[.,;!)\]]|$))", re.M)
_PAREN = re.compile(r"\(([A-J])\)")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")


def _letter_of(text: str) -> str | None:
    text = _TEXT_CMD.sub(r"\1", text or "").strip().strip("$*").strip()
    match = _LETTER.match(text)
    return match.group(1) if match else None


def extract_choice(answer_text: str, mode: str = "standard") -> tuple[str | None, str]:
    """``(letter, form)`` with form boxed | phrase | paren | bare | foreign | clause | none."""
    boxes = extract_boxed(answer_text)
    if boxes:
        letter = _letter_of(boxes[-1])
        if letter:
            return letter, "boxed"
    if mode == "strict":
        return None, "none"
    tail = (answer_text or "")[-TAIL_CHARS:]
    phrases = list(_PHRASE.finditer(tail))
    if phrases:
        return phrases[-1].group(1), "phrase"
    parens = list(_PAREN.finditer(tail))
    if parens:
        return parens[-1].group(1), "paren"
    letter = _letter_of(tail) if len(tail.strip()) <= 8 else None
    if letter:
        return letter, "bare"
    option = _OPTION_LINE.match(answer_text or "")
    if option:  # "B) Pumps blood to the body": the answer is the option, quoted with its letter
        return option.group(1), "option"
    if mode == "lenient":
        leading = _LEADING_LETTER.match(answer_text or "")
        if leading:  # "D. it can't be A or B", "B。不是 A": the answer opens with its letter
            return leading.group(1), "leading"
        for pattern, form in ((_FOREIGN, "foreign"), (_CLAUSE_LETTER, "clause")):
            found = list(pattern.finditer(tail))
            if found:
                return found[-1].group(1), form
    return None, "none"


def reference_choice(reference: str | None) -> str | None:
    if reference is None:
        return None
    boxes = extract_boxed(str(reference))
    return _letter_of(boxes[-1] if boxes else str(reference))


def verify_choice(answer_text: str, reference: str | None, mode: str = "standard") -> Verdict:
    letter, form = extract_choice(answer_text, mode)
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
