"""`distill generate` without an engine: prompts, templates, completions, the partial store, bad input."""

from __future__ import annotations

import json

import pytest
from fixtures_models import run_cli
from fixtures_vllm import R1_CHAT_TEMPLATE, free_port

from distill.engines import chat as prompting
from distill.errors import UserError
from distill.stages.generate import GenerateConfig, Teacher, build_prompts, config_hash, run_seed
from distill.stages.generate.store import PartialStore

# ---------------------------------------------------------------------------- prompting


def test_build_messages_orders_system_few_shot_and_question():
    shots = [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "\\boxed{2}"}]
    messages = prompting.build_messages("What is {x} in \\frac{1}{2}?", system_prompt="Think.", few_shot=shots)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == "Think."
    # LaTeX braces in the problem and in the template survive (no str.format)
    assert messages[-1]["content"] == ("What is {x} in \\frac{1}{2}?\n\nPlease reason step by step, and put your "
                                       "final answer within \\boxed{}.")
    # an explicit system prompt replaces the few-shot's own
    replaced = prompting.build_messages("q", system_prompt="A", few_shot=[{"role": "system", "content": "B"}])
    assert replaced == [{"role": "system", "content": "A"}, {"role": "user", "content": replaced[-1]["content"]}]
    with pytest.raises(UserError, match="slot"):
        prompting.build_messages("q", prompt_template="no slot here")


def test_load_few_shot_json_yaml_and_errors(tmp_path):
    good = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    (tmp_path / "shots.json").write_text(json.dumps(good))
    (tmp_path / "shots.yaml").write_text("- role: user\n  content: 2+2?\n- role: assistant\n  content: '4'\n")
    assert prompting.load_few_shot(tmp_path / "shots.json") == good
    assert prompting.load_few_shot(tmp_path / "shots.yaml") == good
    (tmp_path / "bad.json").write_text(json.dumps([{"role": "robot", "content": "x"}]))
    with pytest.raises(UserError, match="message 0"):
        prompting.load_few_shot(tmp_path / "bad.json")
    with pytest.raises(UserError, match="not found"):
        prompting.load_few_shot(tmp_path / "missing.json")


