"""`distill train --method on-policy | logit` on tiny models (CPU, real TRL steps): the student learns, the
teacher's context reaches the teacher only, vocabularies are checked first, stored logprobs train, bad input
is one line. GRPO has its own file (test_train_grpo.py)."""

from __future__ import annotations

import json
import math

import pytest
from fixtures_models import run_cli
from test_train import _weights, config, make_filtered

from distill import artifacts
from distill.errors import UserError
from distill.stages import train

FEW_SHOT = [{"role": "user", "content": "FEWSHOTQUESTION What is 1 + 1?"},
            {"role": "assistant", "content": "<think>\n1 plus 1 is 2.\n</think>\n\n\\boxed{2}"}]


def _losses(artifact) -> list[float]:
    state = json.loads((artifact.path / "trainer_state.json").read_text())
    return [e["loss"] for e in state["log_history"] if "loss" in e]


@pytest.mark.train
def test_off_policy_batches_on_a_fixed_set_lower_the_divergence(home, tiny_llama_dir, tiny_qwen2_dir):
    """lmbda 0: every batch is the dataset's teacher completions (a fixed batch): the loss falls."""
    make_filtered()
    artifact = train.run(config(tiny_llama_dir, method="on-policy", teacher=str(tiny_qwen2_dir), lmbda=0.0,
                                max_steps=8, learning_rate=3e-3, name="offp"))
    losses = _losses(artifact)
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.train
def test_on_policy_steps_change_the_student_and_record_the_teacher(home, tiny_llama_dir, tiny_qwen2_dir, tmp_path):
    make_filtered()
    few_shot = tmp_path / "few.json"
    few_shot.write_text(json.dumps(FEW_SHOT))
    artifact = train.run(config(tiny_llama_dir, method="on-policy", teacher=str(tiny_qwen2_dir), max_steps=2,
                                learning_rate=1e-3, max_completion_length=12, name="onp",
                                teacher_few_shot=str(few_shot), per_device_train_batch_size=2, run_name="my-run",
                                trainer_args=["neftune_noise_alpha=0"]))
    assert artifact.manifest["training"]["run_name"] == "my-run"
    before, after = _weights(tiny_llama_dir), _weights(artifact.model_path)
    assert any(not (before[k] == after[k]).all() for k in before)
    state = json.loads((artifact.path / "trainer_state.json").read_text())
    logged = [e for e in state["log_history"] if "loss" in e]
    assert all(e["on_policy_share"] == 1 and math.isfinite(e["loss"]) for e in logged)
    assert all(0 < e["completions/mean_length"] <= 12 for e in logged)
    assert all(math.isfinite(e["teacher_student_logprob_gap"]) for e in logged)  # logged beside TRL's metrics
    method = artifact.manifest["method"]
    assert method["name"] == "on-policy" and method["beta"] == 1.0 and method["lmbda"] == 1.0
    assert method["teacher"]["spec"] == str(tiny_qwen2_dir) and len(method["teacher"]["sha256"]) == 64
    assert method["teacher_context"]["few_shot"] == FEW_SHOT
    card = (artifact.path / "README.md").read_text()
    assert "distilled on-policy" in card and "context distillation" in card


