"""Format check: one ``<think>…</think>`` block at the start, then a non-empty final answer.

Other reasoning markers (OpenThoughts', ``<reasoning_process>``) are rewritten to ``<think>`` first
(``distill.think``), so traces made elsewhere pass the same check.

Reasons (``check_format(...)[0]``): ``ok``, ``no_think_block``, ``unclosed_think``,
``think_not_at_start``, ``multiple_think_blocks``, ``think_tag_in_answer``, ``short_reasoning``,
``empty_answer``.
"""

from __future__ import annotations

from distill.think import CLOSE, OPEN, normalize_markers, split_reasoning

__all__ = ["OK", "check_format", "normalize_markers", "split_reasoning"]

OK = "ok"


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
