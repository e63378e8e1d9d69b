"""`make demo-methods`: SFT, on-policy distillation and GRPO from the same bundled model and demo problems.

    make demo-methods                                   # = .venv/bin/python scripts/demo_methods.py
    python scripts/demo_methods.py --home demo_methods_home
    python scripts/demo_methods.py --small              # a quick, CI-sized pass over the same commands

Same start as `make demo` (the bundled SmolLM2-135M; the teacher is the same weights shown worked examples,
data/demo/few_shot.json). Then, each a real `distill train` command:
    sft               distill train --recipe smol-demo            (as `make demo`)
    on-policy         distill train --recipe smol-demo-onpolicy   (base student; few-shot teacher scores its samples)
    sft -> on-policy  the same, starting from the SFT student
    sft -> grpo       distill train --recipe smol-demo-grpo --model <sft student> (grader rewards)
Each student is evaluated zero-shot on the held-out problems (greedy); every method is compared with SFT alone by
`distill eval --compare` (paired by problem, 95% CI of the difference). Writes HOME/methods_results.md and .png
with the wall-clock of each method. It reports what it measures, whatever that is.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import DATA, METRICS, distill, load_results, metric  # noqa: E402 - the demo's own helpers

METHODS = [("base", "bundled, no training"), ("sft", "SFT"), ("onpolicy", "on-policy"),
           ("sft-onpolicy", "SFT -> on-policy"), ("sft-grpo", "SFT -> GRPO")]


def main() -> int:
    parser = argparse.ArgumentParser(description="SFT vs on-policy distillation vs GRPO on CPU, bundled model.")
    parser.add_argument("--home", default=str(Path(__file__).resolve().parent.parent / "demo_methods_home"))
    parser.add_argument("--small", action="store_true", help="Fewer problems, samples and steps (a smoke run).")
    parser.add_argument("--steps", type=int, default=None, help="Optimizer steps of on-policy and GRPO.")
    args = parser.parse_args()
    home = Path(args.home).absolute()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    timings: dict[str, float] = {}
    limits = (["--limit", "48"], ["--limit", "24"]) if args.small else ([], [])
    steps = args.steps or (2 if args.small else 8)
    eval_args = ["--benchmark", str(DATA / "heldout.jsonl"), "--protocol", "greedy", "--max-tokens", "96",
                 "--enforce-eager", "--max-model-len", "2048", *limits[1]]
    few_shot = ["--teacher-few-shot", str(DATA / "few_shot.json")]
    # a short stage on 2 cores (an on-policy step samples 8 x 96 tokens and runs student + teacher: ~40 s idle)
    method_steps = ["--set", f"max_steps={steps}", "--set", "learning_rate=5e-5"]

    distill("models", "materialize", home=home, timings=timings, label="materialize")
    distill("generate", "--teacher", "bundled", "--dataset", str(DATA / "train.jsonl"), *limits[0],
            "--few-shot", str(DATA / "few_shot.json"), "-n", "2" if args.small else "4", "--temperature", "0.7",
            "--top-p", "1.0", "--max-tokens", "96", "--seed", "0", "--enforce-eager", "--max-model-len", "2048",
            "--name", "demo-traces", home=home, timings=timings, label="generate")
    distill("filter", "--input", "demo-traces@latest", "--name", "demo-filtered", "--domain", "math",
            "--min-reasoning-chars", "10", "--max-per-prompt", "2", home=home, timings=timings, label="filter")
    sft_overrides = ["--set", "num_train_epochs=4", "--set", "learning_rate=1e-4"] if args.small else []
    runs = {
        "sft": ["--recipe", "smol-demo", *sft_overrides],
        "onpolicy": ["--recipe", "smol-demo-onpolicy", *few_shot, *method_steps],
        "sft-onpolicy": ["--recipe", "smol-demo-onpolicy", "--model", "demo-sft@latest", *few_shot, *method_steps],
        "sft-grpo": ["--recipe", "smol-demo-grpo", "--model", "demo-sft@latest", *method_steps],
    }
    train_time: dict[str, float] = {}
    for key, flags in runs.items():
        distill("train", *flags, "--dataset", "demo-filtered@latest", "--name", f"demo-{key}", home=home,
                timings=timings, label=f"train {key}")
        train_time[key] = timings[f"train {key}"]
    for key, _ in METHODS:
        model = "bundled" if key == "base" else f"demo-{key}@latest"
        distill("eval", "--model", model, *eval_args, "--name", f"demo-eval-{key}", home=home, timings=timings,
                label=f"eval {key}")
    results = {key: load_results(home, f"demo-eval-{key}") for key, _ in METHODS}
    comparisons = {}
    for key, _ in METHODS:
        if key == "sft":
            continue
        out = distill("eval", "--compare", "demo-eval-sft@latest", f"demo-eval-{key}@latest", home=home,
                      timings={}, label="compare")
        comparisons[key] = out
    text = report(home, results, comparisons, train_time, timings, args, steps)
    print("\n" + text)
    print(f"\nsaved {home / 'methods_results.md'} and {home / 'methods_results.png'}")
    return 0


def _cell(entry: dict, key: str) -> str:
    m = metric(entry, key)
    if m.get("mean") is None:
        return "—"
    low, high = m.get("ci95") or [None, None]
    return f"{100 * m['mean']:.1f}" + (f" [{100 * low:.0f}, {100 * high:.0f}]" if low is not None else "")


def _accuracy_delta(compare_output: str) -> str:
    """The pass@1 row of `distill eval --compare`'s table (difference and its paired 95% CI)."""
    for line in compare_output.splitlines():
        if re.search(r"pass@1", line):
            return " ".join(line.replace("│", " ").replace("|", " ").split())
    return "(see the compare output)"


