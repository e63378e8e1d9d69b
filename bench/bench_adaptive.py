"""Adaptive (`--until-verified`) against fixed-n sampling: verified rows per token spent, same teacher and problems.

    python bench/bench_adaptive.py          # prints the rows; BENCH_ADAPTIVE_PROMPTS=200 for more problems
    python bench/run.py --only adaptive     # the markdown table

The demo's teacher (the bundled SmolLM2-135M with data/demo/few_shot.json, T 0.7, top-p 1.0, 96 max tokens, as
scripts/demo.py runs it) on the first problems of data/demo/train.jsonl, one vLLM engine for both arms:

- fixed: ``-n 4`` (the demo's setting);
- adaptive: ``-n 2 --until-verified 2 --max-samples 8`` (the demo filter keeps at most 2 rows per prompt).

Both arms are graded with the one grader, the same way (a row *verifies*: complete, well-formed, correct;
standard extraction): for fixed-n the rows are graded here, for adaptive the run's own ``verified`` column
is used. The GPU-hour proxy is tokens: completion tokens spent per verified row (all verified rows, and those
a ``--max-per-prompt 2`` filter can keep), then prompts with at least one verified row (what the student can
learn from). Generation seconds are reported too, but on a shared CPU they move with the load (given).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA, FEW_SHOT = REPO / "data" / "demo" / "train.jsonl", REPO / "data" / "demo" / "few_shot.json"
NUM_PROMPTS = int(os.environ.get("BENCH_ADAPTIVE_PROMPTS", "48"))
SAMPLING = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 96, "seed": 0}
FIXED = {"num_generations": 4}
ADAPTIVE = {"num_generations": 2, "until_verified": 2, "max_samples": 8}
KEEP_PER_PROMPT = 2  # the demo filter's --max-per-prompt


def _generate(engine, arm: dict, name: str) -> dict:
    """One `distill generate` run (the stage's own code, given the open engine) -> its rows and manifest."""
    from distill.config import build
    from distill.stages.generate import GenerateConfig, run

    home = Path(tempfile.mkdtemp(prefix="bench-adaptive-"))
    previous = os.environ.get("DISTILL_HOME")
    os.environ["DISTILL_HOME"] = str(home)
    cfg = build(GenerateConfig, {"teacher": "bundled", "dataset": str(DATA), "few_shot": str(FEW_SHOT),
                                 "limit": NUM_PROMPTS, "name": name, "progress": False, **SAMPLING, **arm})
    try:
        started = time.perf_counter()
        artifact = run(cfg, engine=engine)
        wall = time.perf_counter() - started
        rows = artifact.load_dataset().to_list()
        manifest = artifact.manifest
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if previous is None:
            os.environ.pop("DISTILL_HOME", None)
        else:
            os.environ["DISTILL_HOME"] = previous
    return {"rows": rows, "manifest": manifest, "wall": wall}


def _verified(rows: list[dict]) -> list[bool]:
    """The adaptive run's own verdicts; fixed-n rows graded here exactly as --until-verified grades."""
    if rows and "verified" in rows[0]:
        return [r["verified"] for r in rows]
    from distill.stages.generate.adaptive import is_verified
    from distill.verify.grader import GradeConfig, GradeItem, grade_batch

    results = grade_batch([GradeItem(r["completion"], reference=r["answer"], finish_reason=r["finish_reason"])
                           for r in rows], GradeConfig(answer_extraction="standard"))
    return [is_verified(result) for result in results]


def _measure(run: dict) -> dict:
    rows = run["rows"]
    verified = _verified(rows)
    per_prompt = Counter(r["id"] for r, ok in zip(rows, verified, strict=True) if ok)
    kept = sum(min(v, KEEP_PER_PROMPT) for v in per_prompt.values())
    tokens = sum(r["completion_tokens"] for r in rows)
    return {"samples": len(rows), "tokens": tokens, "verified": sum(verified), "kept": kept,
            "prompts_covered": len(per_prompt), "prompts": len({r["id"] for r in rows}),
            "seconds": run["manifest"]["generation"]["engine_seconds"],
            "samples_per_prompt": dict(sorted(Counter(Counter(r["id"] for r in rows).values()).items()))}


def run() -> list[dict]:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from distill.engines import EngineConfig, make_engine
    from distill.models.bundled import materialize

    engine = make_engine(EngineConfig(engine="vllm", model=str(materialize()), enforce_eager=True,
                                      seed=SAMPLING["seed"], max_model_len=2048))
    try:
        fixed = _measure(_generate(engine, FIXED, "fixed"))
        _log(f"fixed -n 4: {fixed}")
        adaptive = _measure(_generate(engine, ADAPTIVE, "adaptive"))
        _log(f"adaptive: {adaptive}")
    finally:
        engine.close()
    load = os.getloadavg()[0]
    where = (f"{NUM_PROMPTS} demo problems, bundled SmolLM2-135M + demo few-shot, T 0.7, 96 max tokens; "
             f"{os.cpu_count()} cores, load average {load:.1f}")
    rows = []
    for label, m in (("fixed -n 4", fixed), ("adaptive -n 2 --until-verified 2 --max-samples 8", adaptive)):
        per_kept = m["tokens"] / m["kept"] if m["kept"] else float("nan")
        rows += [
            {"benchmark": "adaptive", "metric": f"{label}: completion tokens per keepable verified row",
             "value": round(per_kept, 1), "unit": "tok/row",
             "notes": f"{m['kept']} rows verified (at most {KEEP_PER_PROMPT} per prompt) from {m['samples']} samples, "
                      f"{m['tokens']} completion tokens; all verified rows {m['verified']} "
                      f"({m['tokens'] / max(m['verified'], 1):.1f} tok/row); {where}"},
            {"benchmark": "adaptive", "metric": f"{label}: prompts with >= 1 verified row",
             "value": m["prompts_covered"], "unit": "prompts",
             "notes": f"of {m['prompts']}; samples per prompt {m['samples_per_prompt']}; generation "
                      f"{m['seconds']:.1f} s ({m['kept'] / max(m['seconds'], 1e-9) * 3600:.0f} keepable verified "
                      "rows per hour of this CPU)"},
        ]
    if fixed["kept"] and adaptive["kept"]:
        ratio = (adaptive["tokens"] / adaptive["kept"]) / (fixed["tokens"] / fixed["kept"])
        rows.append({"benchmark": "adaptive", "metric": "adaptive / fixed tokens per keepable verified row",
                     "value": round(ratio, 3), "unit": "x",
                     "notes": "below 1: adaptive sampling buys a usable verified row with fewer tokens"})
    return rows


def _log(message: str) -> None:
    print(f"[bench_adaptive] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
