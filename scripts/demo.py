"""`make demo`: the whole distillation flow, offline, on CPU, with the bundled SmolLM2-135M.

    make demo                                   # = .venv/bin/python scripts/demo.py
    python scripts/demo.py --home demo_home     # where the artifacts go (default: demo_home/)
    python scripts/demo.py --small              # the CI-sized run the test suite uses

What it is: *context distillation*. Teacher and student are the same weights. The teacher is stronger
only through its few-shot context (data/demo/few_shot.json shows it how to count up inside <think>);
the student is the bare model, zero-shot. Only verified traces are kept, so the student can end up
better than its teacher. A real run uses a real teacher (R1, QwQ) — the commands are the same.

Steps (the real CLI, nothing special-cased):
    1. distill models materialize
    2. distill generate  --teacher bundled --few-shot data/demo/few_shot.json ... -> demo-traces
    3. distill filter    --input demo-traces@latest                              -> demo-filtered
    4. distill eval      --model bundled (zero-shot, held-out)                    -> demo-eval-before
    5. distill train     --recipe smol-demo --dataset demo-filtered@latest        -> demo-student
    6. distill eval      --model demo-student@latest (zero-shot, held-out)        -> demo-eval-after
    7. table + PNG chart (HOME/demo_results.md, .png) and `distill lineage` of the student's eval
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "demo"
METRICS = [("well_formed", "well-formed <think> %"), ("pass@1", "accuracy %"),
           ("lenient_accuracy", "lenient accuracy %"), ("stopped", "stops on end token %")]


def distill(*args: str, home: Path, timings: dict, label: str) -> str:
    """Run one real CLI command, echo it, stream its output, and time it."""
    command = [sys.executable, "-m", "distill", *args]
    print(f"\n$ distill {' '.join(args)}", flush=True)
    start = time.time()
    result = subprocess.run(command, env={**os.environ, "DISTILL_HOME": str(home)}, cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    timings[label] = time.time() - start
    print(result.stdout[-4000:], flush=True)
    if result.returncode != 0:
        print(f"error: `distill {args[0]}` failed with exit code {result.returncode}", file=sys.stderr)
        sys.exit(result.returncode)
    return result.stdout


def prepare_home(home: str | Path) -> Path:
    """The artifact root, made; the CPU engine's KV cache and tokenizer threads set as every demo runs them."""
    home = Path(home).absolute()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return home


def generate_traces(home: Path, timings: dict, samples: int = 4, limit: list[str] | None = None) -> None:
    """Steps 1-2: the bundled model, few-shot, as the demo's teacher -> demo-traces."""
    distill("models", "materialize", home=home, timings=timings, label="materialize")
    distill("generate", "--teacher", "bundled", "--dataset", str(DATA / "train.jsonl"), *(limit or []),
            "--few-shot", str(DATA / "few_shot.json"), "-n", str(samples), "--temperature", "0.7",
            "--top-p", "1.0", "--max-tokens", "96", "--seed", "0", "--enforce-eager", "--max-model-len", "2048",
            "--name", "demo-traces", home=home, timings=timings, label="generate")


def filter_args(name: str, *extra: str) -> list[str]:
    """Step 3's command: the demo's filter of demo-traces into ``name``."""
    return ["filter", "--input", "demo-traces@latest", "--name", name, "--domain", "math",
            "--min-reasoning-chars", "10", "--max-per-prompt", "2", *extra]


def eval_args(limit: list[str] | None = None) -> list[str]:
    """The held-out evaluation's options (zero-shot, greedy), after ``--model``."""
    return ["--benchmark", str(DATA / "heldout.jsonl"), "--protocol", "greedy", "--max-tokens", "96",
            "--enforce-eager", "--max-model-len", "2048", *(limit or [])]


def load_results(home: Path, name: str) -> dict:
    sys.path.insert(0, str(REPO))
    from distill import artifacts

    artifact = artifacts.resolve(f"{name}@latest", root=home, kind="eval")
    results = json.loads((artifact.path / "results.json").read_text())
    return next(iter(results["benchmarks"].values()))


def metric(entry: dict, name: str) -> dict:
    return entry["metrics"].get(name) or {"mean": None, "ci95": [None, None]}


