"""Can the GPUs here (or planned ones) hold a training run, and how many GPU-hours will it take?

    distill preflight --recipe qwen-7b-qlora                        # the GPUs here: exit 0, or exit 2 and why
    distill preflight --recipe qwen-7b --gpu-memory-gib 80          # plan for the recipe's 8 GPUs of 80 GiB
    distill preflight --recipe qwen-7b --lora --num-gpus 1 --dataset filtered@latest --gpu-memory-gib 80
    distill train --recipe qwen-7b --dataset filtered@latest --dry-run      # the same estimate, nothing trained

It takes every `distill train` option (recipe, flags, --set), so it sizes exactly the run that command would
start: full fine-tune, LoRA or QLoRA; the accelerate config's strategy (one process, DDP, DeepSpeed ZeRO-1/2/3
with or without CPU offload, FSDP) over --num-gpus x --num-machines GPUs. One GPU without offload trains in
one process whatever the accelerate config says (as `launch.should_relaunch` decides). The memory model, its
constants and their sources are in preflight_memory.py. The model's numbers come from its config.json (a
local directory, a checkpoint, `bundled`, or the Hugging Face cache; never the network), else from a table of
known students by Hub id.

Compute: tokens x epochs x F x P FLOP, with F = 6 for a full fine-tune (forward 2, backward 4 per parameter
and token: Kaplan et al. 2020) and F = 4 under LoRA / QLoRA (the frozen weights need no weight gradient), plus
6 per adapter parameter; the attention's own FLOPs are left out. Divided by the GPUs' peak dense bf16 FLOP/s
(vendor data sheets) x an assumed model FLOPs utilisation of 40 % (Llama 3 reports 38-43 % in pre-training,
Dubey et al. 2024, table 4; long-sequence fine-tunes, CPU offload and QLoRA's dequantization run lower).
GPU-hours are given in H100 (SXM, 989 TFLOP/s) hours. Tokens: those of the training rows of --dataset, as
`distill train` would build them (mixture weights, held-out validation rows, --limit, rows longer than
--max-length dropped or cut), counted with the model's tokenizer and chat template when it is on this
machine (a sample of 2,000 rows is tokenized when there are more, the rest scaled by characters), else
characters / 4; the report says which. Without --dataset the hours are per million tokens, except for a
recipe that reproduces a published run (openthoughts-7b), whose published GPU-hours are given.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
from collections import Counter
from dataclasses import dataclass, field

from distill.errors import UserError
from distill.stages.train.preflight_memory import GIB, Architecture, Setup, load_architecture, memory

MFU = 0.4
REFERENCE_GPU, REFERENCE_TFLOPS = "H100", 989.0
# Peak dense bf16 tensor FLOP/s (no sparsity), TFLOP/s, from the vendor data sheets; first name match wins.
PEAK_BF16_TFLOPS = (("GH200", 989.0), ("H200", 989.0), ("H100 PCIE", 756.0), ("H100", 989.0), ("B200", 2250.0),
                    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A6000", 155.0), ("4090", 165.0))
UNKNOWN_GPU_TFLOPS = 312.0  # an unlisted GPU is assumed A100-class
SAMPLE_ROWS = 2000
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class PublishedRun:
    model: str
    h100_hours: float
    epochs: float
    text: str


# Runs a shipped recipe reproduces (open-thoughts/OpenThinker-7B model card: "four 8xH100 nodes ... 20 hours",
# 3 epochs of OpenThoughts-114k).
PUBLISHED_RUNS = {"openthoughts-7b": PublishedRun("Qwen/Qwen2.5-7B-Instruct", 4 * 8 * 20, 3,
                                                  "published: 4 nodes x 8 H100 for ~20 h")}


@dataclass
class TokenCount:
    rows: int
    tokens: int        # over the rows, after --max-length (dropped or cut)
    longest: int       # longest row kept, in tokens
    too_long: int      # rows over --max-length (dropped, or cut with --truncate)
    how: str           # how the tokens were counted


@dataclass
class Hardware:
    gpus: list[tuple[str, float]]  # (name, GiB)
    host_gib: float
    planned: bool = False          # from --gpu-memory-gib, not this machine


@dataclass
class Estimate:
    model: str
    params: int
    seq_len: int
    offload: bool
    gpu_gib: float                 # needed per GPU
    host_gib: float                # needed per machine
    h100_hours: float | None       # None: no token count (see h100_hours_per_million)
    trainable: int = 0
    method: str = "full fine-tune"
    strategy: str = ""
    gpus_per_machine: int = 1
    machines: int = 1
    parts: dict[str, float] = field(default_factory=dict)       # GiB per GPU
    host_parts: dict[str, float] = field(default_factory=dict)  # GiB per machine
    flops_per_token: float = 0.0
    epochs: float = 1.0
    tokens: TokenCount | None = None
    hours_source: str = ""
    arch_source: str = ""
    setup_text: str = ""
    on_cpu: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def h100_hours_per_million(self) -> float:
        return gpu_hours(1e6 * self.flops_per_token)


def gpu_hours(flops: float, tflops: float = REFERENCE_TFLOPS) -> float:
    return flops / (tflops * 1e12 * MFU) / 3600


def peak_tflops(gpu_name: str) -> float:
    upper = gpu_name.upper()
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in upper), UNKNOWN_GPU_TFLOPS)


# ---------------------------------------------------------------------------- what the run is


def strategy_of(cfg) -> dict:
    """engine (single | ddp | deepspeed | fsdp), zero_stage and offloads of the run `distill train` would start."""
    import yaml

    from distill.stages.train.launch import accelerate_config_path, offloads

    path = accelerate_config_path(str(cfg.accelerate_config))
    offload = offloads(path)
    processes = cfg.num_gpus * cfg.num_machines
    if processes == 1 and not offload:  # no relaunch: the accelerate config is not used
        return dict(engine="single", zero_stage=0, offload_optimizer=False, offload_params=False)
    settings = yaml.safe_load(path.read_text()) or {}  # offloads() has already refused an unreadable file
    kind = str(settings.get("distributed_type", "")).upper()
    if kind == "DEEPSPEED":
        ds = settings.get("deepspeed_config") or {}
        return dict(engine="deepspeed", zero_stage=int(ds.get("zero_stage", 0)),
                    offload_optimizer=ds.get("offload_optimizer_device") not in (None, "none"),
                    offload_params=ds.get("offload_param_device") not in (None, "none"))
    if kind == "FSDP":
        fsdp = settings.get("fsdp_config") or {}
        sharding = str(fsdp.get("fsdp_sharding_strategy", "FULL_SHARD")).upper()
        stage = 0 if "NO_SHARD" in sharding else 2 if ("GRAD_OP" in sharding or
                                                        fsdp.get("fsdp_reshard_after_forward") is False) else 3
        return dict(engine="fsdp", zero_stage=stage, offload_optimizer=False,
                    offload_params=bool(fsdp.get("fsdp_offload_params")))
    return dict(engine="ddp", zero_stage=0, offload_optimizer=False, offload_params=False)


def strategy_text(setup: Setup) -> str:
    gpus = f"{setup.processes} GPU{'s' if setup.processes > 1 else ''}"
    if setup.engine == "single":
        return "one GPU, no sharding"
    if setup.engine == "ddp":
        return f"DDP over {gpus} (a full copy on each)"
    name = f"DeepSpeed ZeRO-{setup.zero_stage}" if setup.engine == "deepspeed" else (
        "FSDP full shard" if setup.zero_stage == 3 else f"FSDP (stage {setup.zero_stage})")
    offloaded = [what for what, on in (("optimizer", setup.offload_optimizer), ("parameters", setup.offload_params))
                 if on]
    return f"{name} over {gpus}" + (f" + CPU offload ({', '.join(offloaded)})" if offloaded else "")


def method_text(setup: Setup) -> str:
    if not setup.lora:
        return "full fine-tune"
    return f"{'QLoRA (NF4)' if setup.load_in_4bit else 'LoRA'} r={setup.lora_r}"


def make_setup(cfg, seq_len: int, precision: str, strategy: dict, on_cpu: bool = False) -> Setup:
    return Setup(on_cpu=on_cpu, seq_len=seq_len, micro_batch=cfg.per_device_train_batch_size, precision=precision,
                 gradient_checkpointing=cfg.gradient_checkpointing, lora=cfg.lora or cfg.load_in_4bit,
                 load_in_4bit=cfg.load_in_4bit, lora_r=cfg.lora_r, lora_targets=tuple(cfg.lora_target_modules),
                 lora_dropout=cfg.lora_dropout, optim=cfg.optim, processes=cfg.num_gpus * cfg.num_machines,
                 machines=cfg.num_machines, **strategy)


def model_path(spec: str) -> str:
    """Where the student's files are (a directory or a Hub id); a LoRA checkpoint is sized by its base."""
    from distill import models

    return models.resolve(spec, adapters=True).path


