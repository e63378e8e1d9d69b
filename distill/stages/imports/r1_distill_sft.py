"""ServiceNow-AI/R1-Distill-SFT: R1-Distill-Qwen-32B re-annotations, CC-BY-NC-SA-4.0 (non-commercial).

    distill import ServiceNow-AI/R1-Distill-SFT --config v0     # NuminaMath problems + reference solutions
    distill import ServiceNow-AI/R1-Distill-SFT --config v1     # Tulu-3 mixture + Numina, as chats

``v0`` (Hub folder ``v0/``): id, reannotated_assistant_content, problem, source, solution.
``v1`` (folder ``v1/``): id, reannotated_assistant_content, source, reannotated_messages (the chat
with the new ``<think>`` answer), messages (the original chat), source_dataset. The answers come from
a template that may prefill ``<think>``, so the opener can be missing: ``--format think`` puts it back.
"""

from __future__ import annotations

from distill.stages.imports import schema as S
from distill.stages.imports.spec import ConfigSpec, Context, SourceSpec

HUB_ID = "ServiceNow-AI/R1-Distill-SFT"


def _domain(source_dataset: str | None, source: str | None) -> str:
    text = f"{source_dataset or ''} {source or ''}".lower()
    if "math" in text or "numina" in text or "gsm" in text:
        return "math"
    if "code" in text or "coding" in text:
        return "code"
    return "general"


def _answer_turn(messages: list[dict] | None) -> str | None:
    assistants = [m.get("content") for m in messages or [] if m.get("role") == "assistant"]
    return assistants[-1] if assistants else None


def convert(row: dict, index: int, ctx: Context) -> list[dict]:
    from distill.verify.grader import reference_answer

    raw = row.get("reannotated_assistant_content") or ""
    completion, well_formed = S.normalize_think(raw) if ctx.format == "think" else (raw, S.split_think(raw)[2])
    if ctx.config == "v0":
        problem, source, domain = row.get("problem") or "", row.get("source"), "math"
        messages = S.messages_of(None, problem, completion)
        reference = row.get("solution")
    else:
        messages = [{"role": m.get("role") or "", "content": m.get("content") or ""}
                    for m in row.get("reannotated_messages") or []]
        if not messages or messages[-1]["role"] != "assistant":
            messages.append({"role": "assistant", "content": raw})
        if ctx.format == "think":
            messages = [{**m, "content": S.normalize_think(m["content"])[0]} if m["role"] == "assistant" else m
                        for m in messages]
        completion = messages[-1]["content"]
        problem = next((m["content"] for m in messages if m["role"] == "user"), "")
        source, domain = row.get("source_dataset") or row.get("source"), _domain(row.get("source_dataset"),
                                                                                  row.get("source"))
        reference = _answer_turn(row.get("messages")) if domain == "math" else None
    system = next((m["content"] for m in messages if m["role"] == "system"), None)
    return [S.row(id=str(row.get("id") or f"r1-distill-sft-{ctx.config}-{index:07d}"), problem=problem,
                  completion=completion, messages=messages, dataset=ctx.dataset, domain=domain, system=system,
                  source=source, answer=reference_answer(reference) if reference else None,
                  well_formed=well_formed)]


SOURCE = SourceSpec(
    hub_id=HUB_ID,
    slug="r1-distill-sft",
    license="cc-by-nc-sa-4.0",
    license_note="CC-BY-NC-SA-4.0: non-commercial, share-alike; models trained on it inherit these terms",
    url="https://huggingface.co/datasets/ServiceNow-AI/R1-Distill-SFT",
    configs={
        "v0": ConfigSpec("v0", "NuminaMath problems with reference solutions (1 turn)",
                         extra_features={"well_formed": "bool"}),
        "v1": ConfigSpec("v1", "Tulu-3 SFT mixture + Numina re-annotated as chats",
                         extra_features={"well_formed": "bool"}),
    },
    default_config="v1",
    convert=convert,
)
