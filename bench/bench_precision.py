"""CPU training throughput of the demo model: fp32 vs bf16 autocast (fp32 master weights).

    python bench/bench_precision.py          # prints the rows (BENCH_PRECISION_ROUNDS=5 for more rounds)
    python bench/run.py --only precision     # the markdown table

What `distill train --precision bf16` does on a CPU: the bundled SmolLM2-135M-Instruct loaded in fp32,
full fine-tune, and the forward (loss included) run under torch.autocast("cpu", dtype=torch.bfloat16) -
what transformers' Trainer with bf16=True does there (accelerate wraps model.forward in that autocast) -
with the Trainer's defaults around it: fused AdamW, grad-norm clipping at 1.0, no gradient checkpointing.
Shapes are the demo's: batch 8 of 200-token sequences, the first 30 % masked as prompt; token ids are
random (throughput does not depend on them). The loop is ours rather than a Trainer's so that fp32 and bf16
steps can interleave on one model in one process: the machine may be shared, and interleaved rounds
(fp32 then bf16, then bf16 then fp32, ...) see the same background load. Each round times STEPS steps of
each precision after one untimed warm-up step per precision; figures are medians over the steps, with the
spread (min-max of the per-round medians) in the notes.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("BENCH_PRECISION_ROUNDS", "5"))
STEPS = int(os.environ.get("BENCH_PRECISION_STEPS", "1"))
BATCH, LENGTH, PROMPT_FRACTION = 8, 200, 0.3


def _batch(vocab_size: int, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(100, vocab_size - 1, (BATCH, LENGTH), generator=generator)
    labels = ids.clone()
    labels[:, : int(LENGTH * PROMPT_FRACTION)] = -100  # the prompt is masked, as `distill train` does
    return ids, labels


def measure(rounds: int = ROUNDS, steps: int = STEPS) -> dict:
    """Per-step seconds of each precision, interleaved, on the bundled model in this process."""
    import torch
    from transformers import AutoModelForCausalLM

    sys.path.insert(0, str(REPO))
    from distill.models.bundled import materialize
    from distill.stages.train.precision import cpu_bf16_features

    model = AutoModelForCausalLM.from_pretrained(str(materialize()), dtype=torch.float32, attn_implementation="sdpa")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, fused=True)  # the Trainer's default on torch >= 2.8
    ids, labels = _batch(model.config.vocab_size)

    def step(precision: str) -> float:
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
                    else contextlib.nullcontext())
        start, cpu_start = time.perf_counter(), time.process_time()
        with autocast:
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        cpu_seconds[precision].append(time.process_time() - cpu_start)
        return time.perf_counter() - start

    cpu_seconds = {"fp32": [], "bf16": []}  # CPU time of this process: less swayed by other jobs' load
    for precision in ("fp32", "bf16"):
        step(precision)  # warm-up: oneDNN primitive creation, allocator, optimizer state
    seconds = {"fp32": [], "bf16": []}
    round_medians = {"fp32": [], "bf16": []}
    for index in range(rounds):
        order = ("fp32", "bf16") if index % 2 == 0 else ("bf16", "fp32")
        for precision in order:
            times = [step(precision) for _ in range(steps)]
            seconds[precision] += times
            round_medians[precision].append(statistics.median(times))
    tokens = BATCH * LENGTH
    cpu_ratio = statistics.median(cpu_seconds["fp32"][1:]) / statistics.median(cpu_seconds["bf16"][1:])
    return {"tokens_per_step": tokens, "seconds": seconds, "round_medians": round_medians, "cpu_time_ratio": cpu_ratio,
            "threads": torch.get_num_threads(), "cpu_features": cpu_bf16_features(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def rows_from(result: dict) -> list[dict]:
    tokens = result["tokens_per_step"]
    rate = {p: tokens / statistics.median(result["seconds"][p]) for p in ("fp32", "bf16")}
    spread = {p: f"{tokens / max(m):.0f}-{tokens / min(m):.0f}" for p, m in result["round_medians"].items()}
    ratios = [f / b for f, b in zip(result["round_medians"]["fp32"], result["round_medians"]["bf16"], strict=True)]
    steps = len(result["seconds"]["fp32"])
    shape = (f"SmolLM2-135M full fine-tune, batch {BATCH} x {LENGTH} tokens, {steps} steps each in "
             f"{len(ratios)} interleaved rounds, cpu x{result['threads']} ({result['cpu_capability']}; "
             f"{', '.join(result['cpu_features']) or 'no bf16 instructions'})")
    return [
        {"benchmark": "train precision (CPU)", "metric": "fp32", "value": round(rate["fp32"], 1), "unit": "tokens/s",
         "notes": f"median; rounds {spread['fp32']}; {shape}"},
        {"benchmark": "train precision (CPU)", "metric": "bf16 autocast, fp32 master weights",
         "value": round(rate["bf16"], 1), "unit": "tokens/s", "notes": f"median; rounds {spread['bf16']}"},
        {"benchmark": "train precision (CPU)", "metric": "speed-up bf16 / fp32", "value": round(rate["bf16"] / rate["fp32"], 2),
         "unit": "x", "notes": f"wall clock; per-round ratios {min(ratios):.2f}-{max(ratios):.2f}, by process CPU "
                               f"time {result['cpu_time_ratio']:.2f}x; `--precision auto` picks bf16 on CPUs with "
                               "AVX-512 BF16 or AMX"},
    ]


def run() -> list[dict]:
    return rows_from(measure())


if __name__ == "__main__":
    result = measure()
    if "--raw" in sys.argv:
        print(json.dumps(result))
    for row in rows_from(result):
        print(json.dumps(row))
