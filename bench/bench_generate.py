"""Throughput of `distill generate` against raw `LLM.chat` and transformers `generate`, length-skewed outputs.

    python bench/bench_generate.py          # or `make bench` (bench/run.py calls run())

One vLLM engine (the bundled SmolLM2-135M, CPU build here) serves both vLLM measurements, alternated
(raw, distill, raw, distill) so that load from elsewhere on the machine hits both alike:

- raw: ``LLM.chat(conversations, SamplingParams(n=4, ...))``, which returns when the whole batch is done;
- distill: ``distill.stages.generate.run`` on the same prompts and sampling parameters, given that engine:
  per-sample requests, every sample persisted (jsonl, flushed) the moment it finishes, then the
  artifact is built. Throughput is over generation time (the manifest's ``engine_seconds``);
  end-to-end adds building and committing the dataset.

The prompts make outputs length-skewed: three in four ask for one number (a few tokens), one in four
for a long story that runs into max_tokens. transformers ``generate`` (batched, left padding, the
same sampling) is the third line; it decodes every row until the longest one is done.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N, MAX_TOKENS, TEMPERATURE, TOP_P, SEED = 4, 256, 0.6, 0.95, 0
NUM_PROMPTS, REPEATS = 16, 2
DTYPE = "float32"  # the checkpoint's dtype; vLLM's "auto" would pick bfloat16 on CPU, transformers float32


def prompts() -> list[str]:
    out = []
    for i in range(NUM_PROMPTS):
        if i % 4 == 0:
            out.append(f"Write a very long and detailed story about a dragon number {i}, with many chapters.")
        else:
            out.append(f"What is {i} + {i}? Reply with just the number.")
    return out


def _raw_chat(engine, conversations) -> dict:
    from vllm import SamplingParams

    engine.reseed(SEED)
    params = SamplingParams(n=N, temperature=TEMPERATURE, top_p=TOP_P, max_tokens=MAX_TOKENS)
    started = time.perf_counter()
    outputs = engine._llm.chat(conversations, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    lengths = [len(c.token_ids) for o in outputs for c in o.outputs]
    return {"seconds": seconds, "tokens": sum(lengths), "lengths": lengths}


def _distill(engine, data_file: Path, repeat: int) -> dict:
    from distill.config import build
    from distill.stages.generate import GenerateConfig, run

    home = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    previous = os.environ.get("DISTILL_HOME")
    os.environ["DISTILL_HOME"] = str(home)
    cfg = build(GenerateConfig, {"teacher": "bundled", "dataset": str(data_file), "num_generations": N,
                                 "temperature": TEMPERATURE, "top_p": TOP_P, "max_tokens": MAX_TOKENS,
                                 "seed": SEED, "name": f"bench{repeat}", "progress": False, "dtype": DTYPE})
    try:
        started = time.perf_counter()
        artifact = run(cfg, engine=engine)
        wall = time.perf_counter() - started
        generation = artifact.manifest["generation"]
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if previous is None:
            os.environ.pop("DISTILL_HOME", None)
        else:
            os.environ["DISTILL_HOME"] = previous
    return {"seconds": generation["engine_seconds"], "tokens": generation["completion_tokens"], "wall": wall,
            "first": generation["runs"][0].get("first_sample_seconds")}


def _transformers_subprocess(model_dir: str) -> dict:
    """transformers in a fresh process: vLLM in this one has bound threads and set torch to 1 thread."""
    result = subprocess.run([sys.executable, __file__, "--transformers", model_dir], capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _transformers(model_dir: str, conversations) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(os.cpu_count() or 1)

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(SEED)
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=True, temperature=TEMPERATURE, top_p=TOP_P,
                             max_new_tokens=MAX_TOKENS, num_return_sequences=N, pad_token_id=tokenizer.pad_token_id)
    seconds = time.perf_counter() - started
    generated = out[:, batch["input_ids"].shape[1]:]
    lengths = []
    for row in generated.tolist():  # tokens up to and including the first eos
        eos = row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
        lengths.append(eos)
    return {"seconds": seconds, "tokens": sum(lengths), "lengths": lengths}


def run() -> list[dict]:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from distill.engines import EngineConfig, make_engine
    from distill.engines.chat import build_messages
    from distill.models.bundled import materialize

    model_dir = str(materialize())
    conversations = [build_messages(p) for p in prompts()]
    data_file = Path(tempfile.mkdtemp(prefix="bench-generate-data-")) / "prompts.jsonl"
    data_file.write_text("".join(json.dumps({"problem": p}) + "\n" for p in prompts()))
    engine = make_engine(EngineConfig(engine="vllm", model=model_dir, enforce_eager=True, seed=SEED,
                                      max_model_len=2048, dtype=DTYPE))
    raw, ours = [], []
    try:
        _raw_chat(engine, conversations[:2])  # warm-up
        for repeat in range(REPEATS):
            raw.append(_raw_chat(engine, conversations))
            _log(f"raw LLM.chat: {raw[-1]['tokens']} tokens in {raw[-1]['seconds']:.1f} s")
            ours.append(_distill(engine, data_file, repeat))
            _log(f"distill generate: {ours[-1]['tokens']} tokens in {ours[-1]['seconds']:.1f} s")
    finally:
        engine.close()
        shutil.rmtree(data_file.parent, ignore_errors=True)
    hf = _transformers_subprocess(model_dir)
    _log(f"transformers: {hf['tokens']} tokens in {hf['seconds']:.1f} s")

    def rate(runs, seconds_key="seconds"):
        return sum(r["tokens"] for r in runs) / sum(r[seconds_key] for r in runs)

    lengths = raw[0]["lengths"]
    skew = (f"{NUM_PROMPTS} prompts x n={N}, max_tokens {MAX_TOKENS}, T={TEMPERATURE}; "
            f"{sum(n >= MAX_TOKENS for n in lengths)}/{len(lengths)} samples hit max_tokens, median "
            f"{statistics.median(lengths):.0f} tokens")
    where = f"bundled SmolLM2-135M {DTYPE}, vllm-cpu, {os.cpu_count()} cores, {REPEATS} alternated repeats"
    raw_rate, our_rate, hf_rate = rate(raw), rate(ours), hf["tokens"] / hf["seconds"]
    return [
        {"benchmark": "generate", "metric": "raw LLM.chat", "value": round(raw_rate, 1), "unit": "tok/s",
         "notes": f"{skew}; {where}; tokens {[r['tokens'] for r in raw]}"},
        {"benchmark": "generate", "metric": "distill generate (generation time)", "value": round(our_rate, 1),
         "unit": "tok/s", "notes": f"same engine, prompts and sampling; each sample persisted as it finishes; "
                                   f"tokens {[r['tokens'] for r in ours]}"},
        {"benchmark": "generate", "metric": "distill generate / raw LLM.chat", "value": round(our_rate / raw_rate, 3),
         "unit": "x", "notes": "target >= 0.95"},
        {"benchmark": "generate", "metric": "distill generate end to end", "value": round(rate(ours, "wall"), 1),
         "unit": "tok/s", "notes": "incl. building, hashing and committing the artifact (engine already loaded)"},
        {"benchmark": "generate", "metric": "first sample on disk after", "value": round(ours[0]["first"] or 0, 2),
         "unit": "s", "notes": f"raw LLM.chat hands back nothing before {raw[0]['seconds']:.1f} s"},
        {"benchmark": "generate", "metric": "transformers generate", "value": round(hf_rate, 1), "unit": "tok/s",
         "notes": f"batched (left padding), same prompts/sampling, {hf['tokens']} tokens in {hf['seconds']:.1f} s; "
                  "earlier: vLLM CPU 159 vs transformers 89 tok/s (64 x 128 tokens, no skew)"},
        {"benchmark": "generate", "metric": "distill generate / transformers", "value": round(our_rate / hf_rate, 2),
         "unit": "x", "notes": "length-skewed outputs: transformers decodes every row to the longest"},
    ]


def _log(message: str) -> None:
    print(f"[bench_generate] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--transformers":
        from distill.engines.chat import build_messages

        measured = _transformers(sys.argv[2], [build_messages(p) for p in prompts()])
        print(json.dumps({k: measured[k] for k in ("seconds", "tokens")}))
        sys.exit(0)
    for row in run():
        print(f"{row['metric']:<40} {row['value']:>10} {row['unit']:<6} {row['notes']}", file=sys.stdout)