# ---------------------------------------------------------------------------- the estimate


def estimate_config(cfg, *, tokens: TokenCount | None = None, on_cpu: bool = False) -> Estimate:
    """Memory and compute of the run a validated TrainConfig describes."""
    path = model_path(cfg.model)
    arch = load_architecture(path, cfg.model)
    strategy = strategy_of(cfg)
    precision = ("fp32" if on_cpu else "bf16") if cfg.precision == "auto" else cfg.precision
    # the longest row decides the peak; packing fills every row to --max-length
    seq_len = cfg.max_length if tokens is None or cfg.packing else max(min(tokens.longest, cfg.max_length), 1)
    setup = make_setup(cfg, seq_len, precision, strategy, on_cpu)
    est = _estimate(cfg.model, arch, setup, epochs=cfg.num_train_epochs, tokens=tokens, on_cpu=on_cpu)
    if tokens is not None and cfg.max_steps > 0 and tokens.rows:
        global_batch = cfg.global_batch_size or (cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
                                                 * setup.processes)
        capped = cfg.max_steps * global_batch / tokens.rows
        if capped < est.epochs:
            est.epochs = capped
            est.notes.append(f"--max-steps {cfg.max_steps} x {global_batch} rows stops after {capped:.2g} epochs")
    published = PUBLISHED_RUNS.get(str(cfg.recipe))
    published = published if published and published.model == cfg.model else None
    if tokens is not None:
        est.h100_hours = gpu_hours(tokens.tokens * est.epochs * est.flops_per_token)
        est.hours_source = f"{tokens.tokens * est.epochs:,.0f} tokens at {MFU:.0%} MFU"
        if published:
            est.notes.append(f"the run recipe {cfg.recipe} reproduces took {published.h100_hours:,.0f} H100 "
                             f"GPU-hours for {published.epochs:g} epochs ({published.text})")
    elif published:
        est.h100_hours = published.h100_hours * est.epochs / published.epochs
        est.hours_source = published.text
    if cfg.method != "sft":
        est.notes.append(f"--method {cfg.method}: sized as SFT; its rollouts, teacher or reference model are not "
                         "modelled")
    if setup.offload_optimizer or setup.offload_params:
        est.notes.append("CPU offload runs well below the assumed MFU: expect several times longer")
    return est


