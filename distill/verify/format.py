"""Format check: one ``<think>…</think>`` block at the start, then a non-empty final answer.

Other reasoning markers are rewritten to ``<think>`` first, so traces made elsewhere pass the
same check:

- OpenThoughts / Bespoke-Stratos: ``<|begin_of_thought|>…<|end_of_thought|>`` then
  ``<|begin_of_solution|>…<|end_of_solution|>``;
- ``<reasoning_process>…</reasoning_process>`` then ``<summary>…</summary>``.

Reasons (``check_format(...)[0]``): ``ok``, ``no_think_block``, ``unclosed_think``,
``think_not_at_start``, ``multiple_think_blocks``, ``think_tag_in_answer``, ``short_reasoning``,
``empty_answer``.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"
OK = "ok"

_OPENTHOUGHTS = (("<|begin_of_thought|>", OPEN), ("<|end_of_thought|>", CLOSE),
                 ("<|begin_of_solution|>", ""), ("<|end_of_solution|>", ""))
_REASONING_PROCESS = (("<reasoning_process>", OPEN), ("</reasoning_process>", CLOSE),
                      ("<summary>", ""), ("</summary>", ""))


def normalize_markers(text: str) -> str:
    """Rewrite known reasoning markers to ``<think>…</think>`` (other text untouched)."""
    if not text:
        return ""
    for marker_set in (_OPENTHOUGHTS, _REASONING_PROCESS):
        if marker_set[0][0] in text or marker_set[1][0] in text:
            for old, new in marker_set:
                text = text.replace(old, new)
    return text


def split_reasoning(completion: str, assume_prefilled_think: bool = True) -> tuple[str | None, str]:
    """``(reasoning, answer_text)`` of a completion, after ``normalize_markers``.

    The answer is what follows the last ``</think>``; the reasoning what lies between the first
    ``<think>`` and that tag. Without ``</think>`` there is no reasoning (``None``): a completion
    that opened ``<think>`` but never closed it has no answer (``""``); one without think tags at
    all is all answer. With ``assume_prefilled_think``, a completion holding ``</think>`` but no
    ``<think>`` is read as reasoning whose opening tag was prefilled by the chat template (R1).
    """
    text = normalize_markers(completion or "")
    end = text.rfind(CLOSE)
    if end < 0:
        return None, ("" if OPEN in text else text.strip())
    answer = text[end + len(CLOSE):].strip()
    start = text.find(OPEN)
    if start < 0 or start > end:
        if not assume_prefilled_think:
            return None, answer
        return text[:end].strip(), answer
    return text[start + len(OPEN):end].strip(), answer


def check_format(completion: str, min_reasoning_chars: int = 20,
                 assume_prefilled_think: bool = True) -> tuple[str, str | None, str]:
    """``(reason, reasoning, answer_text)``; ``reason == "ok"`` for a well-formed completion."""
    text = normalize_markers(completion or "")
    reasoning, answer = split_reasoning(text, assume_prefilled_think)
    n_open, n_close = text.count(OPEN), text.count(CLOSE)
    if n_open == 0 and n_close == 0:
        return "no_think_block", None, answer
    if n_close == 0:
        return "unclosed_think", None, answer
    if n_open == 0:
        if not assume_prefilled_think:
            return "no_think_block", reasoning, answer
    elif not text.lstrip().startswith(OPEN):
        return "think_not_at_start", reasoning, answer
    if OPEN in answer:
        return "think_tag_in_answer", reasoning, answer
    if n_open > 1 or n_close > 1:
        return "multiple_think_blocks", reasoning, answer
    if len(reasoning or "") < min_reasoning_chars:
        return "short_reasoning", reasoning, answer
    if not answer:
        return "empty_answer", reasoning, answer
    return OK, reasoning, answer
