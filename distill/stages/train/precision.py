"""Which precision a run trains in (`--precision auto`), and the dtype the student's weights load in.

bf16 always means mixed precision: the Trainer's bf16=True runs the forward under torch.autocast(bf16)
(accelerate wraps model.forward). On a CPU the weights stay fp32 (the master copy the optimizer updates);
on a GPU they load in bf16, as the GPU recipes are sized for.
"""

from __future__ import annotations

from pathlib import Path

# CPU flags (Linux /proc/cpuinfo names) of instructions that compute bf16 products natively. Without them
# oneDNN emulates bf16 by converting to fp32, so autocast could only add casts (not measured).
# Measured with bench/bench_precision.py (SmolLM2-135M full fine-tune, batch 8 x 200 tokens, fp32 and bf16
# steps interleaved) on the project's 2-core AMD EPYC with avx512_bf16, shared with other jobs, four runs:
# bf16 autocast / fp32 tokens/s = 2.66x (quiet: 7.3-7.8 s vs 2.6-3.1 s a step), 2.2x, 1.53x and 1.31x (load
# average 11 on 2 cores) by median; by process CPU time 2.60x and 1.61x. A batch's loss agrees within 0.1 %.
# Not measured: ARM's bf16 (Graviton 3, Apple M2+), so those stay fp32.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The CPU_BF16_FLAGS this CPU has ([] where /proc/cpuinfo is missing: macOS, Windows)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return [flag for flag in CPU_BF16_FLAGS if flag in flags]


def choose(requested: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """{"precision": bf16 | fp16 | fp32, "reason": a short line for the log and the manifest}."""
    if requested != "auto":
        return {"precision": requested, "reason": f"--precision {requested}"}
    import torch

    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return {"precision": "bf16", "reason": f"auto: {torch.cuda.get_device_name()} supports bf16"}
        return {"precision": "fp32", "reason": f"auto: {torch.cuda.get_device_name()} has no bf16"}
    features = cpu_bf16_features(cpuinfo)
    if features:
        return {"precision": "bf16", "reason": f"auto: CPU with {' + '.join(features)} (bf16 autocast, fp32 "
                                               "weights; measured faster than fp32, bench/bench_precision.py)"}
    return {"precision": "fp32", "reason": "auto: CPU without AVX-512 BF16 or AMX (bf16 would be emulated)"}


def load_dtype(precision: str, on_gpu: bool | None = None):
    """The dtype to load weights in: bf16 on a GPU for --precision bf16, fp32 otherwise (fp16 runs keep fp32
    master weights: the Trainer's fp16 grad scaler refuses fp16 parameters)."""
    import torch

    if on_gpu is None:
        on_gpu = torch.cuda.is_available()
    return torch.bfloat16 if precision == "bf16" and on_gpu else torch.float32


def trainer_args(precision: str) -> dict:
    """The TrainingArguments that select the precision. On a machine without a GPU, bf16 also needs
    use_cpu=True: transformers refuses bf16=True there otherwise ("Your setup doesn't support bf16/gpu"),
    and with it the Trainer (through accelerate) runs the forward under torch.autocast("cpu", bfloat16)."""
    import torch

    no_gpu = not torch.cuda.is_available() and not torch.backends.mps.is_available()
    args = {"bf16": precision == "bf16", "fp16": precision == "fp16"}
    return args | {"use_cpu": True} if precision == "bf16" and no_gpu else args
