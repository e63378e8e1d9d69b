"""Can the GPUs here hold a training recipe? A memory and GPU-hours estimate before a long run starts.

    distill preflight --recipe openthoughts-7b     # exit 0 and the estimate, or exit 2 and why

The estimate is a rough model of a full fine-tune under DeepSpeed ZeRO-3 with gradient
checkpointing, micro-batch 1 and FlashAttention/SDPA (no seq x seq attention matrix):

- per GPU: checkpointed activations (layers x seq x hidden x 2 B), one layer's recompute working set,
  the logits (seq x vocab: bf16 + fp32 for the loss), the gathered parameters of two layers and the
  embedding/LM head, and ~3 GiB of CUDA context and fragmentation; plus, without CPU offload, the
  sharded parameters, gradients and Adam states (18 B/param over all GPUs);
- host RAM with CPU offload: fp32 master weights, fp32 gradients, Adam m and v, bf16 weights
  (18 B/param over all nodes), plus ~10% pinned buffers.

GPU-hours come from the published run this recipe reproduces (OpenThinker-7B: 4 nodes x 8 H100 for
about 20 h = 640 H100-hours for 3 epochs of 113,957 rows at 16,384 tokens), scaled by epochs and rows,
and by a rough bf16 throughput ratio for other GPUs.
"""

from __future__ import annotations

import math
import os
import subprocess
from collections import Counter
from dataclasses import dataclass

from distill.errors import UserError

GIB = 1024**3
# Published reference run (open-thoughts/OpenThinker-7B model card: "four 8xH100 nodes ... 20 hours").
REFERENCE_H100_HOURS, REFERENCE_EPOCHS, REFERENCE_ROWS = 4 * 8 * 20, 3, 113_957
# Rough dense bf16 training throughput relative to an H100 SXM (others: assume A100-class).
RELATIVE_SPEED = {"H200": 1.1, "H100": 1.0, "GH200": 1.1, "B200": 2.0, "A100": 0.4, "L40S": 0.35, "A6000": 0.2}
# Architectures of models a recipe may name by Hub id (no download needed to estimate).
KNOWN_MODELS = {
    "Qwen/Qwen2.5-7B-Instruct": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                     num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                                     tie_word_embeddings=False),
    "Qwen/Qwen2.5-32B-Instruct": dict(hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
                                      num_attention_heads=40, num_key_value_heads=8, vocab_size=152064,
                                      tie_word_embeddings=False),
}


@dataclass
class Estimate:
    model: str
    params: int
    seq_len: int
    offload: bool
    gpu_gib: float  # needed per GPU
    host_gib: float  # needed per node (all of it when there is one node)
    h100_hours: float


@dataclass
class Hardware:
    gpus: list[tuple[str, float]]  # (name, GiB)
    host_gib: float


def parameter_count(arch: dict) -> int:
    """Weights of a dense decoder (Llama / Qwen2 layout) from its config numbers."""
    h, i, layers = arch["hidden_size"], arch["intermediate_size"], arch["num_hidden_layers"]
    heads = arch["num_attention_heads"]
    kv = arch.get("num_key_value_heads") or heads
    head_dim = arch.get("head_dim") or h // heads
    attention = 2 * h * heads * head_dim + 2 * h * kv * head_dim
    if arch.get("attention_bias", arch.get("model_type", "qwen2") == "qwen2"):  # Qwen2 has q/k/v biases
        attention += (heads + 2 * kv) * head_dim
    embeddings = arch["vocab_size"] * h * (1 if arch.get("tie_word_embeddings") else 2)
    return layers * (attention + 3 * h * i + 2 * h) + h + embeddings


def architecture(model: str) -> dict:
    """Config numbers of a model: a local dir's config.json, a known Hub id, or the Hub config."""
    import json

    path = os.path.join(os.path.expanduser(model), "config.json")
    if os.path.isfile(path):
        with open(path) as handle:
            return json.load(handle)
    if model in KNOWN_MODELS:
        return KNOWN_MODELS[model]
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model).to_dict()
    except Exception:  # noqa: BLE001 - offline / unknown: say so
        raise UserError(f"preflight cannot size model {model!r}: give a local model dir or a reachable Hub id") from None


