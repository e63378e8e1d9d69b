"""Training data and chat templates: exact label masks, reasoning kept, stop token trained (no training)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest

from distill.config import build
from distill.errors import UserError
from distill.stages.train import data, templates
from distill.stages.train.config import TrainConfig

THINK = "<think>\n2 plus 3 is 5.\n</think>\n\n\\boxed{5}"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+3?"},
            {"role": "assistant", "content": THINK}]
# The chat template DeepSeek-R1-Distill-* checkpoints ship (tokenizer_config.json), as TRL stores it.
R1_TEMPLATE_REF = "trl:deepseek_r1_distill.jinja"


@pytest.fixture(scope="module")
def tok(bundled_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bundled_model_dir)


def _trained(tokenizer, ids, labels):
    return tokenizer.decode([t for t, lab in zip(ids, labels, strict=False) if lab != -100])


def test_exact_label_mask_of_a_hand_built_example(tok):
    plan = templates.choose_plan("student", tok, None)
    assert plan.family == "smollm2.jinja" and plan.training and plan.end_of_turn == "<|im_end|>"
    ids, labels = templates.tokenize_messages(tok, MESSAGES, plan)
    prompt = tok("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
                 "<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    target = tok(THINK + "<|im_end|>", add_special_tokens=False)["input_ids"]
    tail = tok("\n", add_special_tokens=False)["input_ids"]
    assert ids == prompt + target + tail
    assert labels == [-100] * len(prompt) + target + [-100] * len(tail)
    assert target[-1] == tok.convert_tokens_to_ids("<|im_end|>")  # the end-of-turn token is trained
    assert _trained(tok, ids, labels) == THINK + "<|im_end|>"
    # Without assistant-only loss every token is a label.
    _, all_labels = templates.tokenize_messages(tok, MESSAGES, plan, assistant_only=False)
    assert all_labels == ids


def test_training_variants_render_like_their_templates(tok):
    conversations = [MESSAGES, MESSAGES[1:], MESSAGES + [{"role": "user", "content": "and 4+4?"},
                                                          {"role": "assistant", "content": "<think>\nx\n</think>\n\n8"}]]
    for name in ("smollm2", "chatml", "qwen2.5"):
        plan = templates.choose_plan(name, tok, None)
        for messages in conversations:
            for gen in (False, True):
                expected = tok.apply_chat_template(messages[:-1] if gen else messages, chat_template=plan.inference,
                                                   tokenize=False, add_generation_prompt=gen)
                assert tok.apply_chat_template(messages[:-1] if gen else messages, chat_template=plan.training,
                                               tokenize=False, add_generation_prompt=gen) == expected


def _with_tokens(tok, special, normal=(), template=None, bos=None):
    clone = copy.deepcopy(tok)
    clone.add_special_tokens({"additional_special_tokens": list(special)})
    if normal:
        clone.add_tokens(list(normal))
    if bos:
        clone.bos_token = bos
    clone.chat_template = template
    return clone


def test_r1_distill_template_keeps_the_think_block(tok):
    real = templates.read_template(R1_TEMPLATE_REF)
    assert "content.split('</think>')[-1]" in real and "<｜Assistant｜><think>\\n" in real
    r1 = _with_tokens(tok, ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
                            "<｜▁pad▁｜>"], ["<think>", "</think>"], template=real, bos="<｜begin▁of▁sentence｜>")
    # The template itself drops the reasoning of assistant turns...
    assert "2 plus 3" not in r1.apply_chat_template(MESSAGES, tokenize=False)
    # ...so training through it as-is is refused...
    bare = templates.TemplatePlan(inference=real, training=None, source="student")
    with pytest.raises(UserError, match="drops the reasoning"):
        templates.check_plan(r1, bare)
    # ...and the plan trains through its variant that keeps it, saving the original for inference.
    plan = templates.choose_plan("student", r1, None)
    assert plan.family == R1_TEMPLATE_REF and plan.inference == real and plan.end_of_turn == "<｜end▁of▁sentence｜>"
    ids, labels = templates.tokenize_messages(r1, MESSAGES, plan)
    trained = _trained(r1, ids, labels)
    assert "<think>\n2 plus 3 is 5.\n</think>" in trained and trained.endswith("\\boxed{5}<｜end▁of▁sentence｜>")
    assert "What is 2+3?" not in trained and "You are terse." not in trained
    r1.pad_token = "<｜end▁of▁sentence｜>"  # as R1-Distill-Qwen ships: pad == eos, which would mask the stop
    changes = templates.set_stop_and_pad(r1, plan.end_of_turn)
    assert r1.pad_token == "<｜▁pad▁｜>" and r1.pad_token != r1.eos_token and not changes["pad_added"]


def test_llama31_template_trains_eot_and_pads_with_a_distinct_token(tok):
    llama = _with_tokens(tok, ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                               "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>"],
                         template=templates.read_template("trl:llama3_1.jinja"), bos="<|begin_of_text|>")
    llama.pad_token = None
    plan = templates.choose_plan("student", llama, None)
    assert plan.training and plan.end_of_turn == "<|eot_id|>"
    ids, labels = templates.tokenize_messages(llama, MESSAGES, plan)
    assert _trained(llama, ids, labels) == THINK + "<|eot_id|>"
    for gen in (False, True):
        msgs = MESSAGES[:-1] if gen else MESSAGES
        assert llama.apply_chat_template(msgs, chat_template=plan.training, tokenize=False, add_generation_prompt=gen
                                         ) == llama.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
    changes = templates.set_stop_and_pad(llama, plan.end_of_turn)
    assert changes["eos_changed"] and llama.eos_token == "<|eot_id|>"
    assert llama.pad_token == "<|finetune_right_pad_id|>"


def test_unknown_template_masks_by_rendering(tok):
    custom = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + ':\\n' + m['content'] + '<|im_end|>' }}"
              "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant:\\n' }}{% endif %}")
    plan = templates.choose_plan(_write(custom), tok, None)
    assert plan.training is None and plan.method == "render-diff" and plan.end_of_turn == "<|im_end|>"
    ids, labels = templates.tokenize_messages(tok, MESSAGES, plan)
    assert _trained(tok, ids, labels) == THINK + "<|im_end|>"
    # No end-of-turn token after the assistant turn: refused (the student would never stop).
    open_ended = custom.replace("+ '<|im_end|>'", "+ '\\n'")
    with pytest.raises(UserError, match="end-of-turn"):
        templates.choose_plan(_write(open_ended), tok, None)


def _write(text: str) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False) as handle:
        handle.write(text)
    return handle.name


def test_auto_prefers_the_traces_template_when_the_student_can_encode_it(tok):
    chatml = templates.read_template("chatml.jinja")
    assert templates.choose_plan("auto", tok, chatml).source == "traces"
    r1 = templates.read_template(R1_TEMPLATE_REF)
    plan = templates.choose_plan("auto", tok, r1)  # SmolLM2 has no <｜User｜>: falls back to its own template
    assert plan.source == "student" and "lacks" in plan.notes[0]
    with pytest.raises(UserError, match="does not have"):
        templates.choose_plan("traces", tok, r1)


# ---------------------------------------------------------------------------- rows -> conversations


def _cfg(**overrides):
    return build(TrainConfig, overrides)


def test_format_completion_variants():
    assert data.format_completion("<think>a\n</think>b") == ("<think>\na\n</think>\n\nb", True)
    assert data.format_completion("prefilled reasoning</think>\n\nans") == (
        "<think>\nprefilled reasoning\n</think>\n\nans", True)
    ot = "<|begin_of_thought|>\n\nsteps\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n42\n\n<|end_of_solution|>"
    assert data.format_completion(ot) == ("<think>\nsteps\n</think>\n\n42", True)
    assert data.format_completion("just an answer ") == ("just an answer", False)


def test_row_formats_and_system_prompt_precedence():
    cfg = _cfg()
    row = {"problem": "P", "completion": "<think>r</think>a", "prompt": [
        {"role": "system", "content": "S"}, {"role": "user", "content": "shot"},
        {"role": "assistant", "content": "shot answer"}, {"role": "user", "content": "P, step by step"}]}
    messages, reasoned = data.row_messages(row, "completion", cfg, None, None)
    assert reasoned and messages == [{"role": "system", "content": "S"},
                                     {"role": "user", "content": "P, step by step"},
                                     {"role": "assistant", "content": "<think>\nr\n</think>\n\na"}]
    kept, _ = data.row_messages(row, "completion", _cfg(keep_few_shot=True), None, None)
    assert len(kept) == 5
    override, _ = data.row_messages(row, "completion", _cfg(system_prompt=""), None, None)
    assert override[0]["role"] == "user"
    plain = {"problem": "2+2?", "completion": "<think>x</think>4", "system": "Row system"}
    messages, _ = data.row_messages(plain, "completion", cfg, "Default", "{problem} Box it.")
    assert messages[0] == {"role": "system", "content": "Row system"} and messages[1]["content"] == "2+2? Box it."
    messages, _ = data.row_messages({"problem": "q", "completion": "a"}, "completion", cfg, "Default", None)
    assert messages[0] == {"role": "system", "content": "Default"}
    sharegpt = {"system": "Sys", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    messages, _ = data.row_messages(sharegpt, "conversations", cfg, None, None)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    full = {"messages": [{"role": "user", "content": "q", "tool_calls": None},
                         {"role": "assistant", "content": "<think>t</think>a"}, {"role": "user", "content": "dangling"}]}
    messages, reasoned = data.row_messages(full, "messages", cfg, None, None)
    assert reasoned and messages == [{"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "<think>\nt\n</think>\n\na"}]
    assert data.row_messages({"problem": "q", "completion": " "}, "completion", cfg, None, None)[0] is None


def test_detect_format_errors_list_columns():
    import datasets

    bad = datasets.Dataset.from_list([{"question": "q", "response": "r"}])
    with pytest.raises(UserError, match="available columns: question, response"):
        data.detect_format(bad, _cfg(), "bad@v1")
    assert data.parse_spec("filtered@v3:0.7") == ("filtered@v3", 0.7)
    assert data.parse_spec("data/x.jsonl") == ("data/x.jsonl", 1.0)


def test_mixture_weights_validation_split_and_length_filter(tok):
    import datasets

    def make(tag, n):
        rows = [{"problem": f"{tag} {i}", "completion": f"<think>{'w ' * (i % 7) * 8}</think>{i}"} for i in range(n)]
        return datasets.Dataset.from_list(rows)

    cfg = _cfg(eval_fraction=0.1, seed=1, max_length=60)
    source = SimpleNamespace(info={}, artifact=None)
    inputs = [data.Input("a:0.5", 0.5, make("a", 40), source, None, "completion"),
              data.Input("b:2", 2.0, make("b", 20), source, None, "completion")]
    train, evaluation, info = data.build_conversations(inputs, cfg, None, None)
    assert len(evaluation) == 6  # 10% of 60 rows, held out per dataset (4 + 2) before weighting
    assert [d["train_rows"] for d in info["datasets"]] == [18, 36]  # half of 36 rows; twice 18 rows
    eval_users = {m[-2]["content"] for m in evaluation["messages"]}
    assert not eval_users & {m[-2]["content"] for m in train["messages"]}  # no row on both sides
    plan = templates.choose_plan("student", tok, None)
    encoded, stats = data.tokenize(train, tok, plan, cfg)
    lengths = [len(templates.tokenize_messages(tok, m, plan)[0]) for m in train["messages"]]
    assert stats["dropped_too_long"] == sum(n > 60 for n in lengths) > 0
    assert len(encoded) == stats["kept"] == sum(n <= 60 for n in lengths)
    assert all(len(x) <= 60 for x in encoded["input_ids"]) and set(encoded.column_names) == {"input_ids", "labels"}
    cut, cut_stats = data.tokenize(train, tok, plan, _cfg(max_length=60, truncate=True))
    assert len(cut) == len(train) and cut_stats["truncated"] == stats["dropped_too_long"]


def test_limit_caps_the_validation_split_too():
    """Regression: a 1-step LoRA trial with --limit spent 212 of 229 s validating all 149 held-out rows."""
    import datasets

    rows = [{"problem": f"p {i}", "completion": f"<think>r {i}</think>{i}"} for i in range(400)]
    source = SimpleNamespace(info={}, artifact=None)
    inputs = [data.Input("d", 1.0, datasets.Dataset.from_list(rows), source, None, "completion")]
    full_train, full_eval, _ = data.build_conversations(inputs, _cfg(eval_fraction=0.1), None, None)
    assert len(full_eval) == 40 and len(full_train) == 360
    train, evaluation, _ = data.build_conversations(inputs, _cfg(eval_fraction=0.1, limit=20), None, None)
    assert len(train) == 20 and len(evaluation) == 2  # in proportion: 10% of the 20 rows used


def test_the_plan_line_says_steps_and_validation_before_training():
    from distill.stages.train import _plan_line

    line = _plan_line(_cfg(max_steps=-1, num_train_epochs=2.0, per_device_train_batch_size=4, eval_steps=10),
                      train_rows=100, eval_rows=5, world=2, accumulation=2)
    assert line.startswith("14 optimizer steps of 16 sequences over 100 examples (2.00 epochs)")
    assert "validation on 5 rows every 10 steps and at the end" in line
    assert _plan_line(_cfg(max_steps=3), 100, 0, 1, 1).startswith("3 optimizer steps of 1 sequences")
    assert "no validation split" in _plan_line(_cfg(max_steps=3), 100, 0, 1, 1)


@pytest.mark.parametrize("key, value", [("num_train_epochs", -1), ("num_train_epochs", 0), ("lora_alpha", -5),
                                        ("learning_rate", 0), ("learning_rate", float("nan")), ("max_steps", 0),
                                        ("lora_dropout", 1.5), ("limit", 0), ("top_p", 0)])
def test_numbers_that_would_train_nothing_or_something_else_are_refused(key, value):
    with pytest.raises(UserError, match=f"{key}|--{key.replace('_', '-')}"):
        _cfg(**{key: value})
