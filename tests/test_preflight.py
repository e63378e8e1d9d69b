"""`distill preflight` / `distill train --dry-run`: the memory model against published anchors, the shipped
recipes against the GPUs they are sized for, GPU-hours from the dataset's own tokens, and the CLI's error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill import log
from distill.config import build
from distill.errors import UserError
from distill.stages.train import preflight
from distill.stages.train.config import TrainConfig
from distill.stages.train.preflight import Hardware
from distill.stages.train.preflight_memory import (
    KNOWN_MODELS,
    NF4_BYTES,
    Architecture,
    Setup,
    load_architecture,
    lora_parameters,
    memory,
)
from distill.stages.train.recipes import load_recipe

GB = 1e9
# Llama-2-7B's numbers: the model most published memory rules of thumb were written for
LLAMA2_7B = Architecture.from_config(dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                          num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                                          tie_word_embeddings=False, model_type="llama", attention_bias=False))


def states(used) -> float:
    """Weights + gradients + optimizer state on one GPU."""
    return used.gpu["weights"] + used.gpu["gradients"] + used.gpu["optimizer state"]


def plan(recipe: str, gpu_gib: float | None = None, **overrides) -> preflight.Report:
    cfg = build(TrainConfig, load_recipe(recipe), overrides)
    return preflight.report(cfg, count_dataset=False, gpu_memory_gib=gpu_gib,
                            hardware=Hardware(gpus=[], host_gib=2048))


# ---------------------------------------------------------------------------- model sizes


@pytest.mark.parametrize("model, published", [
    ("Qwen/Qwen2.5-0.5B-Instruct", 0.494e9), ("Qwen/Qwen2.5-1.5B-Instruct", 1.54e9), ("Qwen/Qwen2.5-3B", 3.09e9),
    ("Qwen/Qwen2.5-7B-Instruct", 7.62e9), ("Qwen/Qwen2.5-14B-Instruct", 14.7e9), ("Qwen/Qwen2.5-32B-Instruct", 32.8e9),
    ("meta-llama/Llama-3.1-8B-Instruct", 8.03e9), ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 1.78e9),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 7.62e9), ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", 8.03e9),
])
def test_known_students_have_their_published_parameter_counts(model, published):
    # the counts the Hub shows for each model's safetensors
    arch = load_architecture(model, model)
    assert arch.params == pytest.approx(published, rel=0.01)
    assert "known sizes" in arch.source


def test_local_configs_are_counted_exactly(tiny_qwen2_dir, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    for directory in (tiny_qwen2_dir, tiny_llama_dir):
        model = AutoModelForCausalLM.from_pretrained(directory)
        assert load_architecture(str(directory), "tiny").params == sum(p.numel() for p in model.parameters())


def test_a_hub_config_is_read_from_the_local_cache_only(tmp_path, monkeypatch):
    import huggingface_hub.constants

    config = dict(KNOWN_MODELS["Qwen/Qwen2.5-1.5B"], num_hidden_layers=3)
    snapshot = tmp_path / "models--someone--cached-student" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(config))
    (tmp_path / "models--someone--cached-student" / "refs").mkdir()
    (tmp_path / "models--someone--cached-student" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    arch = load_architecture("someone/cached-student", "someone/cached-student")
    assert arch.layers == 3 and "Hugging Face cache" in arch.source
    with pytest.raises(UserError, match="cannot size model 'someone/not-cached'.*no config.json here"):
        load_architecture("someone/not-cached", "someone/not-cached")


# ---------------------------------------------------------------------------- published anchors


def test_a_7b_full_fine_tune_in_bf16_mixed_precision_needs_16_bytes_per_parameter():
    # ZeRO paper (Rajbhandari et al. 2020, 3.1): 2 (bf16 weights) + 2 (bf16 gradients) + 12 (fp32 master, m, v)
    used = memory(LLAMA2_7B, Setup(seq_len=2048, engine="deepspeed", zero_stage=0))
    assert states(used) / LLAMA2_7B.params == pytest.approx(16)
    assert 105 * GB < states(used) < 112 * GB  # "~112 GB for a 7B" (6.74B here), before activations
    assert used.gpu["activations"] > 0 and used.gpu_bytes > states(used) + used.gpu["activations"]
    # without an fp32 master copy (one process, bf16 weights): gradients and both moments in bf16
    plain = memory(LLAMA2_7B, Setup(seq_len=2048))
    assert states(plain) / LLAMA2_7B.params == pytest.approx(8)


def test_zero_stages_divide_what_they_shard_by_the_number_of_gpus():
    one = memory(LLAMA2_7B, Setup(seq_len=4096, engine="deepspeed", zero_stage=3, processes=1))
    eight = memory(LLAMA2_7B, Setup(seq_len=4096, engine="deepspeed", zero_stage=3, processes=8))
    for part in ("gradients", "optimizer state"):
        assert eight.gpu[part] == pytest.approx(one.gpu[part] / 8)
    # ZeRO-3 shards the weights too, and holds the layers it gathers on top
    layer = (LLAMA2_7B.params - 2 * LLAMA2_7B.vocab * LLAMA2_7B.hidden) / LLAMA2_7B.layers
    gathered = 3 * layer * 2 + LLAMA2_7B.vocab * LLAMA2_7B.hidden * 2
    assert eight.gpu["weights"] - gathered == pytest.approx((one.gpu["weights"] - gathered) / 8)
    assert eight.gpu["activations"] == one.gpu["activations"]  # each GPU runs its own micro-batch
    zero2 = memory(LLAMA2_7B, Setup(seq_len=4096, engine="deepspeed", zero_stage=2, processes=8))
    assert zero2.gpu["weights"] == pytest.approx(2 * LLAMA2_7B.params)  # ZeRO-2 keeps every weight
    assert zero2.gpu["optimizer state"] == pytest.approx(12 * LLAMA2_7B.params / 8)
    # offload: optimizer state + fp32 gradients (16 B) and the bf16 weights (2 B) go to the host
    offload = memory(LLAMA2_7B, Setup(seq_len=4096, engine="deepspeed", zero_stage=3, processes=8,
                                      offload_optimizer=True, offload_params=True))
    assert offload.gpu["optimizer state"] == 0 and offload.gpu["gradients"] == 0
    assert offload.host["offloaded (pinned)"] == pytest.approx(18 * LLAMA2_7B.params * 1.1)


def test_lora_trains_r_times_in_plus_out_per_targeted_layer():
    arch = LLAMA2_7B
    only_q, unknown = lora_parameters(arch, 8, ["q_proj", "lm_head"])
    assert only_q == arch.layers * 8 * (4096 + 4096) and unknown == ["lm_head"]
    every, _ = lora_parameters(arch, 16, ["all-linear"])
    assert every == arch.layers * 16 * (4 * (4096 + 4096) + 3 * (4096 + 11008))
    full = memory(arch, Setup(seq_len=2048, engine="deepspeed"))
    lora = memory(arch, Setup(seq_len=2048, lora=True, lora_r=16))
    assert lora.trainable == every and lora.gpu["optimizer state"] == 8 * every  # fp32 adapters: m and v
    assert states(lora) < states(full) / 7


def test_qlora_stores_the_linear_layers_in_4_bits_and_a_7b_fits_a_24_gb_gpu():
    # QLoRA paper (Dettmers et al. 2023, 3): NF4 + double quantization = 4 + 0.127 bits per parameter
    assert NF4_BYTES * 8 == pytest.approx(4.127)
    qlora = memory(LLAMA2_7B, Setup(seq_len=2048, lora=True, load_in_4bit=True, lora_r=64))
    frozen = LLAMA2_7B.linear_params * NF4_BYTES + (LLAMA2_7B.params - LLAMA2_7B.linear_params) * 2
    assert qlora.gpu["weights"] == pytest.approx(frozen + 4 * qlora.trainable)
    assert qlora.gpu_bytes < 24e9 * 0.6  # "QLoRA of a 7B fits a 24 GB GPU", with room to spare at 2k tokens


def test_checkpointing_keeps_one_input_per_layer():
    # Korthikanti et al. 2022 counting for a SwiGLU layer: 12h + 4q + 4kv + 8i bytes per token (c = 45 for Llama 3.1 8B)
    llama = load_architecture("meta-llama/Llama-3.1-8B", "llama")
    assert llama.activation_bytes_per_token_layer() / llama.hidden == pytest.approx(45)
    full = memory(llama, Setup(seq_len=8192, gradient_checkpointing=False)).gpu["activations"]
    kept = memory(llama, Setup(seq_len=8192)).gpu["activations"]
    assert full == 8192 * llama.layers * 45 * llama.hidden
    assert kept == 8192 * llama.hidden * (2 * llama.layers) + 8192 * 45 * llama.hidden
    assert memory(llama, Setup(seq_len=16384)).gpu["activations"] == pytest.approx(2 * kept)


# ---------------------------------------------------------------------------- the shipped recipes


def test_the_qlora_recipe_fits_a_24_gib_gpu_and_is_not_sized_as_a_full_fine_tune():
    result = plan("qwen-7b-qlora", gpu_gib=24)
    est = result.estimate
    assert result.fits, result.verdict
    assert est.method == "QLoRA (NF4) r=64" and est.strategy == "one GPU, no sharding"  # 1 GPU: no DeepSpeed
    assert 150e6 < est.trainable < 170e6 and 10 < est.gpu_gib < 20
    assert not plan("qwen-7b-qlora", gpu_gib=12).fits
    full = plan("qwen-7b-qlora", gpu_gib=24, lora=False, load_in_4bit=False).estimate
    assert full.gpu_gib > 4 * est.gpu_gib


def test_the_7b_full_fine_tune_needs_zero_on_8_x_80_gib():
    zero3 = plan("qwen-7b", gpu_gib=80)
    assert zero3.fits and zero3.estimate.strategy == "DeepSpeed ZeRO-3 over 8 GPUs"
    ddp = plan("qwen-7b", gpu_gib=80, accelerate_config="ddp")
    assert not ddp.fits and ddp.verdict.startswith("GPU memory too small (8 x planned GPU 80 GiB)")
    assert ddp.estimate.gpu_gib > 80 > 2 * zero3.estimate.gpu_gib
    offload = plan("openthoughts-7b", gpu_gib=80).estimate
    assert offload.offload and offload.gpu_gib < zero3.estimate.gpu_gib and 130 < offload.host_gib < 180


def test_recipes_differ_in_gpu_hours_and_the_published_run_keeps_its_own():
    rates = {r: plan(r, gpu_gib=80).estimate for r in ("qwen-1.5b", "qwen-7b", "qwen-7b-qlora", "qwen-32b")}
    assert all(est.h100_hours is None for est in rates.values())  # no dataset: per million tokens
    per_million = {r: est.h100_hours_per_million for r, est in rates.items()}
    assert per_million["qwen-1.5b"] < per_million["qwen-7b-qlora"] < per_million["qwen-7b"] < per_million["qwen-32b"]
    # 6 x 7.62B FLOP per token at 40 % of 989 TFLOP/s
    assert per_million["qwen-7b"] == pytest.approx(6 * 7.6156e9 * 1e6 / (989e12 * 0.4) / 3600, rel=1e-3)
    result = plan("openthoughts-7b")
    assert result.estimate.h100_hours == pytest.approx(640) and "640 H100 GPU-hours" in result.verdict


# ---------------------------------------------------------------------------- the dataset's tokens


def _write_rows(path: Path, count: int, words: int = 30) -> Path:
    rows = [{"problem": f"What is {i} + {i}?", "completion": "<think>\n" + "I add the numbers. " * (words + i % 7)
             + f"\n</think>\n\n\\boxed{{{2 * i}}}"} for i in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _with_data(tmp_path, model: str, *datasets_: str, **overrides) -> preflight.Report:
    cfg = build(TrainConfig, load_recipe("qwen-7b-qlora"),
                {"model": model, "dataset": list(datasets_), "eval_fraction": 0, **overrides})
    return preflight.report(cfg, count_dataset=True, gpu_memory_gib=24, hardware=Hardware(gpus=[], host_gib=64))


def test_gpu_hours_scale_with_the_tokens_of_the_dataset(tmp_path, home, tiny_qwen2_dir):
    rows = _write_rows(tmp_path / "rows.jsonl", 40)
    once = _with_data(tmp_path, str(tiny_qwen2_dir), str(rows)).estimate
    twice = _with_data(tmp_path, str(tiny_qwen2_dir), f"{rows}:2").estimate  # the mixture weight repeats the rows
    assert once.tokens.how == f"tokenizer of {tiny_qwen2_dir}" and once.tokens.rows == 40
    assert twice.tokens.tokens == 2 * once.tokens.tokens and twice.h100_hours == pytest.approx(2 * once.h100_hours)
    assert once.h100_hours == pytest.approx(once.tokens.tokens * 3 * once.flops_per_token / (989e12 * 0.4) / 3600)
    # the longest row, not --max-length, decides the activations when a dataset is given
    assert once.seq_len == once.tokens.longest < 8192
    one_epoch = _with_data(tmp_path, str(tiny_qwen2_dir), str(rows), num_train_epochs=1).estimate
    assert one_epoch.h100_hours == pytest.approx(once.h100_hours / 3)
    # rows over --max-length are dropped as `distill train` drops them
    short = _with_data(tmp_path, str(tiny_qwen2_dir), str(rows), max_length=once.tokens.longest - 1).estimate
    assert short.tokens.too_long >= 1 and short.tokens.rows == 40 - short.tokens.too_long


def test_without_a_local_tokenizer_tokens_are_characters_over_4(tmp_path, home):
    rows = _write_rows(tmp_path / "rows.jsonl", 10)
    est = _with_data(tmp_path, "Qwen/Qwen2.5-7B-Instruct", str(rows)).estimate
    assert est.tokens.how.startswith("characters / 4 (no tokenizer of Qwen/Qwen2.5-7B-Instruct on this machine")
    texts = [json.loads(line) for line in rows.read_text().splitlines()]
    assert est.tokens.tokens > sum(len(r["completion"]) for r in texts) // 4  # prompts counted too
    assert "characters / 4" in preflight.render(est)


# ---------------------------------------------------------------------------- the command line


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    from distill.cli import main

    renderer, code = log._renderer, 0
    try:
        main(argv)  # returns on success
    except SystemExit as exc:
        code = exc.code
    finally:
        log.set_renderer(renderer)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_cli_names_the_shortfall_in_one_error_line(home, capsys):
    code, out, err = _cli(["preflight", "--recipe", "qwen-7b", "--gpu-memory-gib", "80", "--set",
                           "accelerate_config=ddp"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: GPU memory too small (8 x planned GPU 80 GiB): Qwen/Qwen2.5-7B-Instruct")
    assert "DDP over 8 GPUs" in err and "H100 GPU-hours per million" in err
    assert "optimizer state" in out and "total" in out  # the table is printed before the verdict

    code, out, err = _cli(["preflight", "--recipe", "qwen-7b-qlora", "--gpu-memory-gib", "24"], capsys)
    assert code == 0 and not err and "preflight: 1 x 24 GiB GPU (planned): fits" in out

    code, _, err = _cli(["preflight", "--recipe", "qwen-7b", "--gpu-memory-gib", "-1"], capsys)
    assert code == 2 and err == "error: --gpu-memory-gib must be a positive number of GiB (got -1.0)\n"
    assert not home.exists() or not any(home.iterdir())


def test_train_dry_run_prints_the_same_estimate_and_trains_nothing(home, tmp_path, capsys):
    rows = _write_rows(tmp_path / "rows.jsonl", 12)
    args = ["--recipe", "smol-demo", "--dataset", str(rows)]
    code, dry, _ = _cli(["train", *args, "--dry-run"], capsys)
    assert code == 0 and "tokens:" in dry and "tokenizer of bundled" in dry
    code, same, _ = _cli(["preflight", *args], capsys)
    assert code == 0 and same == dry
    assert not (home / "checkpoints").exists()
