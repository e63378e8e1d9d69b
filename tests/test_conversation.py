"""The `conversation` contract and the one ancestor walk that finds it (filter, train and eval use it)."""

from __future__ import annotations

import datasets

from distill import artifacts
from distill.conversation import Conversation, recorded_conversation


def _write(name: str, kind: str, parents=(), conversation=None, teacher=None):
    with artifacts.create(name, kind, config={"teacher": teacher} if teacher else {}, parents=list(parents)) as writer:
        writer.save_dataset(datasets.Dataset.from_list([{"problem": name}]))
        if conversation is not None:
            writer.extra["conversation"] = conversation
    return artifacts.resolve(name)


def test_nearest_recorded_conversation_up_the_lineage(home):
    record = Conversation(system_prompt="Think first.", prefill="<think>\n", extra={"reasoning_tags": "think"})
    traces = _write("traces", "traces", conversation=record.to_record(), teacher="bundled")
    unrelated = _write("other", "imported", conversation={})  # an empty record carries nothing
    filtered = _write("filtered", "filtered", parents=[unrelated, traces])
    mixed = _write("mixed", "filtered", parents=[filtered])
    found = recorded_conversation(mixed)
    assert found is not None and found.ref == traces.ref
    assert Conversation.from_record(found.record) == record
    assert found.record["reasoning_tags"] == "think" and found.record["chat_template"] is None
    assert recorded_conversation(unrelated) is None and recorded_conversation(None) is None
    # the same walk finds other lineage facts (the model card's teacher)
    assert artifacts.nearest_in_lineage(mixed, lambda m: (m.get("config") or {}).get("teacher")) == ("bundled",
                                                                                                     traces.ref)


def test_a_parent_that_no_longer_resolves_is_skipped(home):
    base = _write("base", "traces", conversation={"system_prompt": "S"})
    child = _write("child", "filtered", parents=[base])
    # delete the parent: the walk skips it instead of failing
    import shutil

    shutil.rmtree(base.path)
    assert recorded_conversation(artifacts.resolve("child")) is None
    assert child.manifest["parents"][0]["ref"] == base.ref
