"""`make demo-verification`: what does answer verification buy the demo student? Paired, on held-out problems.

    make demo-verification                                   # = .venv/bin/python scripts/demo_verification.py
    python scripts/demo_verification.py --home demo_home     # reuses demo_home's demo-traces when there

The A/B the README recommends, run on the demo: the same teacher traces filtered twice — `--correctness
require` (the default: only verified answers) and `--correctness annotate` (wrong and unverified answers kept,
every other check the same) — a student trained on each with the `smol-demo` recipe, both evaluated zero-shot and
greedy on the 100 held-out problems and compared paired per problem (`distill eval --compare`). Writes
docs/verification_results.md. Runs `scripts/demo.py`'s generate step first when the home has no `demo-traces`.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "docs" / "verification_results.md"


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
    if not any((home / "data" / "demo-traces").glob("v*")):
        demo.generate_traces(home, timings)
    eval_args = demo.eval_args()
    kept = {}
    for correctness in ("require", "annotate"):
        out = demo.distill(*demo.filter_args(f"demo-filtered-{correctness}", "--correctness", correctness),
                           home=home, timings=timings, label=f"filter {correctness}")
        kept[correctness] = next((line for line in out.splitlines() if line.startswith("kept ")), "").split(";")[0]
        demo.distill("train", "--recipe", "smol-demo", "--dataset", f"demo-filtered-{correctness}@latest",
                     "--name", f"demo-student-{correctness}", home=home, timings=timings,
                     label=f"train {correctness}")
        demo.distill("eval", "--model", f"demo-student-{correctness}@latest", *eval_args, "--name",
                     f"demo-eval-{correctness}", home=home, timings=timings, label=f"eval {correctness}")
    compared = demo.distill("eval", "--compare", "demo-eval-require@latest", "demo-eval-annotate@latest",
                            home=home, timings={}, label="compare")
    text = ("# Demo student: verified traces vs all well-formed traces\n\n"
            "Same teacher traces, same checks except correctness, same recipe (`smol-demo`) and seed; 100 held-out "
            "problems, zero-shot, greedy; deltas paired per problem with 95% intervals (`distill eval --compare`).\n\n"
            f"- `--correctness require`: {kept['require']}\n- `--correctness annotate`: {kept['annotate']}\n\n"
            f"{compared.strip()}\n\nReproduce: `make demo-verification`.\n")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(f"\n{text}\nsaved {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
