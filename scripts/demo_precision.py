"""`make demo-precision`: does bf16 autocast cost the demo student accuracy? Paired, on the held-out problems.

    make demo-precision                                  # = .venv/bin/python scripts/demo_precision.py
    python scripts/demo_precision.py --home demo_home    # reuses demo_home's demo-filtered when it is there

Trains the demo student twice from the same filtered traces with the `smol-demo` recipe — once `--precision
fp32` (the recipe's pin), once `--precision bf16` (autocast over fp32 master weights, what `--precision auto`
picks on a CPU with AVX-512 BF16 / AMX) — evaluates both zero-shot and greedy on the 100 held-out problems, and
compares them paired per problem (`distill eval --compare`). Writes docs/precision_results.md with the table,
the paired deltas and both training times. Runs `scripts/demo.py`'s generate and filter steps first when the
home has no `demo-filtered`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "docs" / "precision_results.md"


def _demo():
    spec = importlib.util.spec_from_file_location("demo", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=str(REPO / "demo_home"), help="Artifact root (the demo's).")
    args = parser.parse_args()
    demo = _demo()
    home = demo.prepare_home(args.home)
    timings: dict[str, float] = {}
    if not any((home / "data" / "demo-filtered").glob("v*")):
        demo.generate_traces(home, timings)
        demo.distill(*demo.filter_args("demo-filtered"), home=home, timings=timings, label="filter")
    eval_args = demo.eval_args()
    for precision in ("fp32", "bf16"):
        demo.distill("train", "--recipe", "smol-demo", "--dataset", "demo-filtered@latest", "--precision", precision,
                     "--name", f"demo-student-{precision}", home=home, timings=timings, label=f"train {precision}")
        demo.distill("eval", "--model", f"demo-student-{precision}@latest", *eval_args, "--name",
                     f"demo-eval-{precision}", home=home, timings=timings, label=f"eval {precision}")
    compared = demo.distill("eval", "--compare", "demo-eval-fp32@latest", "demo-eval-bf16@latest", home=home,
                            timings={}, label="compare")
    speedup = timings["train fp32"] / timings["train bf16"]
    text = ("# Demo student: fp32 vs bf16 autocast training\n\n"
            "Same filtered traces, same recipe (`smol-demo`), same seed; 100 held-out problems, zero-shot, greedy; "
            "deltas paired per problem with 95% intervals (`distill eval --compare`).\n\n"
            f"{compared.strip()}\n\n"
            f"Training wall time (whole `distill train` process, {os.cpu_count()} cores): fp32 "
            f"{timings['train fp32']:.0f} s, bf16 {timings['train bf16']:.0f} s ({speedup:.2f}x). "
            "Reproduce: `make demo-precision`.\n")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(f"\n{text}\nsaved {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