@pytest.mark.train
def test_teacher_context_reaches_the_teacher_and_never_the_student(home, tiny_llama_dir, tiny_qwen2_dir, tmp_path):
    """Capture the token ids each model's forward receives during a real training step."""
    from distill.stages.train import prepare

    make_filtered()
    few_shot = tmp_path / "few.json"
    few_shot.write_text(json.dumps(FEW_SHOT))
    seen = {"student": [], "teacher": []}
    original = prepare.make_trainer

    def spying_make_trainer(*args, **kwargs):
        trainer, callbacks = original(*args, **kwargs)
        for role, model in (("student", trainer.model), ("teacher", trainer.teacher_model)):
            backbone = model.base_model

            def hook(module, hook_args, hook_kwargs, role=role):
                ids = hook_kwargs.get("input_ids", hook_args[0] if hook_args else None)
                if ids is not None:
                    seen[role].extend(trainer.processing_class.batch_decode(ids))
            backbone.register_forward_pre_hook(hook, with_kwargs=True)
        return trainer, callbacks

    prepare.make_trainer = spying_make_trainer
    try:
        train.run(config(tiny_llama_dir, method="on-policy", teacher=str(tiny_qwen2_dir), max_steps=1,
                         max_completion_length=8, name="ctx", teacher_few_shot=str(few_shot),
                         teacher_system_prompt="TEACHERSYSTEM be careful", per_device_train_batch_size=3))
    finally:
        prepare.make_trainer = original
    assert seen["student"] and seen["teacher"]
    assert all("FEWSHOTQUESTION" in text and "TEACHERSYSTEM" in text for text in seen["teacher"])
    assert not any("FEWSHOTQUESTION" in text or "TEACHERSYSTEM" in text for text in seen["student"])
    # both read the problems (the student's last user turn); the student's forwards include its sampling steps
    problems = [f"What is {a} + {b}?" for a, b in [(2, 3), (4, 1), (6, 2)]]
    assert all(any(p in text for p in problems) for text in seen["teacher"])
    assert {p for p in problems if any(p in text for text in seen["student"])} == set(problems)


@pytest.mark.train
def test_sigterm_mid_run_resumes_to_the_same_step_count(home, tiny_llama_dir, tiny_qwen2_dir, monkeypatch):
    from distill.stages.train import callbacks

    make_filtered()
    same = dict(method="on-policy", teacher=str(tiny_qwen2_dir), lmbda=0.0, max_steps=3, learning_rate=1e-3,
                save_steps=1, name="pre")
    monkeypatch.setenv(callbacks.SIGTERM_AT_STEP_ENV, "2")
    with pytest.raises(SystemExit) as stopped:
        train.run(config(tiny_llama_dir, **same))
    assert stopped.value.code == 143 and not (home / "checkpoints" / "pre" / "v0001").exists()
    monkeypatch.delenv(callbacks.SIGTERM_AT_STEP_ENV)
    resumed = train.run(config(tiny_llama_dir, **same))
    assert resumed.manifest["trainer_state"]["global_step"] == 3


