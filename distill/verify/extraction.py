"""Where the final answer of a completion is read, in three modes (``--answer-extraction``; filter, eval and the
GRPO accuracy reward share it).

    from distill.verify.extraction import final_answer, reference_answer
    final_answer("... so the answer is $\\frac12$.", mode="standard")   # (["\\frac12"], "phrase")

Only the answer part (after ``</think>``) is read. Forms, in order; the first that is present wins:

strict
    the last ``\\boxed{…}`` / ``\\fbox{…}`` only (what DeepSeek-R1's and open-r1's accuracy rewards read).
standard (default)
    every box after the last "Final Answer" marker, else every box; several distinct boxes form a set, as
    math-verify treats them (``\\boxed{10}`` and ``\\boxed{4}`` match ``v_R=4, v_B=10``). Else the answer
    phrases, the last one in the text: Minerva's "Final Answer: The final answer is X. I hope it is correct.",
    "final answer is X", "Final answer: X", "the answer is X", "Answer: X" (X: the first math span, else a
    leading number, else the clause up to the sentence's end). Else the last ``$…$`` / ``\\(…\\)`` / ``\\[…\\]``
    span with the spans joined to it by "and" / "or" / "," (``$x=-2$ and $x=3$``). Else the last bold number.
    Else an answer part that is nothing but a short value (``-15``, ``1 000``, ``\\frac{4}{23}``, ``x = 3``).
lenient
    standard, then answer anchors in other languages (答案 / 最终答案 / 答え / Réponse / La réponse est /
    Respuesta / Antwort / Ответ / Risposta / Resposta / 정답 / Đáp án / Jawaban / Cevap), then, for a numeric
    reference only, the last number of the answer part (``The angle is [90].``, ``Donc, il a déjà 79 g``).

Multiple-choice letters follow the same modes (``distill.verify.choice``).

References (``reference_answer``) are read the same way in every mode: the value itself, GSM8K's ``#### N``,
the box of a worked solution (several distinct boxes: a set, ``\\boxed{2}, \\boxed{3}``), or the value after an
answer phrase in a short gold (``answer is 0.6666667``).
"""

from __future__ import annotations

import re

MODES = ("strict", "standard", "lenient")
MAX_BOXES = 32  # a real answer has a few; more is noise (or an attack) and is not scanned
MAX_BOX_CHARS = 5000
TAIL_CHARS = 4000  # non-boxed answer forms are looked for in the last 4000 characters

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# a lookahead keeps "rest" from swallowing the next anchor: in Minerva's "Final Answer: The final answer is X"
# both anchors match and the last one, "final answer is", gives X
_PHRASE = re.compile(r"(?i:(?:final\s+answer|answer)(?:\s*\*\*)?\s*(?:is\b|:|=)|final\s+answer)"
                     r"(?=[\s*:=]*(?P<rest>[^\n]{0,300}))")
# lenient: anchors in other languages (the answer follows on the same line)
_FOREIGN_PHRASE = re.compile(
    r"(?:最终答案|答案|答え|正解|정답|(?i:la\s+r[ée]ponse\s+est|r[ée]ponse|la\s+respuesta\s+es|respuesta|"
    r"die\s+antwort\s+ist|antwort|ответ|la\s+risposta\s+[èe]|risposta|a\s+resposta\s+[ée]|resposta|đáp\s+án|"
    r"jawaban(?:nya)?|cevap))\s*(?:是|为|為|は|:|：|=|est|es|ist|è|é)?(?=[\s*:：=]*(?P<rest>[^\n]{0,300}))")
_MATH_SPANS = (re.compile(r"\$\$(.{1,1000}?)\$\$", re.S), re.compile(r"\\\[(.{1,1000}?)\\\]", re.S),
               re.compile(r"\\\((.{1,500}?)\\\)"), re.compile(r"(?<![\\$])\$([^$\n]{1,300}?)(?<!\\)\$"))
