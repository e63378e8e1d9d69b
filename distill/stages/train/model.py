"""Load the student (full, LoRA, 4-bit QLoRA) and write what a checkpoint needs to be used.

A checkpoint's `model/` is a full model, or a LoRA adapter (with `merged/` beside it after --merge);
either way it holds the tokenizer with the chat template the student was trained with and a
`generation_config.json` whose eos ids include the end-of-turn token, with the recommended sampling.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from distill import artifacts, models
from distill.errors import UserError


def resolve_student(spec: str) -> tuple[str, artifacts.Artifact | None]:
    """(path or Hub id to load, the checkpoint artifact when the student is one); a LoRA checkpoint
    trains on from its merged model."""
    ref = models.resolve(spec, adapters=False)
    return ref.path, ref.checkpoint


def resolve_precision(precision: str) -> str:
    """bf16, fp16 or fp32 for --precision (auto: bf16 on a GPU or CPU with bf16 units, see precision.choose)."""
    return choose_precision(precision)["precision"]


def choose_precision(precision: str) -> dict:
    """{"precision": ..., "reason": ...}: what --precision resolves to on this machine and why (for the log and
    the manifest)."""
    from distill.stages.train.precision import choose

    return choose(precision)


def torch_dtype(precision: str):
    """The dtype the student's weights load in: bf16 on a GPU; on a CPU fp32 even for bf16, which there means
    autocast over fp32 master weights (bf16 weights would lose the small updates the optimizer makes)."""
    from distill.stages.train.precision import load_dtype

    return load_dtype(precision)


def load_tokenizer(path: str, revision: str | None = None):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, revision=revision)
    except OSError as exc:
        raise UserError(f"cannot load the tokenizer of {path!r} ({str(exc).splitlines()[0][:160]}): check the "
                        "model id, or that it is in the local Hugging Face cache when offline") from None


def sharded_training() -> bool:
    """Under DeepSpeed ZeRO-3 or FSDP, which partition the weights at load time (transformers refuses a
    device_map there; QLoRA then relies on bnb_4bit_quant_storage matching the compute dtype)."""
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled() or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def load_model(path: str, cfg, precision: str):
    """The student, quantized to 4-bit NF4 (double quantization) for QLoRA."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": torch_dtype(precision), "revision": cfg.model_revision}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if cfg.load_in_4bit:
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if precision == "bf16" else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute, bnb_4bit_quant_storage=compute)
        if not sharded_training():  # ZeRO-3 / FSDP place the (4-bit) shards themselves: no device_map
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            kwargs["device_map"] = {"": f"cuda:{local_rank}"} if torch.cuda.is_available() else {"": "cpu"}
    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise UserError(f"cannot load the student {path!r} ({str(exc).splitlines()[0][:160]})") from None


def lora_config(cfg):
    from peft import LoraConfig

    targets = cfg.lora_target_modules
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets[0] if targets == ["all-linear"] else targets, task_type="CAUSAL_LM")


def stop_token_ids(tokenizer, model_generation_config=None) -> list[int]:
    """The end-of-turn id first, then any other eos ids the base model stops on."""
    ids = [tokenizer.eos_token_id]
    existing = getattr(model_generation_config, "eos_token_id", None) if model_generation_config else None
    for value in existing if isinstance(existing, list) else [existing]:
        if value is not None and value not in ids:
            ids.append(value)
    return ids


def write_generation_config(directory: Path, tokenizer, eos_ids: list[int], temperature: float, top_p: float) -> None:
    """generation_config.json: stop on the end-of-turn token; sample as recommended for reasoning models."""
    from transformers import GenerationConfig

    config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_ids,
                              pad_token_id=tokenizer.pad_token_id, do_sample=True, temperature=temperature,
                              top_p=top_p)
    config.save_pretrained(str(directory))


def save_tokenizer(tokenizer, directory: Path, chat_template: str) -> None:
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(str(directory))


def fix_model_config(directory: Path, tokenizer) -> None:
    """config.json agrees with the tokenizer on eos / pad (vLLM reads them from there too)."""
    path = directory / "config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    config["eos_token_id"] = tokenizer.eos_token_id
    config["pad_token_id"] = tokenizer.pad_token_id
    path.write_text(json.dumps(config, indent=2) + "\n")


def merge_adapter(base: str, adapter_dir: Path, out_dir: Path, precision: str, revision: str | None,
                  vocab_size: int | None = None) -> None:
    """Load the base unquantized, apply the adapter, fold it in and save a full model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype(precision), revision=revision)
    if vocab_size and model.get_input_embeddings().weight.shape[0] != vocab_size:
        model.resize_token_embeddings(vocab_size)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.save_pretrained(str(out_dir), safe_serialization=True)
