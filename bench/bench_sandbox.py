"""Code sandbox throughput: stdin/stdout tests per second for one correct program with many tests.

    python bench/bench_sandbox.py           # prints the rows; BENCH_SANDBOX_TESTS=565, BENCH_SANDBOX_REPEATS=3
    python bench/run.py --only sandbox      # the markdown table

The program reads a count and a line of numbers and prints a weighted sum (PRELUDE imports included, as graded);
565 tests, as many as a large TACO/CodeContests row. Both figures are the median of the repeats, on the backend
``auto`` picks here (bwrap where installed):

* before: one sandbox run per test (a new bwrap/unshare process tree and interpreter start each), as
  ``verify_code`` graded stdin tests until the one-run harness; reproduced here with ``Sandbox.run`` and
  ``compare_stdout``, exactly that loop;
* after: ``verify_code`` itself, all tests in one sandbox run (``distill.verify.code_harness``: one harness
  process that forks a fresh child per test).

The machine may be shared: the load average at start and end goes into the notes.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
N_TESTS = int(os.environ.get("BENCH_SANDBOX_TESTS", "565"))
REPEATS = int(os.environ.get("BENCH_SANDBOX_REPEATS", "3"))

PROGRAM = ("import sys\nn = int(sys.stdin.readline())\nvalues = list(map(int, sys.stdin.readline().split()))\n"
           "print(sum(values) * n)\n")


def make_tests(n: int = N_TESTS) -> dict:
    inputs = [f"{k}\n{' '.join(str(v) for v in range(k, k + 30))}\n" for k in range(n)]
    outputs = [f"{sum(range(k, k + 30)) * k}\n" for k in range(n)]
    return {"inputs": inputs, "outputs": outputs}


def one_run_per_test(tests: dict, config) -> int:
    """The per-test path: a fresh sandbox run of the program for every test; returns the tests passed."""
    from distill.verify.code import PRELUDE, compare_stdout
    from distill.verify.sandbox import Sandbox

    passed = 0
    with Sandbox(config, {"solution.py": PRELUDE + PROGRAM}) as box:
        for stdin, expected in zip(tests["inputs"], tests["outputs"], strict=True):
            run = box.run([sys.executable, "-I", box.path("solution.py")], stdin=stdin,
                          timeout_s=config.per_test_timeout_s)
            ok = run.killed is None and run.returncode == 0
            passed += ok and compare_stdout(expected, run.stdout.decode("utf-8", errors="replace"))
    return passed


def one_run(tests: dict, config) -> int:
    from distill.verify.code import verify_code

    verdict = verify_code(f"```python\n{PROGRAM}```\n", tests, config=config)
    if verdict.status != "correct":
        raise RuntimeError(f"the bench program was graded {verdict.status}: {verdict.reason}")
    return verdict.details["passed"]


def _median_rate(fn, tests: dict, config) -> tuple[float, list[float]]:
    seconds = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        passed = fn(tests, config)
        seconds.append(time.perf_counter() - started)
        if passed != len(tests["inputs"]):
            raise RuntimeError(f"{fn.__name__}: {passed}/{len(tests['inputs'])} tests passed")
    median = statistics.median(seconds)
    return len(tests["inputs"]) / median, seconds


def run() -> list[dict]:
    sys.path.insert(0, str(REPO))
    from distill.verify.code import SandboxConfig
    from distill.verify.sandbox import get_backend

    config = SandboxConfig(total_timeout_s=3600)
    backend = get_backend(config).name
    tests = make_tests()
    load_start = os.getloadavg()[0]
    after, after_s = _median_rate(one_run, tests, config)
    before, before_s = _median_rate(one_run_per_test, tests, config)
    load_end = os.getloadavg()[0]
    n, cores = len(tests["inputs"]), os.cpu_count()
    note = (f"{n} tests, median of {REPEATS}, backend {backend}, {cores} cores; load average {load_start:.1f} at "
            f"start, {load_end:.1f} at end")
    return [
        {"benchmark": "sandbox", "metric": "stdin tests, one sandbox run per test (before)", "value": before,
         "unit": "tests/s", "notes": f"{statistics.median(before_s):.1f} s per program; {note}"},
        {"benchmark": "sandbox", "metric": "stdin tests, one harness run per program (verify_code)", "value": after,
         "unit": "tests/s", "notes": f"{statistics.median(after_s):.1f} s per program (target < 20 s); "
                                     f"{after / before:.1f}x before"},
    ]


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