def _estimate(model: str, arch: Architecture, setup: Setup, *, epochs: float = 1.0, tokens: TokenCount | None = None,
              on_cpu: bool = False) -> Estimate:
    used = memory(arch, setup)
    factor = 4 if setup.lora else 6
    flops_per_token = factor * arch.params + (6 * used.trainable if setup.lora else 0)
    checkpointing = "gradient checkpointing" if setup.gradient_checkpointing else "no gradient checkpointing"
    return Estimate(
        model=model, params=arch.params, seq_len=setup.seq_len,
        offload=setup.offload_optimizer or setup.offload_params, gpu_gib=used.gpu_bytes / GIB,
        host_gib=used.host_bytes / GIB, h100_hours=None, trainable=used.trainable, method=method_text(setup),
        strategy="the CPU" if on_cpu else strategy_text(setup),
        gpus_per_machine=max(setup.processes // max(setup.machines, 1), 1), machines=setup.machines,
        parts={k: v / GIB for k, v in used.gpu.items()}, host_parts={k: v / GIB for k, v in used.host.items()},
        flops_per_token=flops_per_token, epochs=epochs, tokens=tokens, arch_source=arch.source,
        setup_text=f"{setup.seq_len:,} tokens x micro-batch {setup.micro_batch}, {checkpointing}, {setup.precision}",
        on_cpu=on_cpu, notes=list(used.notes))


def estimate(model: str, seq_len: int, *, offload: bool = True, num_gpus: int = 1, zero_stage: int = 3,
             lora: bool = False, load_in_4bit: bool = False, lora_r: int = 16, precision: str = "bf16") -> Estimate:
    """A model at one sequence length, sized directly (defaults: a full fine-tune under DeepSpeed ZeRO-3 with
    CPU offload, micro-batch 1, gradient checkpointing, bf16: the openthoughts-7b layout)."""
    arch = load_architecture(model_path(model), model)
    setup = Setup(seq_len=seq_len, precision=precision, lora=lora or load_in_4bit, load_in_4bit=load_in_4bit,
                  lora_r=lora_r, engine="deepspeed", zero_stage=zero_stage, offload_optimizer=offload,
                  offload_params=offload and zero_stage == 3, processes=num_gpus)
    return _estimate(model, arch, setup)


def recipe_estimate(recipe: dict, num_gpus: int | None = None) -> Estimate:
    """The estimate of a `distill train` recipe mapping (`recipes.load_recipe`); num_gpus overrides its own."""
    from distill.config import build
    from distill.stages.train.config import TrainConfig

    cfg = build(TrainConfig, recipe, {"num_gpus": num_gpus} if num_gpus else {})
    return estimate_config(cfg)


# ---------------------------------------------------------------------------- the dataset's tokens


def count_tokens(cfg, path: str) -> TokenCount:
    """The training rows `distill train` would build from cfg.dataset, in tokens (see the module docstring)."""
    conversations = _training_conversations(cfg)
    chars = [sum(len(m["content"]) for m in messages) for messages in conversations]
    tokenizer, why_not = _local_tokenizer(path)
    if tokenizer is None:
        lengths = [math.ceil(c / CHARS_PER_TOKEN) for c in chars]
        how = f"characters / {CHARS_PER_TOKEN} ({why_not})"
    else:
        picked = list(range(len(conversations)))
        if len(picked) > SAMPLE_ROWS:
            picked = sorted(random.Random(cfg.seed).sample(picked, SAMPLE_ROWS))
        counted = dict(zip(picked, _tokenize(tokenizer, [conversations[i] for i in picked]), strict=True))
        if len(counted) == len(conversations):
            lengths, how = [counted[i] for i in range(len(conversations))], f"tokenizer of {cfg.model}"
        else:
            ratio = sum(counted.values()) / max(sum(chars[i] for i in counted), 1)
            lengths = [counted[i] if i in counted else math.ceil(c * ratio) for i, c in enumerate(chars)]
            how = (f"tokenizer of {cfg.model} on {len(counted):,} sampled rows ({ratio:.3f} tokens per character), "
                   "the rest scaled by characters")
    too_long = sum(1 for n in lengths if n > cfg.max_length)
    kept = [min(n, cfg.max_length) for n in lengths] if cfg.truncate else [n for n in lengths if n <= cfg.max_length]
    return TokenCount(rows=len(kept), tokens=sum(kept), longest=max(kept, default=0), too_long=too_long, how=how)


def _training_conversations(cfg) -> list[list[dict]]:
    import datasets

    from distill.stages.train import data

    caching, bars = datasets.is_caching_enabled(), datasets.is_progress_bar_enabled()
    datasets.disable_caching()  # never write cache files into the input artifacts (as `distill train`)
    datasets.disable_progress_bars()
    try:
        inputs = data.load_inputs(cfg.dataset, cfg.split, cfg)
        conversation = next((i.conversation for i in inputs if i.conversation), None) or {}
        system = cfg.system_prompt if cfg.system_prompt is not None else conversation.get("system_prompt")
        template = cfg.prompt_template if cfg.prompt_template is not None else conversation.get("prompt_template")
        train, _, _ = data.build_conversations(inputs, cfg, system, template)
        return list(train["messages"])
    finally:
        if caching:
            datasets.enable_caching()
        if bars:
            datasets.enable_progress_bars()


def _local_tokenizer(path: str):
    """(tokenizer, None) from a local directory or the Hugging Face cache, else (None, why): never the network."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path, local_files_only=True), None
    except Exception as exc:  # noqa: BLE001 - any failure means "not here": fall back to characters
        return None, f"no tokenizer of {path} on this machine: {type(exc).__name__}"


def _tokenize(tokenizer, conversations: list[list[dict]]) -> list[int]:
    texts = []
    for messages in conversations:
        try:
            texts.append(tokenizer.apply_chat_template(messages, tokenize=False))
        except Exception:  # noqa: BLE001 - no template, or one that refuses these roles: the text alone
            texts.append("\n".join(m["content"] for m in messages))
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


# ---------------------------------------------------------------------------- the GPUs and the verdict


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


def _hours(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}" if value >= 0.1 else f"{value:.2g}"


def hours_text(est: Estimate) -> str:
    if est.h100_hours is None:
        return (f"~{_hours(est.h100_hours_per_million)} H100 GPU-hours per million training tokens at {MFU:.0%} "
                "MFU (no --dataset given: pass one to count its tokens)")
    return (f"estimated {_hours(est.h100_hours)} H100 GPU-hours ({est.hours_source}; "
            f"~{_hours(est.h100_hours / 8)} h on one 8-GPU H100 node)")


def check(est: Estimate, hw: Hardware) -> tuple[bool, str]:
    """(fits, one-paragraph message): what is needed, what is here (or planned), and the GPU-hours."""
    if est.on_cpu:
        need = f"needs >= {math.ceil(est.gpu_gib + est.host_gib)} GiB RAM"
    else:
        need = (f"needs GPUs with >= {math.ceil(est.gpu_gib)} GiB each"
                + (f" and >= {math.ceil(est.host_gib)} GiB host RAM" if est.offload else ""))
    need = (f"{est.model} ({est.params / 1e9:.1f}B params, {est.method} at {est.seq_len:,} tokens, {est.strategy}) "
            f"{need}")
    hours = hours_text(est)
    if est.on_cpu:  # the device memory is the RAM
        have = f"{hw.host_gib:.0f} GiB RAM"
        if hw.host_gib < est.gpu_gib + est.host_gib:
            return False, f"no CUDA GPU here and too little RAM for the CPU ({have}): {need}; {hours}"
        return True, f"no CUDA GPU here: trains on the CPU, {have}: fits. {hours}"
    if not hw.gpus:
        return False, f"no CUDA GPU here: {need}; {hours}"
    small = Counter(f"{name} {gib:.0f} GiB" for name, gib in hw.gpus if gib < est.gpu_gib)
    if small:
        have = ", ".join(f"{count} x {gpu}" for gpu, count in small.items())
        return False, f"GPU memory too small ({have}): {need}; {hours}"
    if len(hw.gpus) < est.gpus_per_machine:
        return False, (f"too few GPUs ({len(hw.gpus)} here, the run uses {est.gpus_per_machine} per machine; "
                       f"--num-gpus {len(hw.gpus)} sizes it for them): {need}; {hours}")
    if est.offload and hw.host_gib < est.host_gib:
        return False, f"host RAM too small ({hw.host_gib:.0f} GiB): {need}; {hours}"
    used = hw.gpus[: est.gpus_per_machine]
    if hw.planned:
        return True, f"{len(used)} x {used[0][1]:g} GiB GPU{'s' if len(used) > 1 else ''} (planned): fits. {hours}"
    speed = sum(peak_tflops(name) for name, _ in used) * est.machines / REFERENCE_TFLOPS
    per = "" if est.h100_hours is not None else " per million tokens"
    reference = est.h100_hours if est.h100_hours is not None else est.h100_hours_per_million
    return True, (f"{len(used)} x {used[0][0]} ({used[0][1]:.0f} GiB), {hw.host_gib:.0f} GiB RAM: fits. {hours}; "
                  f"here about {_hours(reference / speed)} h wall-clock{per}")


def render(est: Estimate) -> str:
    """The short table `distill preflight` prints."""
    trainable = ("every weight trained" if est.trainable == est.params else
                 f"{est.trainable / 1e6:,.1f}M trainable ({est.trainable / est.params:.1%})")
    lines = [f"{est.model}: {est.params / 1e9:.2f}B params ({est.arch_source}); {est.method}, {trainable}",
             f"  on {est.strategy}; {est.setup_text}",
             f"  {'memory (RAM)' if est.on_cpu else 'memory per GPU':<38}{'GiB':>8}"]
    lines += [f"  {part:<38}{gib:>8.2f}" for part, gib in est.parts.items()]
    lines.append(f"  {'total':<38}{est.gpu_gib:>8.2f}")
    lines += [f"  {'host RAM per machine: ' + part:<38}{gib:>8.2f}" for part, gib in est.host_parts.items()]
    if est.tokens is not None:
        t = est.tokens
        long_rows = f", {t.too_long:,} over --max-length" if t.too_long else ""
        lines.append(f"  tokens: {t.tokens:,} in {t.rows:,} rows (longest {t.longest:,}{long_rows}; {t.how}) "
                     f"x {est.epochs:g} epochs")
    lines.append(f"  compute: {est.flops_per_token / est.params:.2g} x {est.params / 1e9:.2f}B FLOP per token = "
                 f"{_hours(est.h100_hours_per_million)} H100 GPU-hours per million tokens ({MFU:.0%} MFU of "
                 f"{REFERENCE_TFLOPS:.0f} TFLOP/s bf16)")
    lines += [f"  note: {note}" for note in est.notes]
    return "\n".join(lines)


@dataclass
class Report:
    fits: bool
    table: str
    verdict: str
    estimate: Estimate


def report(cfg, *, count_dataset: bool, gpu_memory_gib: float | None = None,
           host_memory_gib: float | None = None, hardware: Hardware | None = None) -> Report:
    """The estimate of the run `cfg` describes, against the GPUs here or --gpu-memory-gib ones."""
    for flag, value in (("--gpu-memory-gib", gpu_memory_gib), ("--host-memory-gib", host_memory_gib)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UserError(f"{flag} must be a positive number of GiB (got {value})")
    hw = hardware or detect_hardware()
    if gpu_memory_gib is not None:
        hw = Hardware(gpus=[("planned GPU", gpu_memory_gib)] * cfg.num_gpus, host_gib=host_memory_gib or hw.host_gib,
                      planned=True)
    elif host_memory_gib is not None:
        hw = Hardware(gpus=hw.gpus, host_gib=host_memory_gib, planned=hw.planned)
    # no GPU, nothing planned: a one-process fp32 run (e.g. smol-demo) trains on the CPU
    on_cpu = (not hw.gpus and cfg.num_gpus * cfg.num_machines == 1 and not cfg.load_in_4bit
              and cfg.precision in ("auto", "fp32") and strategy_of(cfg)["engine"] == "single")
    tokens = None
    if count_dataset:
        if cfg.method == "sft":
            tokens = count_tokens(cfg, model_path(cfg.model))
    est = estimate_config(cfg, tokens=tokens, on_cpu=on_cpu)
    if count_dataset and cfg.method != "sft":
        est.notes.append(f"--method {cfg.method} samples its own completions: dataset tokens not counted")
    fits, verdict = check(est, hw)
    return Report(fits=fits, table=render(est), verdict=verdict, estimate=est)