def report(home: Path, before: dict, after: dict, timings: dict, args) -> str:
    def cell(m: dict) -> str:
        if m.get("mean") is None:
            return "—"
        low, high = m.get("ci95") or [None, None]
        ci = f" [{100 * low:.0f}, {100 * high:.0f}]" if low is not None else ""
        return f"{100 * m['mean']:.1f}{ci}"

    lines = ["| held-out, zero-shot, greedy | before | after |", "|---|---:|---:|"]
    for key, label in METRICS:
        lines.append(f"| {label} | {cell(metric(before, key))} | {cell(metric(after, key))} |")
    tokens_before = metric(before, "completion_tokens")["mean"]
    tokens_after = metric(after, "completion_tokens")["mean"]
    lines.append(f"| mean completion tokens | {tokens_before:.1f} | {tokens_after:.1f} |")
    total = sum(timings.values())
    lines += ["", f"{before['problems']} held-out problems; 95% intervals in brackets. Whole flow "
              f"{total / 60:.1f} min on {os.cpu_count()} cores (" +
              ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()) + ")."]
    text = "\n".join(lines)
    (home / "demo_results.md").write_text(text + "\n")
    _chart(home / "demo_results.png", before, after)
    return text


def _chart(path: Path, before: dict, after: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label.replace(" %", "") for _, label in METRICS]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.38
    for offset, (name, entry, color) in enumerate((("before", before, "#999999"), ("after", after, "#2a7ab9"))):
        means, errors = [], [[], []]
        for key, _ in METRICS:
            m = metric(entry, key)
            mean = 100 * (m["mean"] or 0)
            low, high = m.get("ci95") or [None, None]
            means.append(mean)
            errors[0].append(max(0.0, mean - 100 * low) if low is not None else 0)
            errors[1].append(max(0.0, 100 * high - mean) if high is not None else 0)
        xs = [i + (offset - 0.5) * width for i in range(len(METRICS))]
        ax.bar(xs, means, width, yerr=errors, capsize=3, label=f"student {name} distillation", color=color)
    ax.set_xticks(range(len(METRICS)), labels, fontsize=8)
    ax.set_ylabel("% of held-out problems")
    ax.set_ylim(0, 105)
    ax.set_title("SmolLM2-135M zero-shot, before vs after distillation (95% CI)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description="The whole distill flow on CPU with the bundled model.")
    parser.add_argument("--home", default=str(REPO / "demo_home"), help="Artifact root for the demo.")
    parser.add_argument("--small", action="store_true", help="CI-sized: fewer problems, samples and steps.")
    parser.add_argument("--train-limit", type=int, default=None, help="Training problems (default: all 200).")
    parser.add_argument("--heldout-limit", type=int, default=None, help="Held-out problems (default: all 100).")
    parser.add_argument("--samples", type=int, default=4, help="Teacher samples per problem.")
    args = parser.parse_args()
    if args.small:
        args.train_limit = args.train_limit or 48
        args.heldout_limit = args.heldout_limit or 24
        args.samples = min(args.samples, 4)
    home = prepare_home(args.home)
    timings: dict[str, float] = {}
    train_limit = ["--limit", str(args.train_limit)] if args.train_limit else []
    heldout_limit = ["--limit", str(args.heldout_limit)] if args.heldout_limit else []
    held_out = eval_args(heldout_limit)

    generate_traces(home, timings, args.samples, train_limit)
    distill(*filter_args("demo-filtered", "--plot"), home=home, timings=timings, label="filter")
    distill("eval", "--model", "bundled", *held_out, "--name", "demo-eval-before",
            home=home, timings=timings, label="eval before")
    # CI-sized: few traces, so more passes at a higher rate to learn the <think> format in a few steps.
    train_overrides = ["--set", "num_train_epochs=4", "--set", "learning_rate=1e-4"] if args.small else []
    distill("train", "--recipe", "smol-demo", "--dataset", "demo-filtered@latest", "--name", "demo-student",
            *train_overrides, home=home, timings=timings, label="train")
    distill("eval", "--model", "demo-student@latest", *held_out, "--name", "demo-eval-after",
            home=home, timings=timings, label="eval after")

    before, after = load_results(home, "demo-eval-before"), load_results(home, "demo-eval-after")
    print("\n" + report(home, before, after, timings, args))
    distill("eval", "--compare", "demo-eval-before@latest", "demo-eval-after@latest", home=home,
            timings={}, label="compare")
    print(f"\nsaved {home / 'demo_results.md'} and {home / 'demo_results.png'}\n")
    distill("lineage", "demo-eval-after@latest", home=home, timings={}, label="lineage")
    return 0


if __name__ == "__main__":
    sys.exit(main())
