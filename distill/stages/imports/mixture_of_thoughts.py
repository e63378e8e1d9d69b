"""open-r1/Mixture-of-Thoughts: curated R1 traces for math, code and science (open-r1's SFT mix).

    distill import open-r1/Mixture-of-Thoughts --config math    # or code, science, all

Columns: messages ([{role, content}], user then a ``<think>`` assistant answer), num_tokens, source
(the upstream dataset: open-r1/OpenR1-Math-220k, open-r1/codeforces-cots,
nvidia/Llama-Nemotron-Post-Training-Dataset). No reference answers: filter with an LLM judge or
use as is.
"""

from __future__ import annotations

from distill.stages.imports import schema as S
from distill.stages.imports.spec import ConfigSpec, Context, SourceSpec

HUB_ID = "open-r1/Mixture-of-Thoughts"
_DOMAIN_BY_SOURCE = {"codeforces": "code", "math": "math", "nemotron": "science"}


def _domain(config: str, source: str | None) -> str | None:
    if config != "all":
        return config
    lowered = (source or "").lower()
    return next((d for key, d in _DOMAIN_BY_SOURCE.items() if key in lowered), None)


def convert(row: dict, index: int, ctx: Context) -> list[dict]:
    messages = [{"role": m.get("role") or "", "content": m.get("content") or ""} for m in row.get("messages") or []]
    if not messages or messages[-1]["role"] != "assistant":
        return []
    well_formed = S.split_think(messages[-1]["content"])[2]
    if ctx.format == "think":
        messages = [{**m, "content": S.normalize_think(m["content"])[0]} if m["role"] == "assistant" else m
                    for m in messages]
    system = next((m["content"] for m in messages if m["role"] == "system"), None)
    problem = next((m["content"] for m in messages if m["role"] == "user"), "")
    return [S.row(id=f"mixture-of-thoughts-{ctx.config}-{index:07d}", problem=problem,
                  completion=messages[-1]["content"], messages=messages, dataset=ctx.dataset,
                  domain=_domain(ctx.config, row.get("source")), system=system, source=row.get("source"),
                  num_tokens=row.get("num_tokens"), well_formed=well_formed)]


_EXTRA = {"num_tokens": "int64", "well_formed": "bool"}
SOURCE = SourceSpec(
    hub_id=HUB_ID,
    slug="mixture-of-thoughts",
    license="apache-2.0",
    license_note=("dataset card licence apache-2.0; upstream parts keep their own terms "
                  "(codeforces-cots and Llama-Nemotron-Post-Training-Dataset: cc-by-4.0)"),
    url="https://huggingface.co/datasets/open-r1/Mixture-of-Thoughts",
    configs={name: ConfigSpec(name, desc, extra_features=_EXTRA) for name, desc in (
        ("all", "all three domains (350k)"), ("math", "OpenR1-Math traces (94k)"),
        ("code", "codeforces-cots traces (83k)"), ("science", "Llama-Nemotron science traces (173k)"))},
    default_config="all",
    convert=convert,
)