_FINAL_MARKER = re.compile(r"(?i)final\s+answer")
_BOLD_NUMBER = re.compile(r"\*\*\s*\$?(-?\d[\d,]*(?:\.\d+)?(?:/\d+)?(?:\\?%)?)\$?\s*\*\*")
_JOINER = re.compile(r"\s*(?:,\s*and|,\s*or|,|and|or)\s*$")
_LEADING_NUMBER = re.compile(r"^-?\$?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?(?![\w^{])")
_SENTENCE_END = re.compile(r"(?<!\d)[.;。](?:\s|$)|\.(?=\s+[A-Z])|\s+(?:because|since|which|as|so|and so|therefore)\b")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:(?:,|\\,|\{,\}|\\ |\\;|\s)\d{3})+(?:\.\d+)?")
_SEPARATORS = re.compile(r",|\\,|\{,\}|\\ |\\;|\s")
# lenient: the last number of the answer part (thousands separators and a simple fraction included)
_ANY_NUMBER = re.compile(r"(?<![A-Za-z0-9.])(?:-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+)"
                         r"(?!\d|\.\d|[A-Za-z])")
# an answer part that is nothing but a short value ("-15", "1 000", "\frac{4}{23}", "x = 3")
_BARE_VALUE = re.compile(r"\s*(?:[A-Za-z]\s*=\s*)?(?P<value>[^\n]{1,60}?)\s*\.?\s*")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")  # prose, not a value (LaTeX commands excepted)
_NAMED_VALUE = re.compile(r"\s(?:is|are|equals)\s+(?P<value>.+)$")


def _matching_brace(text: str, open_index: int, limit: int = MAX_BOX_CHARS) -> int | None:
    depth = 0
    end = min(len(text), open_index + limit)
    i = open_index
    while i < end:
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _unwrap_boxes(content: str) -> str:
    """``\\boxed{\\boxed{5}}`` -> ``5``."""
    for _ in range(8):
        stripped = content.strip()
        if not _BOX.match(stripped):
            break
        inner = extract_boxed(stripped)
        if not inner:
            break
        content = ", ".join(inner)
    return content


def extract_boxed(text: str) -> list[str]:
    """Contents of every ``\\boxed{…}`` / ``\\fbox{…}`` (and ``\\boxed 5``), in order, brace-matched."""
    matches = list(_BOX.finditer(text or ""))[-MAX_BOXES:]
    out, resume = [], 0
    for match in matches:
        if match.start() < resume:
            continue
        i = match.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            close = _matching_brace(text, i)
            if close is None:
                continue
            content, resume = text[i + 1:close], close + 1
        else:
            bare = re.match(r"[^\s$]{1,100}", text[i:i + 100])
            if not bare:
                continue
            content, resume = bare.group(), i + bare.end()
        content = _unwrap_boxes(content).strip()
        if content:
            out.append(content)
    return out


def _answer_phrase(tail: str, pattern: re.Pattern = _PHRASE) -> str | None:
    """The value after the last answer anchor of ``tail`` that has one."""
    for match in reversed(list(pattern.finditer(tail))):
        rest = match.group("rest").strip().strip("*").strip()
        if not rest:
            continue
        cut = _SENTENCE_END.search(rest)
        named = _NAMED_VALUE.search(rest[:cut.start()] if cut else rest) if rest[0].isalpha() else None
        if named:  # "Final Answer: The largest $n$ is 34." -> 34, not the span "$n$"
            rest = named.group("value").strip()
        for span_pattern in _MATH_SPANS[2:]:  # "the answer is $\frac12$, so ..." -> the first math span
            span = span_pattern.search(rest)
            if span:
                return span.group(1).strip()
        number = _LEADING_NUMBER.match(rest)
        if number:
            return number.group().replace("$", "")
        cut = _SENTENCE_END.search(rest)
        rest = (rest[:cut.start()] if cut else rest).strip().rstrip(".").strip("*").strip()
        if rest and len(rest) <= 100:
            return rest
    return None


def _last_math(tail: str) -> str | None:
    """The last math span, with the spans joined to it by "and" / "or" / "," (``$x=-2$ and $x=3$``)."""
    spans = sorted((m.start(), m.end(), m.group(1).strip()) for pattern in _MATH_SPANS
                   for m in pattern.finditer(tail) if m.group(1).strip())
    if not spans:
        return None
    chosen = [spans[-1]]
    for span in reversed(spans[:-1]):
        if len(chosen) >= 6 or span[1] > chosen[-1][0] or not _JOINER.fullmatch(" " + tail[span[1]:chosen[-1][0]]):
            break
        chosen.append(span)
    return ", ".join(text for _, _, text in reversed(chosen))


