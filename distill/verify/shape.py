"""Trace-shape checks: a completion that loops, or that rambles on after its final answer.

    shape = measure_shape(completion, ngram=20)          # TraceShape(max_ngram_repeats, loop_repeats, ...)
    tail_chars(answer_text)                              # characters after the last \\boxed{} / answer line

Both teach a student never to stop, and neither is caught by the answer check (a looping trace may
still end in the right answer). Pure functions on strings, stdlib only: they run in the filter's
check workers or in-process.

Tokens (``tokens``): runs of non-space characters (digits kept, case kept: "7+4=11" and "11+4=15"
differ, so a long trace of changing arithmetic is no loop), except that each character of a script
written without spaces (CJK, kana, Thai, Lao, Khmer, Myanmar, fullwidth forms) is a token of its
own, and a run of over ``LONG_RUN`` characters without a space ("hahaha…", "!!!!…") is split into
characters: a word is never that long, a loop written without spaces often is.

Two measures of a loop, from the field and for the short loops it misses:

* ``max_ngram_repeats``: the most occurrences of any word ``n``-gram (default 20). AM-Thinking-v1
  drops responses with a 20-gram repeated more than 20 times. It catches long
  loops of any period up to a few hundred words, but not a short trace that loops 10 times.
* ``loop_repeats`` / ``loop_share``: the run of consecutive verbatim copies of one unit of 1..50
  tokens covering the most tokens, as its number of copies and its share of all tokens (reasoning
  and answer: a generation cut off mid-loop has no answer part). The filter's default rejects
  >= 8 copies covering >= 30 % of the completion: legitimate text repeats a unit 8 times in a row
  only in things like a vector of zeros, a few tokens of a long trace; a sentence said 8 times that
  fills a third of the trace is degenerate whatever its length.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

# scripts written without spaces between words: each character is a token
_NO_SPACE = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf"
             "\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0002fa1f")
_TOKEN = re.compile(f"[{_NO_SPACE}]|[^\\s{_NO_SPACE}]+")
_NO_SPACE_CHAR = re.compile(f"[{_NO_SPACE}]")
LONG_RUN = 100  # characters without a space beyond which a "word" is read character by character
MAX_PERIOD = 50  # longest unit (tokens) of a consecutive loop
_MIN_COPIES = 3  # a run is measured from 3 consecutive copies on (2 is ordinary: "very very", "0 0")
# a symbol equal to the next one (zero-width: every such position, overlapping ones included)
_EQUAL_NEIGHBOURS = re.compile(r"(?=(.)\1)", re.DOTALL)


@dataclass(frozen=True)
class TraceShape:
    """What ``measure_shape`` measured on one completion."""

    num_tokens: int
    max_ngram_repeats: int  # occurrences of the most frequent n-gram (0: fewer than n tokens)
    loop_repeats: int       # copies in the longest consecutive run of one unit (0: no unit seen 3 times in a row)
    loop_period: int        # tokens in that unit
    loop_share: float       # tokens the run covers / all tokens


def tokens(text: str) -> list[str]:
    """Word tokens of ``text`` (see the module docstring), characters for scripts without spaces."""
    text = text or ""
    # str.split is ~7x faster than the token regex: use it when no script without spaces is present
    found = _TOKEN.findall(text) if _NO_SPACE_CHAR.search(text) else text.split()
    if found and max(map(len, found)) > LONG_RUN:
        found = [piece for token in found for piece in (token if len(token) > LONG_RUN else (token,))]
    return found


def _symbols(words: list[str]) -> str:
    """Each distinct token as one character, so n-grams are substrings and runs compare as slices.

    (A str of code points instead of a tuple of words: slicing, comparing and hashing a 20-character
    string is several times cheaper than a 20-tuple of words.)
    """
    # more than 1.1M distinct tokens only: two tokens share a code point, a harmless collision
    codes = {word: chr(i % 0x110000) for i, word in enumerate(dict.fromkeys(words))}
    return "".join(map(codes.__getitem__, words))


def max_ngram_repeats(symbols: str, n: int) -> int:
    """Occurrences (overlapping) of the most frequent ``n``-gram; 0 when there are fewer than ``n`` tokens."""
    if len(symbols) < n:
        return 0
    return max(Counter(symbols[i:i + n] for i in range(len(symbols) - n + 1)).values())


def longest_run(symbols: str) -> tuple[int, int]:
    """``(copies, period)`` of the run of consecutive copies of one unit (1..MAX_PERIOD tokens, >= 3
    copies) that covers the most tokens; ``(0, 0)`` without one. The shortest period wins a tie, so a
    word said 40 times is 40 copies of 1 token, not 20 of 2.

    Why not one regex ``(.{1,50}?)\\1{2,}``: it tries 50 unit lengths at every token (~6 ms on an
    8k-token trace). A run of >= 3 copies of period p holds two equal consecutive p-blocks aligned at a
    multiple of p; their first tokens are neighbours in ``symbols[::p]``, so a C-speed scan of that
    strided string for equal neighbours yields every candidate (and few others); only candidates are
    compared as blocks and extended to the run's full extent, by comparing slices.
    """
    best = (0, 0, 0)  # (tokens covered, copies, period)
    n = len(symbols)
    for period in range(1, min(MAX_PERIOD, n // _MIN_COPIES) + 1):
        strided, next_k = symbols[::period], 0
        while (pair := _EQUAL_NEIGHBOURS.search(strided, next_k)) is not None:
            k = pair.start()
            next_k, at, end = k + 1, k * period, (k + 2) * period
            if symbols[at:at + period] != symbols[at + period:end]:
                continue
            # just two copies ("the the", "0 0") unless the run goes on to either side
            if (end >= n or symbols[end] != symbols[end - period]) \
                    and (at == 0 or symbols[at - 1] != symbols[at - 1 + period]):
                continue
            start, run_end = _periodic_extent(symbols, at, period)
            next_k = max(next_k, (run_end - 2 * period) // period + 1)  # skip the candidates inside this run
            copies = (run_end - start) // period
            if copies >= _MIN_COPIES and copies * period > best[0]:
                best = (copies * period, copies, period)
    return best[1], best[2]


def _periodic_extent(symbols: str, at: int, period: int) -> tuple[int, int]:
    """The largest ``[start, end)`` around ``at`` in which every token equals the one ``period`` later (given
    ``symbols[at:at+period] == symbols[at+period:at+2*period]``).

    Galloping slice comparisons (steps doubling while equal, halving on a mismatch) cost O(L log L) in the
    run's own length L, never in the text's, so many short runs ("x x x y" said 1,500 times) stay cheap.
    """
    limit = len(symbols) - period
    right, step = at + period, period  # symbols[j] == symbols[j + period] holds for j in [at, right)
    while step and right < limit:
        step = min(step, limit - right)
        if symbols[right:right + step] == symbols[right + period:right + period + step]:
            right, step = right + step, step * 2
        else:
            step //= 2
    left, step = at, period  # ... and for j in [left, at)
    while step and left > 0:
        step = min(step, left)
        if symbols[left - step:left] == symbols[left - step + period:left + period]:
            left, step = left - step, step * 2
        else:
            step //= 2
    return left, right + period


def measure_shape(completion: str, ngram: int = 20) -> TraceShape:
    """The loop measures of a whole completion (reasoning and answer)."""
    symbols = _symbols(tokens(completion))
    copies, period = longest_run(symbols)
    share = copies * period / len(symbols) if symbols else 0.0
    return TraceShape(len(symbols), max_ngram_repeats(symbols, ngram), copies, period, round(share, 4))


def is_loop(shape: TraceShape, max_ngram_repeats: int = 20, min_loop_repeats: int = 8,
            min_loop_share: float = 0.3) -> bool:
    """A repetition loop: some n-gram occurs more than ``max_ngram_repeats`` times, or a unit is repeated
    ``min_loop_repeats`` times in a row and that run covers ``min_loop_share`` of the completion."""
    return (shape.max_ngram_repeats > max_ngram_repeats
            or (shape.loop_repeats >= min_loop_repeats and shape.loop_share >= min_loop_share))


# ---------------------------------------------------------------------------- tail after the final answer

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "Final Answer: 7", "The answer is (C).", "**Answer:** C": the answer runs to the end of its line
_ANSWER_LINE = re.compile(r"(?:final\s+answer|\banswer)\s*(?:\*\*\s*)?(?:is\b|:)[^\n]*", re.IGNORECASE)


def _box_end(text: str, start: int) -> int | None:
    """Index after the ``}`` closing the brace group opened at ``start - 1`` (None when unbalanced)."""
    depth = 1
    for i in range(start, len(text)):
        char = text[i]
        if char == "{" and text[i - 1] != "\\":
            depth += 1
        elif char == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def final_answer_end(answer: str) -> int | None:
    """Where the final answer of an answer part ends: after the last ``\\boxed{…}`` (or ``\\fbox``), else
    after the line of the last "answer is / answer:" anchor; None when there is neither."""
    boxes = list(_BOX.finditer(answer))
    if boxes:
        end = _box_end(answer, boxes[-1].end())
        if end is not None:
            return end
        line_end = answer.find("\n", boxes[-1].end())  # an unclosed box: its line is the answer
        return len(answer) if line_end < 0 else line_end
    lines = list(_ANSWER_LINE.finditer(answer))
    return lines[-1].end() if lines else None


def tail_chars(answer: str) -> int | None:
    """Characters (whitespace stripped) of the answer part after its final answer; None without a final
    answer to measure from (code answers, prose)."""
    end = final_answer_end(answer or "")
    return None if end is None else len(answer[end:].strip())
