"""open-thoughts/OpenThoughts-114k: DeepSeek-R1 traces (math, code, science, puzzle), Apache-2.0.

    distill import open-thoughts/OpenThoughts-114k                      # config default, <think> schema
    distill import open-thoughts/OpenThoughts-114k --format native      # the text OpenThinker-7B saw
    distill import open-thoughts/OpenThoughts-114k --config metadata    # columns the filter can verify

``default`` (Hub folder ``data/``): ``system`` (Sky-T1's prompt) and ``conversations`` =
[{from: user, value}, {from: assistant, value: "<|begin_of_thought|>\\n\\n…\\n\\n<|end_of_thought|>\\n\\n
<|begin_of_solution|>\\n\\n…\\n\\n<|end_of_solution|>"}]. ``metadata`` (folder ``metadata/``): problem,
deepseek_reasoning, deepseek_solution, ground_truth_solution, domain, source, test_cases,
starter_code. The user turn of ``default`` is built from ``metadata`` by their
``open_thoughts/prompt.py``; ``metadata`` rows are rebuilt here the same way, so both configs give the
same conversation.
"""

from __future__ import annotations

import json

from distill.stages.imports import schema as S
from distill.stages.imports.spec import ConfigSpec, Context, SourceSpec

HUB_ID = "open-thoughts/OpenThoughts-114k"
MATH_PREFIX = "Return your final response within \\boxed{}. "
CODE_STDIN_PREFIX = ("Generate an executable Python function generated from the given prompt. The function should "
                     "take stdin as input and print the output. Simply call the function after the definition.")
CODE_CALL_PREFIX = ("Generate an executable Python function generated from the given prompt. Return the function "
                    "body without invoking it at the final solution.")
_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "system": "system"}


def fn_name_of(test_cases: str | None) -> str | None:
    try:
        parsed = json.loads(test_cases) if test_cases else None
    except (TypeError, ValueError):
        return None
    if not isinstance(parsed, dict):
        return None
    return parsed.get("fn_name") or None


def user_turn(problem: str, domain: str | None, test_cases: str | None, starter_code: str | None) -> str:
    """The user message OpenThoughts built for a metadata row (``map_to_share_gpt``, verbatim logic)."""
    if domain == "code":
        text = (CODE_CALL_PREFIX if fn_name_of(test_cases) else CODE_STDIN_PREFIX) + problem
        return text + ("\n" + starter_code if starter_code is not None else "")
    if domain == "math":
        return MATH_PREFIX + problem
    return problem


def _default(row: dict, index: int, ctx: Context) -> list[dict]:
    system = row.get("system") or None
    turns = [{"role": _ROLES.get(str(t.get("from")).lower(), str(t.get("from"))), "content": t.get("value") or ""}
             for t in row.get("conversations") or []]
    users = [t["content"] for t in turns if t["role"] == "user"]
    if not users or turns[-1]["role"] != "assistant":
        return []  # not a training example (no question or no answer): nothing to import
    well_formed = True
    if ctx.format == "think":
        system = S.rewrite_system_for_think(system)
        for turn in turns:
            if turn["role"] == "assistant":
                turn["content"], ok = S.openthoughts_to_think(turn["content"])
                well_formed = well_formed and ok
    problem, prefix = S.strip_prefix(users[0], (MATH_PREFIX, CODE_CALL_PREFIX, CODE_STDIN_PREFIX))
    domain = "math" if prefix == MATH_PREFIX else "code" if prefix else None
    messages = ([{"role": "system", "content": system}] if system else []) + turns
    return [S.row(id=f"openthoughts-114k-{index:06d}", problem=problem, completion=turns[-1]["content"],
                  messages=messages, dataset=ctx.dataset, domain=domain, system=system,
                  well_formed=well_formed)]


def _metadata(row: dict, index: int, ctx: Context) -> list[dict]:
    from distill.verify.grader import reference_answer

    problem, domain = row.get("problem") or "", row.get("domain") or None
    test_cases, starter_code = row.get("test_cases") or None, row.get("starter_code")
    reasoning, solution = row.get("deepseek_reasoning") or "", row.get("deepseek_solution") or ""
    user = user_turn(problem, domain, test_cases, starter_code)
    if ctx.format == "native":
        system, completion = S.SKY_T1_SYSTEM_PROMPT, S.openthoughts_completion(reasoning, solution)
    else:
        system, completion = S.rewrite_system_for_think(S.SKY_T1_SYSTEM_PROMPT), S.think_completion(reasoning, solution)
    truth = row.get("ground_truth_solution") or None
    return [S.row(id=f"openthoughts-114k-metadata-{index:06d}", problem=problem, completion=completion,
                  messages=S.messages_of(system, user, completion), dataset=ctx.dataset, domain=domain,
                  system=system, source=row.get("source") or None,
                  answer=reference_answer(truth) if truth and domain != "code" else None,
                  test_cases=test_cases, starter_code=starter_code or None, fn_name=fn_name_of(test_cases),
                  ground_truth_solution=truth, well_formed=bool(reasoning.strip() and solution.strip()))]


def convert(row: dict, index: int, ctx: Context) -> list[dict]:
    return (_metadata if ctx.config == "metadata" else _default)(row, index, ctx)


SOURCE = SourceSpec(
    hub_id=HUB_ID,
    slug="openthoughts-114k",
    license="apache-2.0",
    license_note="dataset card licence apache-2.0; traces generated with DeepSeek-R1 (MIT)",
    url="https://huggingface.co/datasets/open-thoughts/OpenThoughts-114k",
    configs={
        "default": ConfigSpec("data", "system + conversations: the exact text OpenThinker-7B was trained on",
                              extra_features={"well_formed": "bool"}),
        "metadata": ConfigSpec("metadata", "problem, deepseek_reasoning/solution, ground truth, domain, tests",
                               extra_features={"ground_truth_solution": "string", "well_formed": "bool"}),
    },
    default_config="default",
    convert=convert,
)
