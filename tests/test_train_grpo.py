"""`distill train --method grpo` on a tiny model (CPU, real TRL GRPOTrainer steps, the real grader as reward):
SFT first (a cold start, as DeepSeek-R1), then GRPO from that checkpoint; rewards per component are logged,
the student changes, the manifest records every knob; no reference model with beta 0; bad input is one line."""

from __future__ import annotations

import json

import pytest
from fixtures_models import run_cli
from test_train import config, make_filtered

from distill import artifacts
from distill.stages import train

SUMS = [(2, 3), (4, 1), (6, 2), (3, 3), (5, 2), (1, 4)]


def _rows():
    return [{"problem": f"What is {a} + {b}?", "answer": str(a + b),
             "prompt": [{"role": "user", "content": f"What is {a} + {b}?"}],
             "completion": f"<think>\n{a} plus {b} is {a + b}.\n</think>\n\n\\boxed{{{a + b}}}"} for a, b in SUMS]


@pytest.fixture
def cold_start(home, tiny_qwen2_dir):
    """A tiny student SFT'd just enough to answer in the trace format, sometimes right (sampling varies)."""
    make_filtered(rows=_rows())
    return train.run(config(tiny_qwen2_dir, max_steps=60, learning_rate=5e-3, name="cold",
                            per_device_train_batch_size=6))


@pytest.mark.train
def test_grpo_steps_with_the_graders_rewards(home, cold_start):
    import torch

    artifact = train.run(config(cold_start.ref, method="grpo", max_steps=3, learning_rate=2e-3, name="rl",
                                num_generations=4, per_device_train_batch_size=8, max_completion_length=24,
                                reward=["accuracy:1", "format:0.2", "tag_count:0.1"], logging_steps=1))
    state = json.loads((artifact.path / "trainer_state.json").read_text())
    logged = [e for e in state["log_history"] if "loss" in e]
    assert len(logged) == 3
    for entry in logged:
        for name in ("accuracy", "format", "tag_count"):
            assert 0 <= entry[f"rewards/{name}/mean"] <= 1
        assert "frac_reward_zero_std" in entry and "completions/mean_length" in entry
        assert "kl" not in entry  # beta 0: no reference model, no KL term
    # the cold-started student is right sometimes: accuracy is graded, not constant
    assert any(0 < e["rewards/accuracy/mean"] for e in logged), logged
    assert any(e["frac_reward_zero_std"] < 1 for e in logged), logged
    from safetensors.torch import load_file

    before = load_file(str(next(cold_start.model_path.glob("*.safetensors"))))
    after = load_file(str(next(artifact.model_path.glob("*.safetensors"))))
    assert any(not torch.equal(before[k], after[k]) for k in before)
    method = artifact.manifest["method"]
    assert method["name"] == "grpo" and method["num_generations"] == 4 and method["reference_model"] is False
    assert method["rewards"] == ["accuracy:1", "format:0.2", "tag_count:0.1"] and method["loss_type"] == "dapo"
    assert (artifact.path / "reward_curve.png").stat().st_size > 0
    assert cold_start.ref in artifact.manifest["parents"][-1] or any(
        cold_start.ref in str(p) for p in artifact.manifest["parents"])
    assert "GRPO" in (artifact.path / "README.md").read_text()


@pytest.mark.train
def test_grpo_with_a_kl_term_loads_a_reference_and_logs_kl(home, cold_start):
    artifact = train.run(config(cold_start.ref, method="grpo", max_steps=1, name="rlkl", beta=0.04,
                                num_generations=4, per_device_train_batch_size=4, max_completion_length=12,
                                reward=["format"]))
    logged = [e for e in json.loads((artifact.path / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert "kl" in logged[0] and artifact.manifest["method"]["reference_model"] is True


@pytest.mark.train
def test_pass_rate_range_keeps_prompts_with_signal(home, tiny_qwen2_dir):
    """Pass rates measured from a filtered artifact's verdicts: all-right and all-wrong prompts are dropped."""
    import datasets

    rows = []
    for (a, b), verdicts in zip(SUMS[:3], [["correct"] * 4, ["correct", "incorrect"] * 2, ["incorrect"] * 4],
                                strict=True):
        for verdict in verdicts:
            rows.append({**_rows()[SUMS.index((a, b))], "verdict": verdict})
    with artifacts.create("graded", "filtered", config={}) as writer:
        kept = [r for r in rows if r["verdict"] == "correct"]
        rejected = [r for r in rows if r["verdict"] != "correct"]
        writer.save_dataset(datasets.DatasetDict({"train": datasets.Dataset.from_list(kept),
                                                  "rejected": datasets.Dataset.from_list(rejected)}))
    artifact = train.run(config(tiny_qwen2_dir, dataset=["graded"], method="grpo", max_steps=1, name="band",
                                num_generations=2, per_device_train_batch_size=2, max_completion_length=8,
                                reward=["accuracy"], pass_rate_range="0.2,0.8"))
    assert artifact.manifest["stats"]["train"]["kept"] == 1
    assert artifact.manifest["method"]["dropped_by_pass_rate"] == 1  # 2+3 (all right) dropped; 6+2 has no kept row


@pytest.mark.cli
@pytest.mark.parametrize("case", ["unknown-reward", "one-generation", "no-answers", "batch-not-multiple"])
def test_bad_grpo_input_is_one_error_line(home, tiny_qwen2_dir, case):
    import datasets

    with artifacts.create("prompts", "filtered", config={}) as writer:
        rows = [{"problem": "What is 1 + 1?"}] if case == "no-answers" else [{"problem": "What is 1 + 1?",
                                                                            "answer": "2"}]
        writer.save_dataset(datasets.Dataset.from_list(rows))
    extra = {"unknown-reward": ["--reward", "accurracy"], "one-generation": ["--num-generations", "1"],
             "no-answers": [], "batch-not-multiple": ["--num-generations", "3"]}[case]
    result = run_cli("train", "--model", str(tiny_qwen2_dir), "--dataset", "prompts", "--name", "bad", "--method",
                     "grpo", "--set", "max_steps=1", "--set", "per_device_train_batch_size=4", *extra, home=home)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    if case == "unknown-reward":
        assert "accuracy" in errors[0] and "format" in errors[0]
    assert not (home / "checkpoints" / "bad").exists()


@pytest.mark.train
def test_grpo_sigterm_mid_run_resumes_to_the_same_step_count(home, tiny_qwen2_dir, monkeypatch):
    from distill.stages.train import callbacks

    make_filtered(rows=_rows())
    same = dict(method="grpo", max_steps=3, save_steps=1, name="rl-pre", num_generations=2,
                per_device_train_batch_size=2, max_completion_length=8, reward=["accuracy", "format"])
    monkeypatch.setenv(callbacks.SIGTERM_AT_STEP_ENV, "2")
    with pytest.raises(SystemExit) as stopped:
        train.run(config(tiny_qwen2_dir, **same))
    assert stopped.value.code == 143 and not (home / "checkpoints" / "rl-pre" / "v0001").exists()
    monkeypatch.delenv(callbacks.SIGTERM_AT_STEP_ENV)
    resumed = train.run(config(tiny_qwen2_dir, **same))
    assert resumed.manifest["trainer_state"]["global_step"] == 3
