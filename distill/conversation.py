"""The `conversation` manifest contract: how prompts were put to a model, so training and eval reuse it.

    record = Conversation(system_prompt="...", prefill="<think>\\n").to_record()   # writer.extra["conversation"]
    found = recorded_conversation(artifact)      # RecordedConversation(record, ref) of the nearest ancestor, or None

generate writes it (chat template text + sha256, system prompt including a template's hidden default,
few-shot messages, prompt template, prefill); filter copies its input's; import records what the
published data used (its system prompt, reasoning tags); train and eval read the nearest one up the
lineage. Keys a stage does not know are kept as they are (``extra``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The keys every record carries (None where a stage has nothing to say).
KEYS = ("chat_template", "chat_template_sha256", "system_prompt", "few_shot", "prompt_template", "prefill")


@dataclass
class Conversation:
    chat_template: str | None = None          # the chat template text the prompts were rendered with
    chat_template_sha256: str | None = None
    system_prompt: str | None = None          # including a template's hidden default system prompt
    few_shot: list | str | None = None        # few-shot messages (or the file they came from)
    prompt_template: str | None = None        # "{problem}" wrapper; None when rows carried chat messages
    prefill: str | None = None                # text the assistant turn was started with ("<think>\n")
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. reasoning_tags of imported data, engine details

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> Conversation:
        record = dict(record or {})
        known = {key: record.pop(key, None) for key in KEYS}
        return cls(**known, extra=record)

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        extra = record.pop("extra")
        return {**record, **extra}


@dataclass
class RecordedConversation:
    record: dict[str, Any]   # the manifest's `conversation` mapping, as written
    ref: str                 # the artifact that recorded it


def recorded_conversation(artifact) -> RecordedConversation | None:
    """The `conversation` of an artifact's manifest, else of its nearest ancestor that has one."""
    from distill.artifacts import nearest_in_lineage

    found = nearest_in_lineage(artifact, lambda manifest: manifest.get("conversation") or None)
    if found is None:
        return None
    value, ref = found
    return RecordedConversation(dict(value), ref)
