"""Length check: completion tokens within ``[min_tokens, max_tokens]``.

Token counts come, in order of preference, from the row's ``completion_tokens`` (what the engine
reported), from a tokenizer (``--tokenizer``), or from an estimate of one token per 4 characters
(the usual rule of thumb for English BPE vocabularies; it overestimates dense LaTeX a little and
underestimates CJK text, which is ~1 token per character).
"""

from __future__ import annotations

import math

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """``ceil(len(text) / 4)``: the documented estimate when no count or tokenizer is available."""
    return math.ceil(len(text or "") / CHARS_PER_TOKEN)


def count_tokens(texts: list[str], reported: list[int | None] | None = None, tokenizer=None) -> tuple[list[int], str]:
    """Token counts for ``texts`` and how they were obtained (``reported`` | ``tokenizer`` | ``chars/4``).

    Reported counts win row by row; the rest come from the tokenizer (batched) or the estimate.
    """
    counts: list[int | None] = list(reported) if reported is not None else [None] * len(texts)
    missing = [i for i, c in enumerate(counts) if c is None]
    source = "reported"
    if missing:
        if tokenizer is not None:
            encoded = tokenizer([texts[i] or "" for i in missing], add_special_tokens=False)["input_ids"]
            for i, ids in zip(missing, encoded, strict=True):
                counts[i] = len(ids)
            source = "tokenizer" if len(missing) == len(texts) else "reported+tokenizer"
        else:
            for i in missing:
                counts[i] = estimate_tokens(texts[i])
            source = "chars/4" if len(missing) == len(texts) else "reported+chars/4"
    return [int(c) for c in counts], source


def check_length(num_tokens: int, min_tokens: int = 0, max_tokens: int | None = None) -> bool:
    return num_tokens >= (min_tokens or 0) and (max_tokens is None or num_tokens <= max_tokens)
