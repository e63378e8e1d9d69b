"""Our row schema for imported traces, and the reasoning-tag conversions every importer shares.

One row per generation (the columns ``distill filter`` and ``distill train`` read):

    id, sample_index      problem id (stable across imports of one revision) and generation index
    problem               the question as the user asked it (known instruction prefixes removed)
    completion            the assistant text: "<think>\\n…\\n</think>\\n\\n answer" (--format think)
                          or the published text verbatim (--format native)
    answer                the reference answer when the source has one, else None
    domain                math | code | science | puzzle | general | None (unknown)
    system                the system prompt that goes with the completion's tags (None: none)
    messages              the full conversation [{role, content}], system first when present
    prompt                messages without the final assistant turn (what a generator was given)
    source, dataset       upstream origin of the problem (or the Hub id) and the Hub id
    test_cases, starter_code, fn_name, finish_reason   when the source knows them

Tags: OpenThoughts / Sky-T1 write ``<|begin_of_thought|> … <|end_of_thought|>`` then
``<|begin_of_solution|> … <|end_of_solution|>``; R1 and open-r1 write ``<think> … </think>`` then
the answer. Converting one to the other must convert the system prompt too: a model trained on
``<think>`` answers under a prompt that asks for ``<|begin_of_thought|>`` learns to ignore its prompt.
"""

from __future__ import annotations

import re

from distill.think import CLOSE as THINK_CLOSE
from distill.think import OPEN as THINK_OPEN
from distill.think import (
    OT_SOLUTION_CLOSE,
    OT_SOLUTION_OPEN,
    OT_THOUGHT_CLOSE,
    OT_THOUGHT_OPEN,
    split_think,
    think_completion,
)

TAG_STYLES = {
    "think": (THINK_OPEN, THINK_CLOSE),
    "openthoughts": (OT_THOUGHT_OPEN, OT_THOUGHT_CLOSE, OT_SOLUTION_OPEN, OT_SOLUTION_CLOSE),
}
FORMATS = ("think", "native")

# The system prompt of every OpenThoughts-114k row (Sky-T1's, verbatim from open_thoughts/prompt.py;
# the "\\n\\n" are a literal backslash-n, as published; "analisying" is theirs).
SKY_T1_SYSTEM_PROMPT = (
    "Your role as an assistant involves thoroughly exploring questions through a systematic long thinking "
    "process before providing the final precise and accurate solutions. This requires engaging in a "
    "comprehensive cycle of analysis, summarizing, exploration, reassessment, reflection, backtracing, and "
    "iteration to develop well-considered thinking process. Please structure your response into two main "
    "sections: Thought and Solution. In the Thought section, detail your reasoning process using the specified "
    "format: <|begin_of_thought|> {thought with steps separated with '\\n\\n'} <|end_of_thought|> Each step "
    "should include detailed considerations such as analisying questions, summarizing relevant findings, "
    "brainstorming new ideas, verifying the accuracy of the current steps, refining any errors, and revisiting "
    "previous steps. In the Solution section, based on various attempts, explorations, and reflections from the "
    "Thought section, systematically present the final solution that you deem correct. The solution should "
    "remain a logical, accurate, concise expression style and detail necessary step needed to reach the "
    "conclusion, formatted as follows: <|begin_of_solution|> {final formatted, precise, and clear solution} "
    "<|end_of_solution|> Now, try to solve the following question through the above guidelines:"
)

# Phrase-level rewrites for the <think> schema, most specific first; then single tags.
_SYSTEM_REWRITES = (
    ("formatted as follows: <|begin_of_solution|> {final formatted, precise, and clear solution} "
     "<|end_of_solution|>",
     "written after </think> as follows: {final formatted, precise, and clear solution}"),
    (OT_THOUGHT_OPEN, THINK_OPEN),
    (OT_THOUGHT_CLOSE, THINK_CLOSE),
)
_SOLUTION_TAG_RE = re.compile(r"\s*<\|(?:begin|end)_of_solution\|>\s*")
_OT_WELL_FORMED_RE = re.compile(
    r"^\s*<\|begin_of_thought\|>(?P<thought>.*?)<\|end_of_thought\|>\s*"
    r"<\|begin_of_solution\|>(?P<solution>.*?)(?:<\|end_of_solution\|>)?\s*$",
    re.DOTALL,
)



def openthoughts_completion(reasoning: str, solution: str) -> str:
    """The OpenThoughts assistant text, exactly as their pipeline writes it (open_thoughts/prompt.py)."""
    return (f"{OT_THOUGHT_OPEN}\n\n{reasoning}\n\n{OT_THOUGHT_CLOSE}\n\n"
            f"{OT_SOLUTION_OPEN}\n\n{solution}\n\n{OT_SOLUTION_CLOSE}")