def test_conversation_format_finds_hidden_system_prompt_and_prefill(bundled_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir)
    plain = prompting.conversation_format(tokenizer)
    assert plain["system_prompt"] == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert plain["system_prompt_source"] == "template_default"
    assert plain["prefill"] is None
    assert plain["chat_template"] == tokenizer.chat_template
    assert plain["chat_template_sha256"] == prompting.sha256_text(tokenizer.chat_template)
    r1 = prompting.conversation_format(tokenizer, chat_template=R1_CHAT_TEMPLATE, system_prompt="Be brief.")
    assert r1["prefill"] == "<think>\n"
    assert r1["system_prompt"] == "Be brief." and r1["system_prompt_source"] == "explicit"
    no_default = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    assert prompting.conversation_format(tokenizer, chat_template=no_default)["system_prompt"] is None
    assert prompting.conversation_format(tokenizer, chat_template=QWEN25_LIKE)["system_prompt"] == (
        "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
    r1_distill = prompting.conversation_format(tokenizer, chat_template=R1_DISTILL_LIKE)
    assert r1_distill["system_prompt"] is None and r1_distill["prefill"] == "<think>\n"


# the system-prompt and generation-prompt logic of Qwen2.5-Instruct and DeepSeek-R1-Distill templates
QWEN25_LIKE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}{%- if message.role != 'system' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
R1_DISTILL_LIKE = (
    "{% set ns = namespace(system_prompt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}"
    "{%- for message in messages %}{%- if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{%- endif %}{%- endfor %}{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}")


def test_assemble_completion_keeps_both_think_tags():
    assemble = prompting.assemble_completion
    assert assemble("step</think>\n\n42", prefill="<think>\n") == "<think>\nstep</think>\n\n42"
    assert assemble("<think>\nstep</think>42", prefill="<think>\n") == "<think>\nstep</think>42"  # no doubling
    assert assemble("step</think>42") == "<think>\nstep</think>42"  # a prefill we could not see
    assert assemble("plain answer") == "plain answer"
    merged = assemble("\n\nThe answer is 4.", reasoning="2+2=4\n", finish_reason="stop")
    assert merged == "<think>\n2+2=4\n</think>\n\nThe answer is 4."
    # reasoning cut by max_tokens: still open, as the raw text would be
    assert assemble(None, reasoning="2+2 is", finish_reason="length") == "<think>\n2+2 is"


# ---------------------------------------------------------------------------- config and prompts


def _cfg(**kw) -> GenerateConfig:
    base = dict(teacher="bundled", dataset="x.jsonl")
    base.update(kw)
    cfg = GenerateConfig(**base)
    cfg.validate()
    return cfg


def test_config_hash_covers_samples_not_infrastructure():
    from distill.stages.generate import Teacher

    teacher = Teacher(model="/m", info={"checkpoint_sha256": None})
    source = {"type": "file", "path": "/a/x.jsonl", "sha256": "abc"}
    base = config_hash(_cfg(), source, teacher, None)
    infrastructure = _cfg(engine="openai", base_url="http://h:1/v1", max_concurrency=3, tensor_parallel_size=8,
                          shard="1/2")
    assert base == config_hash(infrastructure,
                               {**source, "path": "/elsewhere/x.jsonl"}, teacher, None)
    for change in (dict(seed=1), dict(temperature=0.7), dict(num_generations=2), dict(max_tokens=10),
                   dict(system_prompt="s"), dict(limit=3)):
        assert config_hash(_cfg(**change), source, teacher, None) != base, change
    assert config_hash(_cfg(), {**source, "sha256": "other"}, teacher, None) != base


def test_run_seed_first_run_keeps_seed_resumes_get_new_streams():
    assert run_seed(7, 0, 1, 0) == 7
    seeds = {run_seed(7, 0, 1, k) for k in range(1, 5)} | {run_seed(7, i, 4, 0) for i in range(1, 4)}
    assert len(seeds) == 7 and 7 not in seeds
    assert run_seed(7, 0, 1, 3) == run_seed(7, 0, 1, 3)  # deterministic


def test_build_prompts_ids_duplicates_and_conversations():
    import datasets

    data = datasets.Dataset.from_list([{"problem": "a", "answer": 1}, {"problem": "b", "answer": 2},
                                       {"problem": "a", "answer": 1}])
    prompts = build_prompts(data, _cfg(), None)
    assert len(prompts) == 2 and prompts.duplicates == 1 and prompts.answer_column == "answer"
    assert prompts.ids == build_prompts(data, _cfg(), None).ids  # stable hash ids
    with_ids = datasets.Dataset.from_list([{"q": "a", "k": "x"}, {"q": "b", "k": "x"}])
    with pytest.raises(UserError, match="repeats the id 'x'"):
        build_prompts(with_ids, _cfg(prompt_column="q", id_column="k"), None)
    chats = datasets.Dataset.from_list([{"messages": [{"role": "user", "content": "hi"}]}])
    conv = build_prompts(chats, _cfg(prompt_column="messages", system_prompt="S"), None)
    assert conv.conversations and conv.messages[0][0] == {"role": "system", "content": "S"}
    assert conv.problems == ["hi"]
    with pytest.raises(UserError, match="no rows"):
        build_prompts(data.select([]), _cfg(), None)



def test_the_datas_own_id_column_is_used_when_present():
    """Regression: 64 benchmark rows with distinct ids but repeated prompt texts were sampled as 5 prompts,
    silently, because the data's `id` column was ignored without --id-column."""
    import datasets

    rows = [{"id": f"q-{i}", "problem": f"What is {i % 5} + 1?"} for i in range(64)]
    data = datasets.Dataset.from_list(rows)
    prompts = build_prompts(data, _cfg(), None)
    assert len(prompts) == 64 and prompts.duplicates == 0 and prompts.id_column == "id"
    assert prompts.ids[:2] == ["q-0", "q-1"]
    hashed = build_prompts(data, _cfg(id_column="none"), None)  # the old behaviour, when asked for
    assert len(hashed) == 5 and hashed.duplicates == 59 and hashed.id_column is None
    # an id repeated with the same prompt is one prompt; with another prompt it is an error naming the id
    same = datasets.Dataset.from_list([{"id": "a", "problem": "x"}, {"id": "a", "problem": "x"}])
    assert len(build_prompts(same, _cfg(), None)) == 1
    clash = datasets.Dataset.from_list([{"id": "a", "problem": "x"}, {"id": "a", "problem": "y"}])
    with pytest.raises(UserError, match="repeats the id 'a' for different prompts"):
        build_prompts(clash, _cfg(), None)
    assert config_hash(_cfg(), {}, Teacher(model="/m", info={"checkpoint_sha256": None}), None, "id") != \
        config_hash(_cfg(), {}, Teacher(model="/m", info={"checkpoint_sha256": None}), None, None)


# ---------------------------------------------------------------------------- partial store


def test_partial_store_skips_torn_lines_and_duplicate_keys(tmp_path):
    store = PartialStore(tmp_path / ".partial-x")
    store.create({"config_hash": "x"})
    writer = store.writer("0of1", "r1")
    for index in (0, 1):
        writer.write({"id": "a", "sample_index": index, "completion": f"c{index}"})
    writer.close()
    second = store.writer("0of1", "r2")  # an overlapping process wrote (a, 1) again
    second.write({"id": "a", "sample_index": 1, "completion": "again"})
    second.close()
    with open(second.path, "a") as handle:
        handle.write('{"id": "b", "sample_ind')  # killed mid-write
    assert store.done_keys() == {("a", 0), ("a", 1)}
    records = list(store.records())
    assert [(r["id"], r["sample_index"], r["completion"]) for r in records] == [("a", 0, "c0"), ("a", 1, "c1")]
    with store.merge_lock() as first:
        with store.merge_lock() as other:
            assert first and not other
    store.mark_done(0, 2, {})
    assert store.done_shards(2) == {0}


# ---------------------------------------------------------------------------- bad input: one line, exit 2


def _in_process(args: list[str], capsys) -> tuple[int, str]:
    from distill.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["generate", *args])
    return exit_info.value.code, capsys.readouterr().err


