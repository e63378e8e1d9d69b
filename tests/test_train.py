"""`distill train` on tiny models (CPU, real TRL steps): full, LoRA + merge, 4-bit QLoRA + packing,
packed == unpacked loss, preemption + resume, CLI errors."""

from __future__ import annotations

import json

import pytest
from fixtures_models import run_cli

from distill import artifacts
from distill.config import build
from distill.errors import UserError
from distill.stages.train.config import TrainConfig
from distill.stages.train.recipes import load_recipe

SUMS = [(2, 3), (4, 1), (6, 2)]


def _rows(pairs=SUMS):
    return [{"problem": f"What is {a} + {b}?", "answer": str(a + b), "prompt": [
        {"role": "user", "content": f"What is {a} + {b}?"}],
        "completion": f"<think>\n{a} plus {b} is {a + b}.\n</think>\n\n\\boxed{{{a + b}}}"} for a, b in pairs]


def make_filtered(name="filt", rows=None, conversation=None):
    import datasets

    with artifacts.create(name, "filtered", config={"teacher": "tiny-teacher"}, licenses={"data": "mit"}) as w:
        w.save_dataset(datasets.Dataset.from_list(rows or _rows()))
        w.extra["conversation"] = conversation or {"chat_template": None, "system_prompt": None,
                                                   "prompt_template": "{problem}", "few_shot": None, "prefill": None}
    return artifacts.resolve(name)


BASE = {"dataset": ["filt"], "eval_fraction": 0, "report_to": ["none"], "lr_scheduler_type": "constant",
        "warmup_ratio": 0, "logging_steps": 1, "save_steps": 1000, "per_device_train_batch_size": 3, "max_length": 256}


def config(model_dir, **overrides) -> TrainConfig:
    return build(TrainConfig, load_recipe("smol-demo"), {**BASE, "model": str(model_dir), **overrides})


def _weights(directory):
    from safetensors.torch import load_file

    return load_file(str(next(directory.glob("*.safetensors"))))


def _greedy(model_dir, prompt, max_new_tokens=40):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    inputs = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)[0][inputs["input_ids"].shape[1]:]
    eos = model.generation_config.eos_token_id
    return tok.decode(out), out[-1].item() in (eos if isinstance(eos, list) else [eos])


@pytest.mark.train
def test_full_finetune_learns_to_reason_and_stop(home, tiny_qwen2_dir):
    from distill.stages import train

    parent = make_filtered()
    artifact = train.run(config(tiny_qwen2_dir, max_steps=40, learning_rate=5e-3, name="tiny-full"))
    assert artifact.ref == "tiny-full@v0001" and artifact.kind == "checkpoint"
    manifest = artifact.manifest
    assert manifest["parents"] == [{"ref": parent.ref, "kind": "filtered", "sha256": parent.content_sha256}]
    assert manifest["base_model"] == str(tiny_qwen2_dir) and manifest["teacher"] == "tiny-teacher"
    assert manifest["conversation"]["end_of_turn"] == "<|im_end|>" and manifest["conversation"]["chat_template"]
    assert manifest["training"]["recipe"] == "smol-demo" and manifest["training"]["overrides"]["max_steps"] == 40
    assert manifest["training"]["run_name"] == "tiny-full@v0001" and manifest["licenses"]["data"] == "mit"
    assert manifest["trainer_state"]["global_step"] == 40 and manifest["datasets"][0]["sha256"] == parent.content_sha256
    losses = [e["loss"] for e in json.loads((artifact.path / "trainer_state.json").read_text())["log_history"]
              if "loss" in e]
    assert losses[0] > 9 and losses[-1] < losses[0] / 4
    before, after = _weights(tiny_qwen2_dir), _weights(artifact.model_path)
    changed = [k for k in before if not (before[k] == after[k]).all()]
    assert set(changed) == set(before)  # every parameter moved
    for name in ("README.md", "loss_curve.png", "metrics.json"):
        assert (artifact.path / name).is_file()
    card = (artifact.path / "README.md").read_text()
    assert "tiny-teacher" in card and "filt@v0001" in card
    gen = json.loads((artifact.model_path / "generation_config.json").read_text())
    assert gen["temperature"] == 0.6 and gen["top_p"] == 0.95 and 2 in gen["eos_token_id"]  # 2 = <|im_end|>
    assert gen["pad_token_id"] not in gen["eos_token_id"]
    assert (artifact.model_path / "chat_template.jinja").read_text() == manifest["conversation"]["chat_template"]
    assert not (artifact.path.parent / ".runs").exists() or not any((artifact.path.parent / ".runs").iterdir())
    # The untrained model rambles; the trained one reasons in the trained format and stops by itself.
    text, stopped = _greedy(tiny_qwen2_dir, "What is 2 + 3?")
    assert not stopped
    for a, b in SUMS:
        text, stopped = _greedy(artifact.model_path, f"What is {a} + {b}?")
        assert stopped and text.startswith("<think>\n") and "</think>\n\n\\boxed{" in text, text


