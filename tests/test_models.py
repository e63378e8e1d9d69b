"""The bundled SmolLM2-135M-Instruct: materialized from its GGUF, golden tokenizer/template, generates."""

from __future__ import annotations

import json

import pytest
from fixtures_models import run_cli

# Golden values of the bundled tokenizer (SmolLM2's BPE) and its ChatML template.
GOLDEN_TEXT = "Hello world, 2 + 3 = 5."
GOLDEN_IDS = [19556, 905, 28, 216, 34, 1232, 216, 35, 446, 216, 37, 30]
GOLDEN_CHAT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
)


def test_materialized_directory_is_a_normal_hf_model(bundled_model_dir):
    files = {p.name for p in bundled_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= files
    config = json.loads((bundled_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert "Q4_1" in (bundled_model_dir / "DISTILL_SOURCE.txt").read_text()


def test_golden_token_ids_and_chat_template(bundled_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir)
    assert tokenizer(GOLDEN_TEXT)["input_ids"] == GOLDEN_IDS
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+3?"}],
                                             add_generation_prompt=True, tokenize=False)
    assert rendered == GOLDEN_CHAT
    assert tokenizer.eos_token == "<|im_end|>"


def test_bundled_model_generates_text(bundled_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir)
    model = AutoModelForCausalLM.from_pretrained(bundled_model_dir)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+3?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    text = tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "5" in text  # the dequantized model still knows 2 + 3


@pytest.mark.cli
def test_materialize_command_is_idempotent(bundled_model_dir):
    result = run_cli("models", "materialize", check=True, timeout=300)
    assert result.stdout.strip() == str(bundled_model_dir)


def test_tiny_fixtures_build(tiny_qwen2_dir, tiny_llama_dir):
    for directory, model_type in ((tiny_qwen2_dir, "qwen2"), (tiny_llama_dir, "llama")):
        config = json.loads((directory / "config.json").read_text())
        assert config["model_type"] == model_type and config["num_hidden_layers"] == 2