def _assert_clean_failure(code: int, stderr: str, home, *needles):
    assert code == 2, stderr[-2000:]
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (home / "data" / "traces").exists(), "something was written"


@pytest.mark.cli
def test_bad_inputs_fail_cleanly_without_writing(home, tmp_path, capsys):
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"question": f"{i}+1?", "answer": str(i + 1)}) + "\n" for i in range(3)))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    base = ["--teacher", "bundled", "--dataset", str(problems), "--prompt-column", "question"]
    cases = [
        (["--teacher", "bundled", "--dataset", str(problems)], ["--problem-column 'problem'", "question, answer"]),
        (base + ["--answer-column", "solution"], ["--answer-column 'solution'", "question, answer"]),
        (["--teacher", "./no/such/model", "--dataset", str(problems)], ["not found"]),
        (["--teacher", "bundled", "--dataset", str(empty)], ["empty"]),
        (base + ["--shard", "2/2"], ["--shard"]),
        (base + ["--engine", "openai", "--base-url", "http://127.0.0.1:9/v1", "--api-key-env",
                 "DISTILL_TEST_UNSET_KEY"], ["DISTILL_TEST_UNSET_KEY"]),
        (base + ["--temperature", "-1"], ["--temperature"]),
    ]
    for args, needles in cases:
        _assert_clean_failure(*_in_process(args, capsys), home, *needles)
    # the real CLI in a subprocess: an unreachable server is one line, exit 2, nothing written
    result = run_cli("generate", *base, "--engine", "openai", "--base-url", f"http://127.0.0.1:{free_port()}/v1",
                     home=home, timeout=300)
    assert "Traceback" not in result.stderr
    _assert_clean_failure(result.returncode, result.stderr, home, "cannot reach", "--base-url")
