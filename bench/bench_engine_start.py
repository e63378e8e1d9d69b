"""vLLM on CPU: engine start and decode speed, eager vs compiled, and the break-even run length.

    python bench/bench_engine_start.py      # or `python bench/run.py --only engine_start`

`distill` starts vLLM in eager mode on a CPU (``DISTILL_VLLM_COMPILE=1`` compiles; on a GPU vLLM's defaults
stand). This measures why, on the bundled SmolLM2-135M: each mode in a fresh process (a start includes the
model load and, compiled, torch.compile's graph capture), then the same generation (the demo's shape: 64
prompts x n=4, 96 tokens, T 0.7) timed after the start. Break-even: the completion tokens after which the
compiled engine's faster decoding has paid back its slower start,
``(start_compiled - start_eager) / (1/tps_eager - 1/tps_compiled)`` — or "never" when compiled decodes no
faster. Whole-process figures; run it on an idle machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROMPTS, N, MAX_TOKENS = 64, 4, 96

_CHILD = textwrap.dedent("""
    import json, sys, time
    if __name__ == "__main__":
        started = time.perf_counter()
        from distill.engines import EngineConfig, Request, SamplingConfig, make_engine
        from distill.models.bundled import materialize
        engine = make_engine(EngineConfig(engine="vllm", model=str(materialize()), seed=0, max_model_len=2048,
                                          enforce_eager=False))
        start_s = time.perf_counter() - started
        requests = [Request(key=str(i), messages=[{"role": "user", "content": f"What is {i} + {i % 7}? Think."}])
                    for i in range(int(sys.argv[1]))]
        sampling = SamplingConfig(n=int(sys.argv[2]), temperature=0.7, top_p=1.0, max_tokens=int(sys.argv[3]), seed=0)
        t0 = time.perf_counter()
        tokens = sum(s.completion_tokens for s in engine.generate(requests, sampling))
        decode_s = time.perf_counter() - t0
        engine.close()
        print("RESULT " + json.dumps({"start_s": start_s, "tokens": tokens, "decode_s": decode_s}))
""")


def _measure(compiled: bool) -> dict:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
           "DISTILL_VLLM_COMPILE": "1" if compiled else "0"}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(PROMPTS), str(N), str(MAX_TOKENS)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=1800)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"engine start failed ({'compiled' if compiled else 'eager'}): {out.stderr[-2000:]}")
    return json.loads(line[len("RESULT "):])


def run() -> list[dict]:
    eager, compiled = _measure(False), _measure(True)
    rates = {name: r["tokens"] / r["decode_s"] for name, r in (("eager", eager), ("compiled", compiled))}
    extra_start = compiled["start_s"] - eager["start_s"]
    per_token_saving = 1 / rates["eager"] - 1 / rates["compiled"]
    break_even = extra_start / per_token_saving if per_token_saving > 0 else None
    load = os.getloadavg()[0]
    shape = f"bundled SmolLM2-135M, {PROMPTS} prompts x n={N}, {MAX_TOKENS} tokens; load {load:.1f}"
    rows = []
    for name, result in (("eager", eager), ("compiled", compiled)):
        rows.append({"benchmark": f"vllm cpu engine [{name}]", "metric": "start (process + load + capture)",
                     "value": round(result["start_s"], 1), "unit": "s", "notes": shape})
        rows.append({"benchmark": f"vllm cpu engine [{name}]", "metric": "decode", "value": round(rates[name], 1),
                     "unit": "tok/s", "notes": f"{result['tokens']} tokens in {result['decode_s']:.1f} s"})
    rows.append({"benchmark": "vllm cpu engine", "metric": "compiled pays back after",
                 "value": round(break_even) if break_even is not None else "never", "unit": "tokens",
                 "notes": f"extra start {extra_start:.0f} s; the demo generates ~50k tokens"})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