def openthoughts_to_think(text: str) -> tuple[str, bool]:
    """Rewrite an OpenThoughts answer to the ``<think>`` schema; returns (completion, well_formed).

    A malformed answer (a tag missing, e.g. a truncated trace) is converted tag by tag rather than
    dropped or repaired, so ``distill filter`` sees and rejects it for what it is.
    """
    match = _OT_WELL_FORMED_RE.match(text or "")
    if match:
        return think_completion(match.group("thought"), match.group("solution")), True
    converted = (text or "").replace(OT_THOUGHT_OPEN, THINK_OPEN + "\n").replace(OT_THOUGHT_CLOSE, "\n" + THINK_CLOSE)
    converted = _SOLUTION_TAG_RE.sub("\n\n", converted)
    converted = re.sub(r"<think>\n\s*", "<think>\n", converted)
    converted = re.sub(r"\s*\n</think>\s*", "\n</think>\n\n", converted)
    return converted.strip(), False




def normalize_think(text: str) -> tuple[str, bool]:
    """A ``<think>`` completion in our exact layout (adds a prefilled-away ``<think>``)."""
    reasoning, answer, ok = split_think(text)
    if not ok:
        if reasoning is not None:  # opened, never closed: keep it unclosed
            return f"{THINK_OPEN}\n{reasoning}", False
        return text, False
    return think_completion(reasoning, answer), True


def rewrite_system_for_think(system: str | None) -> str | None:
    """The same instructions, asking for ``<think>…</think>`` then the answer."""
    if not system:
        return system
    for old, new in _SYSTEM_REWRITES:
        system = system.replace(old, new)
    return _SOLUTION_TAG_RE.sub(" ", system).strip()


def tag_styles(text: str | None) -> set[str]:
    """Which reasoning-tag styles a text uses or mentions."""
    return {style for style, tags in TAG_STYLES.items() if any(tag in (text or "") for tag in tags)}


def tags_disagree(system: str | None, completion: str) -> str | None:
    """Why the system prompt and the completion disagree on reasoning tags, or None when they agree.

    A system prompt that names no tags agrees with anything; one that names tags must name exactly
    the style the completion uses.
    """
    asked, used = tag_styles(system), tag_styles(completion)
    if not asked or asked == used:
        return None
    return (f"system prompt asks for {'/'.join(sorted(asked))} tags but the completion uses "
            f"{'/'.join(sorted(used)) or 'none'}")


def messages_of(system: str | None, user: str, assistant: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def strip_prefix(text: str, prefixes: tuple[str, ...]) -> tuple[str, str | None]:
    """(text without the first matching prefix, the prefix) — for instruction lines before a problem."""
    for prefix in prefixes:
        if text.startswith(prefix):
            return text[len(prefix):].lstrip(), prefix
    return text, None


# ---------------------------------------------------------------------------- features

CORE_FEATURES = {
    "id": "string", "sample_index": "int32", "problem": "string", "completion": "string",
    "answer": "string", "domain": "string", "system": "string", "messages": "messages",
    "prompt": "messages", "source": "string", "dataset": "string", "test_cases": "string",
    "starter_code": "string", "fn_name": "string", "finish_reason": "string",
}


def features(extra: dict[str, str] | None = None):
    """``datasets.Features`` for the core columns plus a source's extra ones (declared, so an
    all-None column is still a string column and imports of different sources concatenate)."""
    import datasets

    message = {"role": datasets.Value("string"), "content": datasets.Value("string")}
    kinds = {"messages": datasets.List(message), "string": datasets.Value("string"),
             "int32": datasets.Value("int32"), "int64": datasets.Value("int64"), "bool": datasets.Value("bool")}
    return datasets.Features({name: kinds[kind] for name, kind in {**CORE_FEATURES, **(extra or {})}.items()})


def row(*, id: str, problem: str, completion: str, messages: list[dict[str, str]], dataset: str,
        sample_index: int = 0, answer: str | None = None, domain: str | None = None, system: str | None = None,
        source: str | None = None, test_cases: str | None = None, starter_code: str | None = None,
        fn_name: str | None = None, finish_reason: str | None = None, **extra) -> dict:
    """One output row with every core column present (converters add their extra columns)."""
    prompt = messages[:-1] if messages and messages[-1]["role"] == "assistant" else list(messages)
    return {"id": id, "sample_index": sample_index, "problem": problem, "completion": completion,
            "answer": answer, "domain": domain, "system": system, "messages": messages, "prompt": prompt,
            "source": source or dataset, "dataset": dataset, "test_cases": test_cases,
            "starter_code": starter_code, "fn_name": fn_name, "finish_reason": finish_reason, **extra}
