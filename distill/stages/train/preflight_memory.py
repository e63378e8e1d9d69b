"""The memory model of `distill preflight`: what each GPU, and each machine's RAM, holds while a student trains.

P = the model's parameters, T = the trainable ones (P for a full fine-tune; the LoRA adapters, r x (in + out)
for each targeted linear layer of each decoder layer, under LoRA / QLoRA), N = GPUs over all machines.
Bytes per parameter:

- weights: bf16 2 (the GPU recipes load bf16, `precision.load_dtype`), fp32 4 (fp32 / fp16 runs keep fp32
  weights); QLoRA stores the decoder's linear layers in NF4 with double quantization, 4.127 bits = 0.516 B
  (4-bit codes + 8-bit block constants per 64 + fp32 constants per 256 blocks: Dettmers et al. 2023, QLoRA,
  section 3), while embeddings, LM head and norms stay bf16. LoRA adapters are fp32 (PEFT casts them up).
- gradients and AdamW state, trainable parameters only (a frozen base has neither):
  * DeepSpeed (bf16): bf16 gradients 2 + fp32 master weights, momentum and variance 12, i.e. 16 B/param with
    the bf16 weights (Rajbhandari et al. 2020, ZeRO, section 3.1: 2P + 2P + 12P);
  * FSDP: accelerate upcasts trainable weights to fp32 for mixed precision: 4 + 4 gradients + 8 moments;
  * one process or DDP: gradients and both moments in the weights' dtype (torch AdamW keeps its state like the
    parameter): 8 B/param with bf16 weights, 16 with fp32; DDP adds one more gradient copy for its buckets
    (PyTorch DDP, gradient_as_bucket_view=False); an 8-bit optimizer (`optim` containing 8bit) keeps 1 B per
    moment;
  * LoRA adapters: 4 + 4 + 8 = 16 B per adapter parameter everywhere.
  (A full fine-tune in one process or DDP thus updates bf16 weights with no fp32 master copy, as `distill
  train` loads them on a GPU: AdamW steps below bf16's resolution, ~0.4 % of a weight, are rounded away.)
- sharding: ZeRO-1 divides the optimizer state by N, ZeRO-2 also the gradients, ZeRO-3 (and FSDP full shard)
  also the weights; ZeRO-3 then holds, gathered, the layer being computed, the one prefetched and the largest
  matrix (embedding / LM head), plus one layer's gradients before they are reduce-scattered. Optimizer
  offload moves the optimizer state and fp32 gradients (16 B per trainable parameter) to the host; parameter
  offload also the bf16 weights (2 B); FSDP's offload moves weights, gradients and optimizer state. Host RAM
  per machine: what is offloaded / machines x 1.1 (pinned buffers) + 16 GiB for the OS and the processes
  (both allowances rough).
- activations, per GPU, micro-batch b, sequence s, hidden h, L layers: b x s x L x c x h bytes without gradient
  checkpointing. Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models",
  section 4.1) count c = 34 for a GPT layer (no s^2 term with FlashAttention / SDPA, which we assume).
  Counted the same way for a Llama / Qwen2 layer (no dropout; SwiGLU keeps gate, up, SiLU and product, i
  wide; HF's RMSNorm keeps an fp32 copy of its input): c x h = 12h + 4q + 4kv + 8i in bf16 (q, kv: the
  query and key/value widths), i.e. c = 59 for Qwen2.5-7B, 45 for Llama-3.1-8B; doubled in fp32. LoRA with
  dropout adds a dropped-out copy (2 B) and a mask (1 B) of each adapted layer's input. With gradient
  checkpointing each layer keeps only its input (c = 2) and one layer is recomputed at a time:
  b x s x h x (2L + c) bytes. Checked here on the CPU: the bundled SmolLM2-135M (Llama layout, fp32, SDPA)
  kept 2.84 GB after a 2,048-token forward without checkpointing (RSS growth, glibc's mmap threshold
  fixed); this count says 2.74 GB.
- the loss head: TRL's SFTTrainer (1.16, as pinned) computes log-probabilities in 4096-token x 32,768-vocab
  tiles without the full logits (trl/kernels/chunked_logprob.py): two fp32 tiles, <= 1 GiB.
- overhead: ~1 GiB of CUDA context and cuBLAS / NCCL workspaces, plus 10 % of the rest for the caching
  allocator's fragmentation. Both are rough allowances, not measurements. A one-process fp32 run on the CPU
  (the smol-demo recipe) needs its total in RAM plus ~2 GiB for the Python process, and no CUDA context.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from distill.errors import UserError

GIB = 1024**3
NF4_BYTES = 4.127 / 8  # QLoRA's NF4 + double quantization, bits per parameter / 8
CONTEXT_BYTES = 1 * GIB
FRAGMENTATION = 0.10
HOST_BASE_BYTES = 16 * GIB
CPU_PROCESS_BYTES = 2 * GIB  # a CPU run: one Python process with torch, transformers and the data
PINNED_FACTOR = 1.1
LOSS_TILE_TOKENS, LOSS_TILE_VOCAB = 4096, 32768  # trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE, the vocab chunk
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")

# Config numbers of students a recipe may name by Hub id, for when their config.json is not on this machine
# (copied from the models' config.json on the Hub; base and -Instruct models share them).
_QWEN_SMALL = dict(vocab_size=151936, tie_word_embeddings=True, model_type="qwen2")
_QWEN_LARGE = dict(vocab_size=152064, tie_word_embeddings=False, model_type="qwen2")
_LLAMA31_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                   num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, model_type="llama",
                   attention_bias=False)
KNOWN_MODELS = {
    "Qwen/Qwen2.5-0.5B": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                              num_key_value_heads=2, **_QWEN_SMALL),
    "Qwen/Qwen2.5-1.5B": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                              num_key_value_heads=2, **_QWEN_SMALL),
    "Qwen/Qwen2.5-3B": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                            num_key_value_heads=2, **_QWEN_SMALL),
    "Qwen/Qwen2.5-7B": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                            num_key_value_heads=4, **_QWEN_LARGE),
    "Qwen/Qwen2.5-14B": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=48, num_attention_heads=40,
                             num_key_value_heads=8, **_QWEN_LARGE),
    "Qwen/Qwen2.5-32B": dict(hidden_size=5120, intermediate_size=27648, num_hidden_layers=64, num_attention_heads=40,
                             num_key_value_heads=8, **_QWEN_LARGE),
    # R1-Distill-Qwen-1.5B / 7B are Qwen2.5-Math-1.5B / 7B: untied embeddings, Math's vocabulary
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                                      num_attention_heads=12, num_key_value_heads=2,
                                                      vocab_size=151936, tie_word_embeddings=False,
                                                      model_type="qwen2"),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                                    num_attention_heads=28, num_key_value_heads=4, **_QWEN_LARGE),
    "meta-llama/Llama-3.1-8B": _LLAMA31_8B,
    "meta-llama/Meta-Llama-3.1-8B": _LLAMA31_8B,
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": _LLAMA31_8B,
}
KNOWN_MODELS["deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"] = KNOWN_MODELS["Qwen/Qwen2.5-14B"]
KNOWN_MODELS["deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"] = KNOWN_MODELS["Qwen/Qwen2.5-32B"]


@dataclass(frozen=True)
class Architecture:
    """The numbers of a dense decoder (Llama / Qwen2 layout) the estimate needs."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    qkv_bias: bool
    source: str = ""  # where the numbers came from, for the report

    @classmethod
    def from_config(cls, config: dict, source: str = "") -> Architecture:
        if any(config.get(key) for key in ("num_experts", "num_local_experts", "n_routed_experts")):
            raise UserError(f"preflight sizes dense decoders only; {source or 'this model'} is a mixture of experts")
        missing = [k for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                               "vocab_size") if not config.get(k)]
        if missing:
            raise UserError(f"preflight cannot size {source or 'this model'}: its config has no {', '.join(missing)} "
                            "(only dense decoders such as Llama / Qwen2 are modelled)")
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        return cls(hidden=hidden, intermediate=int(config["intermediate_size"]),
                   layers=int(config["num_hidden_layers"]), heads=heads,
                   kv_heads=int(config.get("num_key_value_heads") or heads),
                   head_dim=int(config.get("head_dim") or hidden // heads), vocab=int(config["vocab_size"]),
                   tied=bool(config.get("tie_word_embeddings")),
                   # Qwen2 always has q/k/v biases (its config has no key for it); others say attention_bias
                   qkv_bias=bool(config.get("attention_bias", config.get("model_type", "qwen2") == "qwen2")),
                   source=source)

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one decoder layer, by its peft / transformers name."""
        h, i = self.hidden, self.intermediate
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        """Weights of every decoder layer's linear layers (what QLoRA quantizes)."""
        return self.layers * sum(a * b for a, b in self.linear_shapes().values())

    @property
    def params(self) -> int:
        per_layer_extra = 2 * self.hidden  # two RMSNorms
        if self.qkv_bias:
            per_layer_extra += (self.heads + 2 * self.kv_heads) * self.head_dim
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.linear_params + self.layers * per_layer_extra + self.hidden + embeddings

    def activation_bytes_per_token_layer(self) -> int:
        """c x h of the module docstring, bf16: 12h + 4q + 4kv + 8i."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return 12 * self.hidden + 4 * q + 4 * kv + 8 * self.intermediate


def parameter_count(config: dict) -> int:
    """Weights of a dense decoder from its config.json numbers (tied embeddings counted once)."""
    return Architecture.from_config(config).params


def lora_parameters(arch: Architecture, rank: int, targets: list[str] | tuple[str, ...]) -> tuple[int, list[str]]:
    """(adapter parameters, target names that are not linear layers of this layout). `all-linear` is every linear
    layer of the decoder layers (peft leaves the LM head out)."""
    shapes = arch.linear_shapes()
    names = list(shapes) if "all-linear" in targets else [t for t in targets if t in shapes]
    unknown = [t for t in targets if t != "all-linear" and t not in shapes]
    return arch.layers * sum(rank * (shapes[n][0] + shapes[n][1]) for n in names), unknown


def lora_input_width(arch: Architecture, targets: list[str] | tuple[str, ...]) -> int:
    """Summed input widths of the adapted layers of one decoder layer (LoRA dropout copies each input)."""
    shapes = arch.linear_shapes()
    names = list(shapes) if "all-linear" in targets else [t for t in targets if t in shapes]
    return sum(shapes[n][0] for n in names)


def load_architecture(model_path: str, spec: str) -> Architecture:
    """From a local model directory's config.json, else the Hugging Face cache (never the network), else the
    table of known students; `spec` is what the user named (for messages)."""
    local = os.path.join(os.path.expanduser(model_path), "config.json")
    if os.path.isfile(local):
        return Architecture.from_config(_read_json(local), source=f"{local}")
    cached = cached_hub_file(model_path, "config.json")
    if cached:
        return Architecture.from_config(_read_json(cached), source=f"Hugging Face cache ({model_path})")
    known = KNOWN_MODELS.get(model_path) or KNOWN_MODELS.get(model_path.removesuffix("-Instruct"))
    if known:
        return Architecture.from_config(known, source=f"known sizes of {model_path.removesuffix('-Instruct')}")
    raise UserError(f"preflight cannot size model {spec!r}: no config.json here or in the Hugging Face cache, and not "
                    f"one of the known students ({', '.join(sorted(KNOWN_MODELS))}); give a local model directory")


def cached_hub_file(repo_id: str, filename: str) -> str | None:
    """A file of a Hub model from the local Hugging Face cache, or None (no network)."""
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import constants, try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, filename, cache_dir=constants.HF_HUB_CACHE)
    except Exception:  # noqa: BLE001 - an odd id or an unreadable cache: the model is simply not cached
        return None
    return found if isinstance(found, str) and os.path.isfile(found) else None


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a JSON object")
    if "hidden_size" not in config and isinstance(config.get("text_config"), dict):
        return config["text_config"]  # a multimodal model's language part
    return config


# ---------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Setup:
    """How a student is trained, as far as memory goes (see the module docstring)."""

    seq_len: int
    micro_batch: int = 1
    precision: str = "bf16"            # bf16 | fp16 | fp32: the weights' and activations' dtypes
    gradient_checkpointing: bool = True
    lora: bool = False
    load_in_4bit: bool = False
    lora_r: int = 16
    lora_targets: tuple[str, ...] = ("all-linear",)
    lora_dropout: float = 0.05
    optim: str = "adamw_torch"
    engine: str = "single"            # single | ddp | deepspeed | fsdp
    zero_stage: int = 0               # 0-3; FSDP full shard = 3
    offload_optimizer: bool = False
    offload_params: bool = False
    processes: int = 1                # GPUs over all machines
    machines: int = 1
    on_cpu: bool = False              # a one-process run on the CPU: no CUDA context; the RAM is the device


@dataclass
class Memory:
    gpu: dict[str, float] = field(default_factory=dict)    # part -> bytes on each GPU
    host: dict[str, float] = field(default_factory=dict)   # part -> bytes of each machine's RAM
    trainable: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def gpu_bytes(self) -> float:
        return sum(self.gpu.values())

    @property
    def host_bytes(self) -> float:
        return sum(self.host.values())


def _per_param_bytes(setup: Setup, weight_bytes: int) -> tuple[float, float, float]:
    """(weights, gradients, optimizer state) bytes per trainable parameter of a full fine-tune."""
    moment = 1 if "8bit" in setup.optim else weight_bytes
    if setup.engine == "deepspeed":  # fp32 master copy + two fp32 moments; fp32 weights are their own master
        return weight_bytes, weight_bytes, 12 if weight_bytes == 2 else 8
    if setup.engine == "fsdp":  # trainable weights upcast to fp32 by accelerate
        return 4, 4, 8
    gradients = weight_bytes * (2 if setup.engine == "ddp" else 1)  # DDP's buckets: a second gradient copy
    return weight_bytes, gradients, 2 * moment


def memory(arch: Architecture, setup: Setup) -> Memory:
    """Bytes per GPU and per machine's RAM for one training run (the module docstring gives every term)."""
    out = Memory()
    n, stage = max(setup.processes, 1), setup.zero_stage
    weight_bytes = 2 if setup.precision == "bf16" else 4
    params = arch.params
    if setup.lora:
        trainable, unknown = lora_parameters(arch, setup.lora_r, setup.lora_targets)
        if unknown:
            out.notes.append(f"LoRA targets not in a Llama/Qwen2 layer, not counted: {', '.join(unknown)}")
        frozen = (arch.linear_params * NF4_BYTES + (params - arch.linear_params) * weight_bytes
                  if setup.load_in_4bit else params * weight_bytes)
        weights, gradients, optimizer = frozen + 4 * trainable, 4.0 * trainable, 8.0 * trainable
    else:
        trainable = params
        per_weight, per_gradient, per_state = _per_param_bytes(setup, weight_bytes)
        weights, gradients, optimizer = per_weight * params, per_gradient * params, per_state * params
    out.trainable = trainable

    host_offloaded = 0.0
    if setup.engine == "fsdp" and setup.offload_params:  # FSDP's CPU offload moves all three
        host_offloaded, weights, gradients, optimizer = weights + gradients + optimizer, 0.0, 0.0, 0.0
    if setup.offload_optimizer:
        host_offloaded += optimizer + 4.0 * trainable  # the optimizer state and its fp32 gradients
        optimizer = gradients = 0.0
    if setup.offload_params and setup.engine == "deepspeed":
        host_offloaded += weights
        weights = 0.0
    sharded_weights = stage >= 3
    gathered = 0.0
    if sharded_weights:  # the layer computed, the one prefetched and the largest matrix, in 16 bits, plus
        # one layer's gradients before they are reduce-scattered (full fine-tune)
        layer_params = (params - arch.vocab * arch.hidden * (1 if arch.tied else 2)) / arch.layers
        layers_held = 2 if setup.lora else 3
        gathered = (layers_held * layer_params + arch.vocab * arch.hidden) * weight_bytes
    out.gpu["weights"] = (weights / n if sharded_weights else weights) + gathered
    out.gpu["gradients"] = gradients / n if stage >= 2 else gradients
    out.gpu["optimizer state"] = optimizer / n if stage >= 1 else optimizer

    activation_scale = 2 if setup.precision == "fp32" else 1
    tokens = setup.micro_batch * setup.seq_len
    layer = arch.activation_bytes_per_token_layer() * activation_scale
    if setup.lora and setup.lora_dropout > 0:  # a dropped-out copy (2 B) and a bool mask (1 B) of each input
        layer += 3 * lora_input_width(arch, setup.lora_targets) * activation_scale
    if setup.gradient_checkpointing:
        kept = tokens * arch.layers * arch.hidden * 2 * activation_scale + tokens * layer
    else:
        kept = tokens * arch.layers * layer
    out.gpu["activations"] = kept
    out.gpu["loss head"] = 2 * min(tokens, LOSS_TILE_TOKENS) * min(arch.vocab, LOSS_TILE_VOCAB) * 4
    rest = out.gpu_bytes
    if setup.on_cpu:
        out.gpu["allocator fragmentation"] = FRAGMENTATION * rest
        out.host["Python process"] = CPU_PROCESS_BYTES
        return out
    out.gpu["CUDA context + fragmentation"] = CONTEXT_BYTES + FRAGMENTATION * rest
    if host_offloaded:
        out.host["offloaded (pinned)"] = host_offloaded / max(setup.machines, 1) * PINNED_FACTOR
    out.host["OS and processes"] = HOST_BASE_BYTES
    return out
