"""--precision: what auto picks (GPU, CPU with or without bf16 units), the dtype weights load in, and that bf16
on a CPU is autocast over fp32 master weights through the real transformers Trainer / accelerate."""

from __future__ import annotations

import math

import pytest

from distill.stages.train import model as student
from distill.stages.train import precision

torch = pytest.importorskip("torch")
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU branch of --precision auto")

FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr sse sse2 avx2 avx512f avx512bw avx512vl"


def cpuinfo(tmp_path, extra_flags: str = "", processors: int = 2):
    text = "".join(f"processor\t: {i}\nmodel name\t: Some CPU\nflags\t\t: {FLAGS} {extra_flags}\n\n"
                   for i in range(processors))
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


def test_cpu_features_are_read_from_the_flags_lines(tmp_path):
    assert precision.cpu_bf16_features(cpuinfo(tmp_path, "avx512_bf16 avx512_vnni")) == ["avx512_bf16"]
    assert precision.cpu_bf16_features(cpuinfo(tmp_path, "amx_tile amx_bf16 avx512_bf16")) == ["avx512_bf16",
                                                                                                  "amx_bf16"]
    assert precision.cpu_bf16_features(cpuinfo(tmp_path)) == []
    # the name must match a whole flag, not a prefix or a substring of another one
    assert precision.cpu_bf16_features(cpuinfo(tmp_path, "avx512_bf16x notamx_bf16")) == []
    assert precision.cpu_bf16_features(tmp_path / "missing") == []  # macOS, Windows: no /proc/cpuinfo


@no_gpu
def test_auto_on_a_cpu_with_bf16_units_picks_bf16_and_says_why(tmp_path):
    choice = precision.choose("auto", cpuinfo(tmp_path, "avx512_bf16"))
    assert choice["precision"] == "bf16"
    assert "avx512_bf16" in choice["reason"] and "fp32 weights" in choice["reason"]
    both = precision.choose("auto", cpuinfo(tmp_path, "avx512_bf16 amx_bf16"))
    assert both["precision"] == "bf16" and "avx512_bf16 + amx_bf16" in both["reason"]


@no_gpu
def test_auto_on_a_cpu_without_them_stays_fp32(tmp_path):
    choice = precision.choose("auto", cpuinfo(tmp_path))
    assert choice["precision"] == "fp32"
    assert "without AVX-512 BF16 or AMX" in choice["reason"]


def test_an_explicit_precision_is_kept(tmp_path):
    for name in ("bf16", "fp16", "fp32"):
        assert precision.choose(name, cpuinfo(tmp_path)) == {"precision": name, "reason": f"--precision {name}"}
    assert student.resolve_precision("fp16") == "fp16"
    assert student.choose_precision("bf16")["precision"] == "bf16"


def test_resolve_precision_agrees_with_choose_on_this_machine():
    assert student.resolve_precision("auto") == precision.choose("auto")["precision"]


def test_weights_load_in_bf16_only_on_a_gpu():
    assert precision.load_dtype("bf16", on_gpu=True) == torch.bfloat16
    assert precision.load_dtype("bf16", on_gpu=False) == torch.float32  # CPU bf16 = autocast, fp32 masters
    for name in ("fp16", "fp32"):
        assert precision.load_dtype(name, on_gpu=True) == torch.float32
        assert precision.load_dtype(name, on_gpu=False) == torch.float32


@no_gpu
def test_torch_dtype_for_bf16_on_this_cpu_is_fp32():
    assert student.torch_dtype("bf16") == torch.float32


def _tiny_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64))


@no_gpu
def test_trainer_bf16_on_cpu_is_autocast_over_fp32_weights(tmp_path):
    """The real Trainer and accelerate: bf16=True (with use_cpu, without which transformers refuses bf16 on a
    machine without a GPU) wraps the forward in a CPU bf16 autocast; the weights stay fp32."""
    from transformers import Trainer, TrainingArguments

    args = precision.trainer_args("bf16")
    assert args == {"bf16": True, "fp16": False, "use_cpu": True}
    with pytest.raises(ValueError, match="bf16"):  # why use_cpu is there
        TrainingArguments(output_dir=str(tmp_path / "refused"), report_to=[], bf16=True)
    model = _tiny_model()
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "run"), report_to=[], **args))
    prepared = trainer.accelerator.prepare_model(model)
    seen = []
    prepared.model.layers[0].mlp.down_proj.register_forward_hook(lambda module, inputs, out: seen.append(out.dtype))
    ids = torch.randint(0, 64, (2, 16))
    loss = prepared(input_ids=ids, labels=ids).loss
    assert seen == [torch.bfloat16]  # the matmuls ran in bf16
    assert {p.dtype for p in prepared.parameters()} == {torch.float32}  # the master weights did not
    assert math.isfinite(loss.item())
    assert precision.trainer_args("fp32") == {"bf16": False, "fp16": False}


@pytest.mark.train
@no_gpu
def test_bf16_training_steps_on_cpu_update_fp32_weights(tmp_path):
    """Two real Trainer steps with --precision bf16's arguments on a CPU: the loss is finite and the fp32
    weights move (an update too small for bf16 weights would be lost)."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    model = _tiny_model()
    before = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    rows = [{"input_ids": list(range(i, i + 16)), "labels": list(range(i, i + 16))} for i in range(8)]
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], max_steps=2, per_device_train_batch_size=4,
                             learning_rate=1e-5, save_strategy="no", logging_steps=1, disable_tqdm=True,
                             **precision.trainer_args("bf16"))
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows))
    trainer.train()
    after = model.model.layers[0].mlp.up_proj.weight
    assert after.dtype == torch.float32
    assert not torch.equal(before, after.detach())
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
