"""Training throughput: packed (best-fit decreasing, `--packing`) vs padded batches on length-skewed traces.

    python bench/bench_train.py             # prints the rows (BENCH_TRAIN_N=256 for more traces)
    python bench/run.py --only train        # the markdown table

Traces: token sequences whose lengths follow a log-normal law clipped to [32, 1024] (median ~135): most
short, a long tail, like filtered reasoning traces; ~30% of each is prompt (masked). Student: a 4-layer
Llama-shaped model (hidden 256, SmolLM2's 49k vocabulary), random weights, fp32, SDPA attention. Both runs
train one epoch over the same traces with TRL's SFTTrainer as `distill train` sets it up: padded = 8
traces per batch padded to the longest; packed = rows of 1,024 tokens, each trace attending only to itself.
Throughput counts real (non-pad) tokens. Each configuration runs in its own process, so the peak RSS
(CPU) or peak CUDA memory is its own.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
N_TRACES = int(os.environ.get("BENCH_TRAIN_N", "64"))
PACK_LENGTH = 1024
PADDED_BATCH = 8


def traces(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = int(min(1024, max(32, rng.lognormvariate(4.9, 0.75))))
        prompt = max(8, int(length * 0.3))
        ids = [rng.randrange(100, 40000) for _ in range(length - 1)] + [2]  # ends on <|im_end|>
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return rows


def _model_dir(root: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(REPO))
    from distill.models.bundled import materialize

    tokenizer = AutoTokenizer.from_pretrained(materialize())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(root / "model")
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.save_pretrained(root / "model")
    return root / "model"


def measure(mode: str, model_dir: str) -> dict:
    """One epoch in this process; returns throughput and peak memory."""
    import resource

    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = traces(N_TRACES)
    real_tokens = sum(len(r["input_ids"]) for r in rows)
    packed = mode == "packed"
    args = SFTConfig(output_dir=tempfile.mkdtemp(), num_train_epochs=1, learning_rate=1e-4, report_to=[],
                     per_device_train_batch_size=1 if packed else PADDED_BATCH, packing=packed,
                     packing_strategy="bfd", max_length=PACK_LENGTH, bf16=torch.cuda.is_available(),
                     gradient_checkpointing=False, save_strategy="no", logging_steps=1000, disable_tqdm=True,
                     seed=0, data_seed=0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    trainer = SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=AutoTokenizer.from_pretrained(model_dir))
    positions = [0]  # token positions the model computes, padding included: counted on the real batches
    collate = trainer.data_collator

    def counting(examples):
        batch = collate(examples)
        positions[0] += batch["input_ids"].numel()
        return batch

    trainer.data_collator = counting
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"mode": mode, "seconds": seconds, "real_tokens": real_tokens, "positions": positions[0],
            "steps": trainer.state.global_step, "tokens_per_s": real_tokens / seconds, "peak_mb": peak,
            "device": "cuda" if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}"}


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(_model_dir(Path(tmp)))
        results = {}
        for mode in ("padded", "packed"):
            out = subprocess.run([sys.executable, __file__, "--measure", mode, model_dir], capture_output=True,
                                 text=True, cwd=str(REPO), check=True)
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    padded, packed = results["padded"], results["packed"]
    lengths = sorted(len(r["input_ids"]) for r in traces(N_TRACES))
    shape = (f"{N_TRACES} traces, {padded['real_tokens']} tokens, length median {lengths[len(lengths) // 2]} / "
             f"max {lengths[-1]}; 4-layer 256-wide Llama (49k vocab), {padded['device']}")
    waste = 1 - padded["real_tokens"] / padded["positions"]
    memory_unit = "MiB CUDA peak" if padded["device"] == "cuda" else "MiB peak RSS"
    return [
        {"benchmark": "train packing", "metric": "padded batches", "value": round(padded["tokens_per_s"], 1),
         "unit": "tokens/s", "notes": f"batch {PADDED_BATCH}, {padded['steps']} steps, {waste:.0%} of the computed "
                                      f"positions are padding; {shape}"},
        {"benchmark": "train packing", "metric": "packed (bfd)", "value": round(packed["tokens_per_s"], 1),
         "unit": "tokens/s", "notes": f"rows of {PACK_LENGTH} tokens, {packed['steps']} steps, no padding"},
        {"benchmark": "train packing", "metric": "speed-up packed / padded",
         "value": round(packed["tokens_per_s"] / padded["tokens_per_s"], 2), "unit": "x", "notes": "target >= 1.5x"},
        {"benchmark": "train packing", "metric": "peak memory padded", "value": round(padded["peak_mb"]),
         "unit": memory_unit, "notes": f"longest padded batch {PADDED_BATCH} x {lengths[-1]} positions"},
        {"benchmark": "train packing", "metric": "peak memory packed", "value": round(packed["peak_mb"]),
         "unit": memory_unit, "notes": f"every row {PACK_LENGTH} positions"},
    ]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        sys.path.insert(0, str(REPO))
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
    else:
        for row in run():
            print(json.dumps(row))