@pytest.mark.train
def test_a_teacher_with_another_vocabulary_is_refused_before_loading(home, tiny_llama_dir, tiny_qwen2_dir, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    other = tmp_path / "other-teacher"
    shutil.copytree(tiny_qwen2_dir, other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<extra_token_a>", "<extra_token_b>"])
    tokenizer.save_pretrained(other)
    make_filtered()
    with pytest.raises(UserError, match="another vocabulary") as error:
        train.run(config(tiny_llama_dir, method="on-policy", teacher=str(other), max_steps=1, name="never"))
    assert "\n" not in str(error.value)
    assert not (home / "checkpoints" / "never").exists()


# ---------------------------------------------------------------------------- logit distillation


def _logprob_rows(teacher_dir, k=4):
    """Traces with the teacher's real top-K logprobs per completion token (as `generate --logprobs` stores)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    model = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    rows = []
    for a, b in [(2, 3), (4, 1), (6, 2), (3, 3)]:
        prompt = [{"role": "user", "content": f"What is {a} + {b}?"}]
        completion = f"<think>\n{a} plus {b} is {a + b}.\n</think>\n\n\\boxed{{{a + b}}}"
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [
            tokenizer.convert_tokens_to_ids("<|im_end|>")]
        with torch.no_grad():
            logits = model(torch.tensor([prompt_ids + completion_ids])).logits[0]
        logprobs = torch.log_softmax(logits[len(prompt_ids) - 1: -1], dim=-1)
        top = logprobs.topk(k, dim=-1)
        rows.append({"problem": prompt[0]["content"], "prompt": prompt, "completion": completion,
                     "completion_token_ids": completion_ids, "top_logprob_ids": top.indices.tolist(),
                     "top_logprobs": top.values.tolist()})
    return rows


def test_sparse_divergence_with_the_whole_vocabulary_is_the_exact_kl():
    import torch

    from distill.stages.train.logit import sparse_divergence

    torch.manual_seed(0)
    student = torch.log_softmax(torch.randn(5, 7), dim=-1)
    teacher = torch.log_softmax(torch.randn(5, 7), dim=-1)
    ids = torch.arange(7).expand(5, 7)
    valid = torch.ones(5, 7, dtype=torch.bool)
    exact_forward = (teacher.exp() * (teacher - student)).sum(-1)
    exact_reverse = (student.exp() * (student - teacher)).sum(-1)
    assert torch.allclose(sparse_divergence(student, ids, teacher, valid, 0.0), exact_forward, atol=1e-4)
    assert torch.allclose(sparse_divergence(student, ids, teacher, valid, 1.0), exact_reverse, atol=1e-4)
    # top-2 + tail: zero when the student equals the teacher, positive otherwise
    top = teacher.topk(2, dim=-1)
    two = torch.ones(5, 2, dtype=torch.bool)
    assert torch.allclose(sparse_divergence(teacher, top.indices, top.values, two, 0.5), torch.zeros(5), atol=1e-5)
    assert (sparse_divergence(student, top.indices, top.values, two, 0.0) > 0).all()


@pytest.mark.train
def test_logit_method_trains_on_stored_logprobs(home, tiny_llama_dir, tiny_qwen2_dir):
    make_filtered(rows=_logprob_rows(tiny_qwen2_dir))
    artifact = train.run(config(tiny_llama_dir, method="logit", max_steps=6, learning_rate=3e-3, name="lg",
                                per_device_train_batch_size=4))
    losses = _losses(artifact)
    assert all(math.isfinite(x) for x in losses) and losses[-1] < 0.8 * losses[0], losses
    state = json.loads((artifact.path / "trainer_state.json").read_text())
    logged = [e for e in state["log_history"] if "loss" in e]
    assert all("divergence" in e and "cross_entropy" in e for e in logged)
    method = artifact.manifest["method"]
    assert method == {"name": "logit", "beta": 0.0, "kl_weight": 0.5, "top_k": 4}
    before, after = _weights(tiny_llama_dir), _weights(artifact.model_path)
    assert any(not (before[k] == after[k]).all() for k in before)


# ---------------------------------------------------------------------------- bad input: one line, exit 2


@pytest.mark.cli
@pytest.mark.parametrize("case", ["no-prompts", "teacher-missing", "logit-without-logprobs", "no-teacher",
                                  "teacher-for-sft", "beta-out-of-range"])
def test_bad_method_input_is_one_error_line(home, tiny_llama_dir, tmp_path, case):
    import datasets

    with artifacts.create("plain", "filtered", config={}) as writer:
        rows = [{"text": "x"}] if case == "no-prompts" else [
            {"problem": "What is 1 + 1?", "completion": "<think>\n2\n</think>\n\n2"}]
        writer.save_dataset(datasets.Dataset.from_list(rows))
    base = ["train", "--model", str(tiny_llama_dir), "--dataset", "plain", "--name", "bad", "--set", "max_steps=1"]
    extra = {"no-prompts": ["--method", "on-policy", "--teacher", str(tiny_llama_dir)],
             "teacher-missing": ["--method", "on-policy", "--teacher", str(tmp_path / "nowhere")],
             "logit-without-logprobs": ["--method", "logit"],
             "no-teacher": ["--method", "on-policy"],
             "teacher-for-sft": ["--teacher", str(tiny_llama_dir)],
             "beta-out-of-range": ["--method", "on-policy", "--teacher", str(tiny_llama_dir), "--beta", "1.5"]}[case]
    result = run_cli(*base, *extra, home=home)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len([line for line in lines if line.startswith("error:")]) == 1 and "Traceback" not in result.stderr
    assert not (home / "checkpoints" / "bad").exists()


# ---------------------------------------------------------------------------- trainer.KEY pass-through


def test_set_reaches_any_field_of_the_trainers_config():
    from distill.config import build
    from distill.stages.train.config import TrainConfig
    from distill.stages.train.prepare import trainer_overrides
    from distill.stages.train.recipes import load_recipe

    cfg = build(TrainConfig, load_recipe("smol-demo"), {"trainer.neftune_noise_alpha": 5,
                                                        "trainer.dataloader_num_workers": "2"})
    assert cfg.trainer_args == ["neftune_noise_alpha=5", "dataloader_num_workers=2"]
    assert trainer_overrides(cfg) == {"neftune_noise_alpha": 5, "dataloader_num_workers": 2}
    grpo = build(TrainConfig, load_recipe("smol-demo-grpo"), {"trainer.num_iterations": 2})
    assert trainer_overrides(grpo) == {"num_iterations": 2}  # a GRPOConfig field
    for key, message in [("neftune_noise_alfa", "did you mean 'neftune_noise_alpha'"),
                         ("learning_rate", "use --learning-rate"), ("output_dir", "set by distill")]:
        with pytest.raises(UserError, match=message):
            trainer_overrides(build(TrainConfig, load_recipe("smol-demo"), {f"trainer.{key}": 1}))


# ---------------------------------------------------------------------------- a teacher served elsewhere


@pytest.mark.vllm
@pytest.mark.train
def test_a_served_teacher_scores_the_students_tokens(home, tiny_qwen2_dir, vllm_server):
    """`--teacher-base-url`: a real vLLM server returns the teacher's top-K prompt logprobs per token."""
    import numpy as np

    from distill.engines.teacher_server import TeacherServer

    server = TeacherServer(vllm_server.base_url, k=4)
    assert server.model == vllm_server.model
    (ids, values), = server.score([[1, 2, 3, 4, 5, 6]], starts=[3])
    assert ids.shape == values.shape == (3, 4) and (values <= 0).all()
    assert all(np.all(np.diff(row) <= 1e-6) for row in values)  # most likely first

    make_filtered()
    artifact = train.run(config(tiny_qwen2_dir, method="on-policy", teacher_base_url=vllm_server.base_url,
                                teacher_logprobs=4, max_steps=2, learning_rate=1e-3, max_completion_length=8,
                                name="served", per_device_train_batch_size=2))
    losses = _losses(artifact)
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)
    state = json.loads((artifact.path / "trainer_state.json").read_text())
    assert all(math.isfinite(e["teacher_student_logprob_gap"]) for e in state["log_history"] if "loss" in e)
    teacher = artifact.manifest["method"]["teacher"]
    assert teacher["base_url"] == vllm_server.base_url and teacher["top_k"] == 4
    before, after = _weights(tiny_qwen2_dir), _weights(artifact.model_path)
    assert any(not (before[k] == after[k]).all() for k in before)


def test_an_unreachable_teacher_server_is_one_error_line(home, tiny_llama_dir):
    make_filtered()
    with pytest.raises(UserError, match="cannot reach the teacher server") as error:
        train.run(config(tiny_llama_dir, method="on-policy", teacher_base_url="http://127.0.0.1:9/v1", max_steps=1,
                         name="never"))
    assert "\n" not in str(error.value) and not (home / "checkpoints" / "never").exists()


def test_wall_time_saves_a_checkpoint_every_n_minutes():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from distill.stages.train.callbacks import WallTimeSaveCallback

    now = [0.0]
    callback = WallTimeSaveCallback(10, clock=lambda: now[0])
    args, state = TrainingArguments(output_dir="unused", report_to=[]), TrainerState()
    now[0] = 599.0
    assert not callback.on_step_end(args, state, TrainerControl()).should_save
    now[0] = 600.0
    assert callback.on_step_end(args, state, TrainerControl()).should_save
    callback.on_save(args, state, TrainerControl())  # the clock restarts at each save
    now[0] = 1100.0
    assert not callback.on_step_end(args, state, TrainerControl()).should_save
    assert not WallTimeSaveCallback(0, clock=lambda: 1e9).on_step_end(args, state, TrainerControl()).should_save
