"""`distill train --method on-policy --cross-tokenizer`: a teacher whose tokenizer differs from the student's
trains the student with TRL's universal logit distillation (real steps on tiny CPU models, no network); the
teacher reads its own tokens after its own chat template; without the flag such a teacher is one error line;
impossible combinations are refused before anything loads."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from fixtures_models import _tiny_model
from test_train import _weights, config, make_filtered

from distill.errors import UserError
from distill.stages import train

# A chat template unlike the student's ChatML: the teacher's prompt must be rendered with it.
TEACHER_TEMPLATE = ("{% for m in messages %}### {{ m['role'] | capitalize }}:\n{{ m['content'] }}\n{% endfor %}"
                    "{% if add_generation_prompt %}### Assistant:\n{% endif %}")


@pytest.fixture(scope="module")
def other_tokenizer_teacher_dir(tmp_path_factory, bundled_model_dir):
    """A 2-layer Qwen2 with random weights and its own 300-token ByteLevel BPE vocabulary (trained here from a
    few lines of arithmetic text) and its own chat template."""
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(bundled_model_dir)
    texts = [f"<think>\n{a} plus {b} is {a + b}.\n</think>\n\n\\boxed{{{a + b}}} What is {a} + {b}?"
             for a in range(10) for b in range(10)]
    tokenizer = base.train_new_from_iterator(texts * 3, vocab_size=300)
    tokenizer.chat_template = TEACHER_TEMPLATE
    tokenizer_dir = tmp_path_factory.mktemp("other-tokenizer")
    tokenizer.save_pretrained(tokenizer_dir)
    return _tiny_model("qwen2", tmp_path_factory.mktemp("other-teacher"), tokenizer_dir)


def _log(artifact) -> list[dict]:
    state = json.loads((artifact.path / "trainer_state.json").read_text())
    return [e for e in state["log_history"] if "loss" in e]


@pytest.mark.train
def test_a_teacher_with_another_tokenizer_trains_the_student(home, tiny_llama_dir, other_tokenizer_teacher_dir):
    """Two real on-policy steps through train.run (the CLI's path); the teacher's forward is watched."""
    from transformers import AutoTokenizer

    from distill.stages.train import prepare

    teacher_tokenizer = AutoTokenizer.from_pretrained(other_tokenizer_teacher_dir)
    assert len(teacher_tokenizer) == 300
    make_filtered()
    seen: list[str] = []
    original = prepare.make_trainer

    def watching_make_trainer(*args, **kwargs):
        trainer, callbacks = original(*args, **kwargs)

        def hook(module, hook_args, hook_kwargs):
            ids = hook_kwargs.get("input_ids", hook_args[0] if hook_args else None)
            assert int(ids.max()) < len(teacher_tokenizer)  # the teacher only ever reads its own token ids
            seen.extend(teacher_tokenizer.batch_decode(ids, skip_special_tokens=True))
        trainer.teacher_model.base_model.register_forward_pre_hook(hook, with_kwargs=True)
        return trainer, callbacks

    prepare.make_trainer = watching_make_trainer
    try:
        artifact = train.run(config(tiny_llama_dir, method="on-policy", teacher=str(other_tokenizer_teacher_dir),
                                    cross_tokenizer=True, max_steps=2, learning_rate=1e-3, max_completion_length=8,
                                    name="xtok", per_device_train_batch_size=2))
    finally:
        prepare.make_trainer = original
    logged = _log(artifact)
    assert len(logged) == 2
    assert all(math.isfinite(e["loss"]) and e["loss"] > 0 for e in logged)
    assert all(math.isfinite(e["teacher_student_logprob_gap"]) for e in logged)
    before, after = _weights(tiny_llama_dir), _weights(artifact.model_path)
    assert any(not (before[k] == after[k]).all() for k in before)
    # the teacher read the problems after its own template, never the student's ChatML markers
    problems = [f"What is {a} + {b}?" for a, b in [(2, 3), (4, 1), (6, 2)]]
    assert seen and all("### User:" in text and "### Assistant:" in text for text in seen)
    assert all(any(p in text for p in problems) for text in seen)
    assert not any("<|im_start|>" in text for text in seen)
    method = artifact.manifest["method"]
    assert method["cross_tokenizer"]["loss"] == "uld" and method["cross_tokenizer"]["teacher_vocabulary"] == 300
    assert method["cross_tokenizer"]["alignment"] == "byte offsets"
    assert method["teacher"]["spec"] == str(other_tokenizer_teacher_dir)


@pytest.mark.train
def test_identical_models_on_the_cross_tokenizer_path_have_zero_loss_and_gap(home, tiny_llama_dir, tmp_path):
    """The alignment is exact: a teacher with the student's weights and text (its tokenizer differs by one unused
    token, so it takes the cross-tokenizer path) scores every completion token as the student does. An alignment
    off by one position gives a loss of ~1e-3 and a gap of ~0.06 here."""
    from transformers import AutoTokenizer

    same = tmp_path / "same-weights"
    shutil.copytree(tiny_llama_dir, same)
    tokenizer = AutoTokenizer.from_pretrained(same)
    tokenizer.add_tokens(["<extra_token_a>"])
    tokenizer.save_pretrained(same)
    make_filtered()
    # lmbda 0: the dataset's completions, tokenized canonically, which the teacher's tokenizer re-encodes the same
    artifact = train.run(config(tiny_llama_dir, method="on-policy", teacher=str(same), cross_tokenizer=True,
                                lmbda=0.0, max_steps=1, name="same", precision="fp32"))
    (step,) = _log(artifact)
    assert step["loss"] < 1e-4 and abs(step["teacher_student_logprob_gap"]) < 1e-3, step
    assert artifact.manifest["method"]["cross_tokenizer"]["teacher_vocabulary"] == len(tokenizer)


def test_without_the_flag_another_tokenizer_is_one_error_line(home, tiny_llama_dir, other_tokenizer_teacher_dir):
    make_filtered()
    with pytest.raises(UserError, match="another vocabulary") as error:
        train.run(config(tiny_llama_dir, method="on-policy", teacher=str(other_tokenizer_teacher_dir), max_steps=1,
                         name="never"))
    assert "\n" not in str(error.value) and "--cross-tokenizer" in str(error.value)
    assert not (home / "checkpoints" / "never").exists()


@pytest.mark.parametrize("extra, message", [
    ({"method": "on-policy", "teacher_base_url": "http://127.0.0.1:9/v1"}, "needs a local --teacher"),
    ({"method": "logit"}, "--cross-tokenizer is for --method on-policy"),
    ({"method": "sft"}, "--cross-tokenizer is for --method on-policy"),
    ({"method": "on-policy", "teacher": "bundled", "beta": 0.5}, "does not apply with --cross-tokenizer"),
])
def test_impossible_combinations_are_one_error_line(home, tiny_llama_dir, extra, message):
    make_filtered()
    with pytest.raises(UserError, match=message) as error:
        train.run(config(tiny_llama_dir, cross_tokenizer=True, max_steps=1, name="never", **extra))
    assert "\n" not in str(error.value)
    assert not (home / "checkpoints" / "never").exists()


@pytest.mark.train
def test_a_shared_tokenizer_keeps_the_exact_divergence_and_an_identical_teacher_has_no_gap(home, tiny_llama_dir):
    """--cross-tokenizer with a teacher that shares the vocabulary: the exact token-level divergence runs (the
    manifest says so); the teacher is the student itself, so the logged gap of the first step is 0."""
    make_filtered()
    artifact = train.run(config(tiny_llama_dir, method="on-policy", teacher=str(tiny_llama_dir), cross_tokenizer=True,
                                max_steps=1, max_completion_length=8, name="shared", precision="fp32"))
    (step,) = _log(artifact)
    assert abs(step["teacher_student_logprob_gap"]) < 1e-4 and abs(step["loss"]) < 1e-4, step
    assert artifact.manifest["method"]["cross_tokenizer"] is False