def estimate(model: str, seq_len: int, *, epochs: float = 3, rows: int = REFERENCE_ROWS, offload: bool = True,
             num_gpus: int = 1) -> Estimate:
    arch = architecture(model)
    params = parameter_count(arch)
    h, i, layers, vocab = arch["hidden_size"], arch["intermediate_size"], arch["num_hidden_layers"], arch["vocab_size"]
    activations = layers * seq_len * h * 2
    recompute = seq_len * (10 * h + 3 * i) * 2
    logits = seq_len * vocab * (2 + 4)
    gathered = 2 * (params - vocab * h) / layers * 2 + vocab * h * 2
    states = 0 if offload else 18 * params / max(num_gpus, 1)
    gpu = activations + recompute + logits + gathered + states + 3 * GIB
    host = (18 * params * 1.1 if offload else 0) + 16 * GIB
    hours = REFERENCE_H100_HOURS * (epochs / REFERENCE_EPOCHS) * (rows / REFERENCE_ROWS)
    return Estimate(model=model, params=params, seq_len=seq_len, offload=offload, gpu_gib=gpu / GIB,
                    host_gib=host / GIB, h100_hours=hours)


def detect_hardware() -> Hardware:
    """GPUs via nvidia-smi (no torch import), host RAM via sysconf."""
    gpus: list[tuple[str, float]] = []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0:
            for line in out.stdout.strip().splitlines():
                name, _, mib = line.rpartition(",")
                gpus.append((name.strip(), float(mib) / 1024))
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return Hardware(gpus=gpus, host_gib=host)


def speed_of(gpu_name: str) -> float:
    upper = gpu_name.upper()
    return next((speed for key, speed in RELATIVE_SPEED.items() if key in upper), 0.4)


def check(est: Estimate, hw: Hardware) -> tuple[bool, str]:
    """(fits, one-paragraph message): what is needed, what is here, and the GPU-hours."""
    need = (f"{est.model} ({est.params / 1e9:.1f}B params, full fine-tune at {est.seq_len:,} tokens, ZeRO-3"
            f"{' + CPU offload' if est.offload else ''}) needs GPUs with >= {math.ceil(est.gpu_gib)} GiB each"
            + (f" and >= {math.ceil(est.host_gib)} GiB host RAM" if est.offload else ""))
    hours = (f"estimated {est.h100_hours:,.0f} H100 GPU-hours (published: 4 nodes x 8 H100 for ~20 h; "
             f"~{est.h100_hours / 8:,.0f} h on one 8-GPU H100 node)")
    if not hw.gpus:
        return False, f"no CUDA GPU here: {need}; {hours}"
    small = Counter(f"{name} {gib:.0f} GiB" for name, gib in hw.gpus if gib < est.gpu_gib)
    if small:
        have = ", ".join(f"{count} x {gpu}" for gpu, count in small.items())
        return False, f"GPU memory too small ({have}): {need}; {hours}"
    if est.offload and hw.host_gib < est.host_gib:
        return False, f"host RAM too small ({hw.host_gib:.0f} GiB): {need}; {hours}"
    speed = sum(speed_of(name) for name, _ in hw.gpus)
    return True, (f"{len(hw.gpus)} x {hw.gpus[0][0]} ({hw.gpus[0][1]:.0f} GiB), {hw.host_gib:.0f} GiB RAM: fits. "
                  f"{hours}; here about {est.h100_hours / speed:,.0f} h wall-clock")


def uses_cpu_offload(accelerate_config: str | None) -> bool:
    """Whether a `distill train --accelerate-config` value (a shipped name or a YAML file) offloads to CPU."""
    from distill.stages.train.launch import accelerate_config_path, offloads

    return offloads(accelerate_config_path(str(accelerate_config or "ddp")))


def recipe_estimate(recipe: dict, num_gpus: int = 1, rows: int = REFERENCE_ROWS) -> Estimate:
    """An estimate from a `distill train` recipe (TrainConfig keys: model, max_length, num_train_epochs,
    accelerate_config)."""
    model = recipe.get("model")
    if not model or model == "bundled":
        raise UserError(f"preflight: recipe {recipe.get('recipe')!r} names no large model to size")
    return estimate(model, int(recipe.get("max_length") or 16384), epochs=float(recipe.get("num_train_epochs") or 1),
                    rows=rows, offload=uses_cpu_offload(recipe.get("accelerate_config")), num_gpus=num_gpus)


def run(recipe: str) -> tuple[bool, str]:
    """(fits, the estimate or why not) for a recipe name or YAML file on this machine's GPUs."""
    from distill.stages.train.recipes import load_recipe

    hw = detect_hardware()
    return check(recipe_estimate(load_recipe(recipe), num_gpus=max(len(hw.gpus), 1)), hw)
