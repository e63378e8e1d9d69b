"""Which precision a run trains in (`--precision auto`), and the dtype the student's weights load in.

bf16 always means mixed precision: the Trainer's bf16=True runs the forward under torch.autocast(bf16)
(accelerate wraps model.forward). On a CPU the weights stay fp32 (the master copy the optimizer updates);
on a GPU they load in bf16, as the GPU recipes are sized for.
"""

from __future__ import annotations

from pathlib import Path

# CPU flags (Linux /proc/cpuinfo names) of instructions that compute bf16 products natively. Without them
# oneDNN emulates bf16 on plain AVX-512 and autocast is slower than fp32.
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
