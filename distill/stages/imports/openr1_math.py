"""open-r1/OpenR1-Math-220k: DeepSeek-R1 traces for NuminaMath-1.5 problems, Apache-2.0.

    distill import open-r1/OpenR1-Math-220k                     # config default (94k problems)
    distill import open-r1/OpenR1-Math-220k --config extended   # + cn_k12 etc. (131k)

Columns: problem, solution, answer, problem_type, question_type, source, uuid, and per generation
the lists generations[], correctness_math_verify[], correctness_llama[], is_reasoning_complete[],
finish_reasons[]; correctness_count; messages. Each generation becomes its own row
(``sample_index``) carrying its own correctness flags, so ``distill filter`` can re-verify it and
compare with open-r1's verdicts.
"""

from __future__ import annotations

from distill.stages.imports import schema as S
from distill.stages.imports.spec import ConfigSpec, Context, SourceSpec

HUB_ID = "open-r1/OpenR1-Math-220k"
_EXTRA = {"correctness_math_verify": "bool", "correctness_llama": "bool", "is_reasoning_complete": "bool",
          "correctness_count": "int64", "problem_type": "string", "question_type": "string",
          "reference_solution": "string", "well_formed": "bool"}


def _at(values, i: int):
    return values[i] if values is not None and i < len(values) else None


def convert(row: dict, index: int, ctx: Context) -> list[dict]:
    problem = row.get("problem") or ""
    # `messages` holds the chat open-r1 trains on: the user turn as they wrote it (falls back to the problem).
    user = next((m.get("content") for m in row.get("messages") or [] if m.get("role") == "user"), None) or problem
    out = []
    for i, generation in enumerate(row.get("generations") or []):
        text = generation or ""
        completion, well_formed = S.normalize_think(text) if ctx.format == "think" else (text, S.split_think(text)[2])
        out.append(S.row(
            id=str(row.get("uuid") or f"openr1-math-{ctx.config}-{index:07d}"), sample_index=i, problem=problem,
            completion=completion, messages=S.messages_of(None, user, completion), dataset=ctx.dataset,
            domain="math", source=row.get("source"), answer=row.get("answer") or None,
            finish_reason=_at(row.get("finish_reasons"), i),
            correctness_math_verify=_at(row.get("correctness_math_verify"), i),
            correctness_llama=_at(row.get("correctness_llama"), i),
            is_reasoning_complete=_at(row.get("is_reasoning_complete"), i),
            correctness_count=row.get("correctness_count"), problem_type=row.get("problem_type"),
            question_type=row.get("question_type"), reference_solution=row.get("solution"),
            well_formed=well_formed))
    return out


SOURCE = SourceSpec(
    hub_id=HUB_ID,
    slug="openr1-math-220k",
    license="apache-2.0",
    license_note="dataset card licence apache-2.0; problems from AI-MO/NuminaMath-1.5",
    url="https://huggingface.co/datasets/open-r1/OpenR1-Math-220k",
    configs={
        "default": ConfigSpec("data", "94k problems, the subset that trains best", extra_features=_EXTRA),
        "extended": ConfigSpec("extended", "131k more problems (cn_k12 and others)", extra_features=_EXTRA),
        "all": ConfigSpec("all", "both, as splits default and extended", splits=("default", "extended"),
                          extra_features=_EXTRA),
    },
    default_config="default",
    convert=convert,
)
