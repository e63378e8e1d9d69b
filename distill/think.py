"""The one module that knows reasoning tags: `<think>…</think>`, the markers other datasets use, and
how a completion splits into reasoning and answer. Engines, verifiers and stages all read tags here.

    text = normalize_markers(text)                # OpenThoughts / <reasoning_process> markers -> <think>
    reasoning, answer = split_reasoning(text)     # grading: the answer follows the LAST </think>
    reasoning, answer, closed = split_think(text) # rewriting: the reasoning ends at the FIRST </think>
    think_completion(reasoning, answer)           # "<think>\\n{reasoning}\\n</think>\\n\\n{answer}"

Why two splits: a grader must read only what follows the last ``</think>`` (a number inside a second
reasoning block is not an answer), while rewriting a trace into our layout keeps everything after the
first block as it is (a malformed extra block stays visible, and the filter rejects it).
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"
OT_THOUGHT_OPEN, OT_THOUGHT_CLOSE = "<|begin_of_thought|>", "<|end_of_thought|>"
OT_SOLUTION_OPEN, OT_SOLUTION_CLOSE = "<|begin_of_solution|>", "<|end_of_solution|>"

# OpenThoughts / Bespoke-Stratos, and <reasoning_process> … <summary>: each marker -> its <think> form.
_OPENTHOUGHTS = ((OT_THOUGHT_OPEN, OPEN), (OT_THOUGHT_CLOSE, CLOSE), (OT_SOLUTION_OPEN, ""), (OT_SOLUTION_CLOSE, ""))
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
    """``(reasoning, answer_text)`` of a completion, after ``normalize_markers`` (for grading).

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


def split_think(text: str) -> tuple[str | None, str, bool]:
    """``(reasoning, answer, closed)`` of a ``<think>`` completion at its first ``</think>`` (for rewriting);
    a missing ``<think>`` opener (R1 templates that prefill it) is tolerated, a missing ``</think>`` is not
    closed: the reasoning is then what follows ``<think>`` (or None without one) and the answer empty."""
    text = text or ""
    if CLOSE not in text:
        if OPEN in text:
            return text.split(OPEN, 1)[1].strip(), "", False
        return None, text.strip(), False
    before, after = text.split(CLOSE, 1)
    before = before.split(OPEN, 1)[1] if OPEN in before else before
    return before.strip(), after.strip(), True


def think_completion(reasoning: str | None, answer: str) -> str:
    """``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``; no think block when there is no reasoning."""
    answer = (answer or "").strip()
    if reasoning is None:
        return answer
    return f"{OPEN}\n{reasoning.strip()}\n{CLOSE}\n\n{answer}"