@pytest.mark.train
def test_lora_trains_adapters_only_and_merges(home, tiny_llama_dir):
    import torch

    from distill import models
    from distill.models.layout import describe
    from distill.stages import train

    make_filtered()
    artifact = train.run(config(tiny_llama_dir, max_steps=3, learning_rate=1e-2, lora=True, lora_r=8,
                                lora_alpha=16, lora_dropout=0.0, merge=True))
    layout = describe(artifact.path)
    assert layout.kind == "adapter" and layout.merged_dir == artifact.path / "merged"
    assert layout.base_model == str(tiny_llama_dir)
    ref = models.resolve(str(artifact.path))
    assert (ref.path, ref.adapter, ref.chat_template) == (str(artifact.path / "merged"), None, None)  # merged: no adapter to attach
    adapter_config = json.loads((artifact.model_path / "adapter_config.json").read_text())
    kinds = {name.rsplit(".", 1)[-1] for name in adapter_config["target_modules"]}
    assert adapter_config["r"] == 8 and kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                  "down_proj"}  # every linear layer but the head
    adapter, base, merged = (_weights(artifact.model_path), _weights(tiny_llama_dir),
                             _weights(artifact.path / "merged"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # adapters moved away from their zero init
    for key, value in base.items():  # the base stayed frozen: merged = base + scale * B @ A
        prefix = "base_model.model." + key.removesuffix(".weight")
        if f"{prefix}.lora_A.weight" in adapter:
            delta = 2.0 * adapter[f"{prefix}.lora_B.weight"] @ adapter[f"{prefix}.lora_A.weight"]
            torch.testing.assert_close(merged[key], value + delta, atol=1e-5, rtol=1e-4)
        elif key in merged:
            assert torch.equal(merged[key], value), key
    assert json.loads((artifact.path / "merged" / "generation_config.json").read_text())["eos_token_id"][0] == 2
    assert artifact.manifest["training"]["adapter"] and artifact.manifest["training"]["merged"]


@pytest.mark.train
def test_qlora_4bit_with_packing_runs_on_cpu(home, tiny_qwen2_dir):
    from distill.stages import train

    make_filtered(rows=_rows(SUMS * 3))
    artifact = train.run(config(tiny_qwen2_dir, max_steps=2, learning_rate=1e-2, load_in_4bit=True, packing=True,
                                name="tiny-qlora", per_device_train_batch_size=1))
    assert artifact.manifest["config"]["load_in_4bit"] and artifact.manifest["config"]["lora"]
    adapter = _weights(artifact.model_path)
    assert any("lora_B" in k and v.float().abs().sum() > 0 for k, v in adapter.items())
    assert json.loads((artifact.model_path / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tiny_qwen2_dir)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_examples_do_not_attend_to_each_other(bundled_model_dir, tiny_llama_dir, attention):
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.data_utils import pack_dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from distill.stages.train import templates

    tok = AutoTokenizer.from_pretrained(bundled_model_dir)
    plan = templates.choose_plan("student", tok, None)
    rows = [templates.tokenize_messages(tok, [{"role": "user", "content": f"Sum {a} and {b}" + " please" * a},
                                              {"role": "assistant", "content": r["completion"]}], plan)
            for (a, b), r in zip(SUMS, _rows(), strict=False)]
    examples = datasets.Dataset.from_list([{"input_ids": i, "labels": lab} for i, lab in rows])
    packed = pack_dataset(examples, seq_length=256, strategy="bfd")
    assert len(packed) == 1 and len(packed[0]["seq_lengths"]) == 3
    collate = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)
    batch = collate([packed[0]])
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation=attention).eval()

    def token_losses(input_ids, labels, **kwargs):
        # use_cache=False as in SFTTrainer.compute_loss: with a KV cache transformers skips packed-sequence masks.
        logits = model(input_ids=input_ids, use_cache=False, **kwargs).logits[0, :-1]
        return torch.nn.functional.cross_entropy(logits, labels[0, 1:], ignore_index=-100, reduction="none")

    with torch.no_grad():
        losses = token_losses(batch["input_ids"], batch["labels"], position_ids=batch["position_ids"])
        leaky = token_losses(batch["input_ids"], batch["labels"])  # one causal sequence: examples see each other
        alone = {}
        for ids, labels in rows:
            per_token = token_losses(torch.tensor([ids]), torch.tensor([labels]))
            alone[len(ids)] = per_token[torch.tensor(labels[1:]) != -100].mean()
    start, label_rows = 0, batch["labels"][0, 1:]
    for length in packed[0]["seq_lengths"]:
        span = slice(start, start + length - 1)
        trained = label_rows[span] != -100
        assert torch.allclose(losses[span][trained].mean(), alone[length], atol=1e-4), length
        if start:
            assert not torch.allclose(leaky[span][trained].mean(), alone[length], atol=1e-3)
        start += length


@pytest.mark.train
@pytest.mark.cli
def test_sigterm_saves_and_the_same_command_resumes_to_the_same_weights(home, tiny_llama_dir):
    import torch

    from distill.stages import train

    make_filtered(rows=_rows(SUMS * 2))
    same = {"max_steps": 6, "per_device_train_batch_size": 2, "learning_rate": 1e-3}
    args = ["train", "--recipe", "smol-demo", "--model", str(tiny_llama_dir), "--name", "kr"]
    for key, value in {**BASE, **same}.items():
        args += ["--set", f"{key}={','.join(value) if isinstance(value, list) else value}"]
    killed = run_cli(*args, home=home, env={"DISTILL_SIGTERM_AT_STEP": "2"})
    assert killed.returncode == 143, killed.stderr[-2000:]
    assert "resumable checkpoint" in killed.stderr
    runs = list((home / "checkpoints" / "kr" / ".runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "checkpoint-2" / "trainer_state.json").is_file()
    assert not artifacts.list_versions(home / "checkpoints" / "kr")  # no visible version after a kill
    resumed = run_cli(*args, home=home)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr and resumed.stdout.strip().splitlines()[-1] == "kr@v0001"
    straight = train.run(config(tiny_llama_dir, name="straight", **same))
    a, b = _weights(artifacts.resolve("kr@v1").model_path), _weights(straight.model_path)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert not torch.equal(a["model.layers.0.mlp.up_proj.weight"], _weights(tiny_llama_dir)[
        "model.layers.0.mlp.up_proj.weight"])


@pytest.mark.cli
def test_dataset_without_training_columns_fails_clearly(home, tiny_qwen2_dir):
    make_filtered(name="bad", rows=[{"question": "q", "response": "r"}])
    result = run_cli("train", "--dataset", "bad", "--model", str(tiny_qwen2_dir), home=home)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: dataset bad has no training columns") and "question, response" in last
    assert not (home / "checkpoints").exists()


def test_num_gpus_without_gpus_is_a_user_error(home, tiny_qwen2_dir):
    from distill.stages import train

    make_filtered()
    with pytest.raises(UserError, match="CUDA device"):
        train.run(config(tiny_qwen2_dir, num_gpus=2))


class _Killed(Exception):
    """Stands in for a kill -9 at a chosen point (the run dir keeps what a killed process leaves)."""


@pytest.mark.train
@pytest.mark.parametrize("kill_point", ["after_training", "commit"])
def test_a_run_killed_after_its_last_checkpoint_resumes_to_the_exact_step_budget(home, tiny_llama_dir, monkeypatch,
                                                                                   kill_point):
    """Regression: a run killed during the final validation resumed from its last-step checkpoint and
    trained one step more (--max-steps 1 ended at step 2). The rerun must end at the budget, with the
    weights of an uninterrupted run."""
    import torch
    from transformers import Trainer

    from distill.stages import train

    make_filtered(rows=_rows(SUMS * 2))
    # one step of an epoch of two: the budget ends mid-epoch, where transformers' resume used to step on
    same = {"max_steps": 1, "save_steps": 1, "eval_fraction": 0.34, "per_device_train_batch_size": 2,
            "learning_rate": 1e-3}
    straight = train.run(config(tiny_llama_dir, name="straight", **same))
    assert straight.manifest["trainer_state"]["global_step"] == 1
    history = json.loads((straight.path / "trainer_state.json").read_text())["log_history"]
    assert sum(1 for e in history if "eval_loss" in e and e["step"] == 1) == 1  # the final validation ran once
    assert "eval_loss" in straight.manifest["stats"]["metrics"]

    with monkeypatch.context() as patch:
        if kill_point == "after_training":  # e.g. during a final validation: the last checkpoint is saved
            trained = Trainer.train

            def train_then_die(self, *args, **kwargs):
                trained(self, *args, **kwargs)
                raise _Killed()
            patch.setattr(Trainer, "train", train_then_die)
        else:
            patch.setattr(train, "commit", lambda *a, **k: (_ for _ in ()).throw(_Killed()))
        with pytest.raises(_Killed):
            train.run(config(tiny_llama_dir, name="killed", **same))
    assert not artifacts.list_versions(home / "checkpoints" / "killed")
    resumed = train.run(config(tiny_llama_dir, name="killed", **same))
    assert resumed.manifest["trainer_state"]["global_step"] == 1  # not 2
    a, b = _weights(resumed.model_path), _weights(straight.model_path)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_a_dataset_with_zero_rows_is_one_clear_error(home, tiny_qwen2_dir):
    """Regression: a filtered artifact that kept 0 rows made `distill train` print a 56-line traceback."""
    import datasets

    from distill.stages import train

    with artifacts.create("kept-nothing", "filtered") as writer:
        writer.save_dataset(datasets.DatasetDict({"train": datasets.Dataset.from_list(_rows()).select([]),
                                                  "rejected": datasets.Dataset.from_list(_rows())}))
    with pytest.raises(UserError, match="kept-nothing has no rows to train on"):
        train.run(config(tiny_qwen2_dir, dataset=["kept-nothing"], name="never"))
    assert not (home / "checkpoints" / "never").exists() or not artifacts.list_versions(home / "checkpoints" / "never")