def _boxes(answer_text: str, last_marker: re.Match | None = None) -> tuple[list[str], bool]:
    """``(boxes, after_marker)``: every box after the last "Final Answer" marker (R1 boxes intermediate results
    in its summary, then repeats the answer under ``**Final Answer**``), else every box; the same box twice is
    one answer. ``last_marker``: that marker when the caller has found it already."""
    if last_marker is None:
        last_marker = next(reversed(list(_FINAL_MARKER.finditer(answer_text))), None)
    boxes = extract_boxed(answer_text[last_marker.end():]) if last_marker else []
    after_marker = bool(boxes)
    boxes = boxes or extract_boxed(answer_text)
    return list(dict.fromkeys(clean_number(b) for b in boxes)), after_marker


def final_answer(answer_text: str, mode: str = "standard", numeric_reference: bool = False) -> tuple[list[str], str]:
    """``(answers, form)``: the final answer(s) of an answer part in ``mode`` (see the module docstring); form is
    boxed | phrase | math | bold | foreign | last-number | none. ``numeric_reference`` lets lenient mode fall back
    to the last number."""
    answer_text = answer_text or ""
    if mode == "strict":
        boxes = extract_boxed(answer_text)
        return ([clean_number(boxes[-1])], "boxed") if boxes else ([], "none")
    last_marker = next(reversed(list(_FINAL_MARKER.finditer(answer_text))), None)
    boxes, boxed_after_marker = _boxes(answer_text, last_marker)
    if last_marker and not boxed_after_marker:
        # "$\\boxed{200}$ ... Final Answer: The final answer is $10,455$": the last word is the Minerva line
        phrase = _answer_phrase(answer_text[last_marker.start():][:TAIL_CHARS])
        if phrase:
            return [clean_number(phrase)], "phrase"
    if boxes:
        return boxes, "boxed"
    tail = answer_text[-TAIL_CHARS:]
    phrase = _answer_phrase(tail)
    if phrase:
        return [clean_number(phrase)], "phrase"
    span = _last_math(tail)
    if span:
        return [clean_number(span)], "math"
    bold = list(_BOLD_NUMBER.finditer(tail))
    if bold:
        return [clean_number(bold[-1].group(1))], "bold"
    bare = _BARE_VALUE.fullmatch(answer_text)
    if bare and bare.group("value").isascii() and not _WORD.search(bare.group("value")):
        return [clean_number(bare.group("value"))], "bare"
    if mode == "lenient":
        phrase = _answer_phrase(tail, _FOREIGN_PHRASE)
        if phrase:
            numbers = _ANY_NUMBER.findall(phrase) if numeric_reference else []
            if numbers and numbers[0] != phrase and "\\" not in phrase:  # "Réponse: Janeth aura encore 220 $ à payer" -> the first: 220
                return [clean_number(numbers[0])], "foreign"
            return [clean_number(phrase)], "foreign"
        numbers = _ANY_NUMBER.findall(tail) if numeric_reference else []
        if numbers:
            return [clean_number(numbers[-1])], "last-number"
    return [], "none"


def reference_answer(value) -> str | None:
    """The reference answer in a dataset cell (see the module docstring); None when there is none."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        parts = [p for p in (reference_answer(v) for v in value) if p]
        return ", ".join(parts) or None
    text = str(value).strip()
    if not text:
        return None
    if "####" in text:
        return text.rsplit("####", 1)[1].strip() or None
    boxes, _ = _boxes(text)
    if boxes:
        return ", ".join(boxes)  # several distinct boxes: a set ("\\boxed{2}, \\boxed{3}")
    if len(text) > 300 and "\n" in text:  # a worked solution without a marked answer
        return None
    if len(text) <= 300 and _PHRASE.search(text):  # a gold written as "answer is 0.6666667"
        return _answer_phrase(text) or text
    return text


def clean_number(text: str) -> str:
    """``1,000`` / ``1\\,000`` / ``1{,}000`` / ``1 000`` -> ``1000``; other text unchanged (stripped)."""
    text = (text or "").strip()
    bare = text.strip("$").replace("\\$", "").strip().rstrip(".")
    if _THOUSANDS.fullmatch(bare):
        return _SEPARATORS.sub("", bare)
    return text
