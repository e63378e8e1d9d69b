"""Language check: the reasoning is written in the script of the prompt, without mixing.

DeepSeek-R1 added a language-consistency reward because RL made its reasoning switch between
English and Chinese. This check measures the same thing without a language-ID model: it counts
"words" per Unicode script (a run of letters of an alphabetic script, or one CJK / kana / Hangul
character) and reports the share of reasoning words that are *not* in the prompt's script.

LaTeX commands, inline math and single letters (variables, Greek symbols) are ignored, so
``\\frac``, ``x``, ``θ`` and ``π`` never count as mixing. Japanese prompts accept Han + kana.
All counting is regex work in C, about 1 ms for 20k characters, and linear in the length: unclosed
``\\(`` / ``\\[`` are neutralized first (``_without_dangling_openers``), so 200k characters of them take
milliseconds, not minutes.
"""

from __future__ import annotations

import re

# script -> character class (letters only)
_SCRIPTS: dict[str, str] = {
    "latin": "A-Za-z\u00c0-\u024f\u1e00-\u1eff",
    "cyrillic": "\u0400-\u04ff\u0500-\u052f",
    "greek": "\u0370-\u03ff\u1f00-\u1fff",
    "arabic": "\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff",
    "hebrew": "\u0590-\u05ff",
    "devanagari": "\u0900-\u097f",
    "thai": "\u0e00-\u0e7f",
    "hangul": "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f",
    "kana": "\u3040-\u309f\u30a0-\u30ff",
    "han": "\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff",
}
# Scripts written one character per "word" (no spaces between words).
_CHARACTER_SCRIPTS = {"han", "kana", "hangul", "thai"}
_WORD_RES = {
    name: re.compile(f"[{chars}]" if name in _CHARACTER_SCRIPTS else f"[{chars}]{{2,}}")
    for name, chars in _SCRIPTS.items()
}
_NON_LATIN = re.compile("[" + "".join(chars for name, chars in _SCRIPTS.items() if name != "latin") + "]")
# Scripts a prompt in script K may use freely in its reasoning.
_COMPATIBLE = {"han": {"han", "kana"}, "kana": {"han", "kana"}}
_IGNORED = re.compile(
    r"\\[A-Za-z]+"                      # LaTeX commands
    r"|\$\$.*?\$\$|\$[^$\n]{0,400}\$"   # math
    r"|\\\(.*?\\\)|\\\[.*?\\\]"
    r"|```.*?```|`[^`\n]*`",            # code
    re.S,
)


# Asymmetric math delimiters: an opener after the last closer can never match, yet the lazy ``.*?`` of
# ``_IGNORED`` scans to the end of the text from each one (quadratic: 100k characters of unclosed ``\\[``
# took ~10 s). Symmetric delimiters ($$, ```) have at most one such opener, so they stay linear.
_ASYMMETRIC = (("\\(", "\\)"), ("\\[", "\\]"))


def _without_dangling_openers(text: str) -> str:
    """``text`` with every ``\\(`` / ``\\[`` that has no closer after it turned into `` (`` / `` [``.

    Exactly what ``_IGNORED.sub`` then removes is unchanged: such an opener matches no alternative of
    ``_IGNORED`` (it is no LaTeX command, its closer is missing), and the two characters that replace it
    (same length, no ``$``, backtick or letter) match none either, inside or outside another span.
    """
    for opener, closer in _ASYMMETRIC:
        cut = text.rfind(closer) + len(closer) if closer in text else 0
        if opener in text[cut:]:
            text = text[:cut] + text[cut:].replace(opener, " " + opener[1])
    return text


def script_counts(text: str) -> dict[str, int]:
    """Words per script in ``text`` (math, code and LaTeX commands removed first)."""
    cleaned = _IGNORED.sub(" ", _without_dangling_openers(text or ""))
    if cleaned.isascii():  # the common case: only Latin can occur, one regex pass
        n = len(_WORD_RES["latin"].findall(cleaned))
        return {"latin": n} if n else {}
    counts = {}
    for name, pattern in _WORD_RES.items():
        if name != "latin" and not pattern.search(cleaned):
            continue
        n = len(pattern.findall(cleaned))
        if n:
            counts[name] = n
    return counts


def dominant_script(text: str) -> str | None:
    counts = script_counts(text)
    if not counts:
        return None
    if "kana" in counts:  # Japanese: kana marks it even when Han characters dominate
        return "kana"
    return max(sorted(counts), key=lambda k: counts[k])


def mixing(reasoning: str, expected: str | None) -> tuple[float, str | None]:
    """``(share of reasoning words outside the expected script, expected script)``."""
    if expected in (None, "latin") and not _NON_LATIN.search(reasoning or ""):  # fast path: Latin-only text
        return 0.0, expected or ("latin" if _WORD_RES["latin"].search(reasoning or "") else None)
    counts = script_counts(reasoning)
    if expected is None:
        expected = dominant_script(reasoning)
    total = sum(counts.values())
    if not total or expected is None:
        return 0.0, expected
    allowed = _COMPATIBLE.get(expected, {expected})
    inside = sum(n for name, n in counts.items() if name in allowed)
    return round(1.0 - inside / total, 4), expected


def check_language(problem: str | None, reasoning: str | None, max_mix: float = 0.05) -> tuple[bool, float, str]:
    """``(ok, mix, expected script)``: ``ok`` when at most ``max_mix`` of the reasoning's words are in
    another script than the prompt's. Without a prompt, the reasoning's own dominant script is the
    expectation (so only mixing is caught)."""
    expected = dominant_script(problem) if problem else None
    mix, expected = mixing(reasoning or "", expected)
    return mix <= max_mix, mix, expected or ""