def report(home: Path, results: dict, comparisons: dict, train_time: dict, timings: dict, args, steps: int) -> str:
    header = "| held-out, zero-shot, greedy | " + " | ".join(label for _, label in METHODS) + " |"
    lines = [header, "|---|" + "---:|" * len(METHODS)]
    for key, label in METRICS:
        lines.append(f"| {label} | " + " | ".join(_cell(results[m], key) for m, _ in METHODS) + " |")
    tokens = [metric(results[m], "completion_tokens")["mean"] for m, _ in METHODS]
    lines.append("| mean completion tokens | " + " | ".join(f"{t:.1f}" if t is not None else "—" for t in tokens)
                 + " |")
    lines.append("| training wall-clock (s) | — | " + " | ".join(f"{train_time.get(m, 0):.0f}" for m, _ in METHODS[1:])
                 + " |")
    lines += ["", "Accuracy against SFT alone, paired by problem (`distill eval --compare`):", ""]
    for key, label in METHODS:
        if key in comparisons:
            lines.append(f"- {label}: {_accuracy_delta(comparisons[key])}")
    total = sum(timings.values())
    lines += ["", f"{results['base']['problems']} held-out problems; 95% intervals in brackets; on-policy and GRPO "
              f"ran {steps} optimizer steps. Whole run {total / 60:.1f} min on {os.cpu_count()} cores ("
              + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()) + ")."]
    text = "\n".join(lines)
    (home / "methods_results.md").write_text(text + "\n\n## Comparisons\n\n" + "\n".join(
        f"### {label}\n```\n{comparisons[key].strip()}\n```" for key, label in METHODS if key in comparisons) + "\n")
    _chart(home / "methods_results.png", results)
    return text


def _chart(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(METHODS)
    colors = ["#999999", "#2a7ab9", "#e6872e", "#3a9e4f", "#b83a3a"]
    for index, ((key, label), color) in enumerate(zip(METHODS, colors, strict=True)):
        means, errors = [], [[], []]
        for name, _ in METRICS:
            m = metric(results[key], name)
            mean = 100 * (m["mean"] or 0)
            low, high = m.get("ci95") or [None, None]
            means.append(mean)
            errors[0].append(max(0.0, mean - 100 * low) if low is not None else 0)
            errors[1].append(max(0.0, 100 * high - mean) if high is not None else 0)
        xs = [i + (index - (len(METHODS) - 1) / 2) * width for i in range(len(METRICS))]
        ax.bar(xs, means, width, yerr=errors, capsize=2, label=label, color=color)
    ax.set_xticks(range(len(METRICS)), [label.replace(" %", "") for _, label in METRICS], fontsize=8)
    ax.set_ylabel("% of held-out problems")
    ax.set_ylim(0, 105)
    ax.set_title("SmolLM2-135M zero-shot after each method (95% CI)")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    start = time.time()
    code = main()
    print(f"demo-methods: {(time.time() - start) / 60:.1f} min")
    sys.exit(code)
