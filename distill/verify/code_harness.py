"""The harnesses that run all of one program's tests in one sandbox run, and the grader's side of their reports.

A sandbox run costs a namespace set-up and an interpreter start (~50 ms, more on a loaded machine); a row can have
hundreds of tests. So neither test style starts one run per test:

* function calls (``CALL_HARNESS``): one process loads the program once and calls the function per test,
  printing one JSON line per call (``{"i", "result"}`` or ``{"i", "error"}``; the program's prints go to stderr);
* stdin/stdout (``code_stdin_harness.py``, shipped as text): one process forks a fresh child per test from its
  pristine self, so module state never carries over, enforces the per-test time and output limits, cleans up what
  the test left (processes, files, SysV IPC) and reports each test; ``StdinReports`` turns those reports back into
  the ``RunResult`` a run of the program alone would have given, so the verdicts and reasons are unchanged.

Both print reports as they go: the grader (``code._Runner``) compares each at once, stops the run as soon as the
verdict is settled, and when a program takes its harness down (kills it, exhausts a limit) charges that test and
starts a fresh run from the next one. Isolation is ``distill.verify.sandbox``'s, unchanged: a harness is just the
program the sandbox runs, with the same rlimits, namespaces and watchdog (whose idle timeout backs up the
harness's own per-test limit).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from distill.verify.sandbox import RunResult

__all__ = ["CALL_HARNESS", "HARNESS_GRACE_S", "STDIN_HARNESS", "StdinReports", "stdin_files", "stdin_harness_spec"]

# Runs inside the sandbox for function-style tests: one JSON line per call on the original stdout; the program's
# own prints go to stderr (counted against the output cap).
CALL_HARNESS = r'''
import json, os, sys
sys.setrecursionlimit(100000)
out = os.fdopen(os.dup(1), "w", encoding="utf-8")
os.dup2(2, 1)
def default(o):
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=repr)
    return o.tolist() if hasattr(o, "tolist") else repr(o)
def emit(obj):
    out.write(json.dumps(obj, default=default) + "\n")
    out.flush()
here = os.path.dirname(os.path.abspath(__file__))
spec = json.load(open(os.path.join(here, "tests.json")))
name, tests, start = spec["fn_name"], spec["tests"], int(sys.argv[1])
ns = {"__name__": "solution"}
try:
    exec(compile(open(os.path.join(here, "solution.py")).read(), "solution.py", "exec"), ns)
except BaseException as exc:
    emit({"load_error": "%s: %s" % (type(exc).__name__, exc)})
    sys.exit(1)
cls = ns.get("Solution")
if isinstance(cls, type) and hasattr(cls, name):
    make = lambda: getattr(cls(), name)
elif callable(ns.get(name)):
    make = lambda: ns[name]
else:
    emit({"load_error": "NameError: no function or Solution method named %r" % name})
    sys.exit(1)
emit({"ready": True})
for i in range(start, len(tests)):
    try:
        emit({"i": i, "result": make()(*tests[i])})
    except BaseException as exc:
        emit({"i": i, "error": "%s: %s" % (type(exc).__name__, exc)})
'''

STDIN_HARNESS = Path(__file__).with_name("code_stdin_harness.py").read_text(encoding="utf-8")
# Seconds the watchdog waits past the per-test limit before it takes a silent stdin harness for hung (the harness
# enforces the limit itself; this only catches a harness stopped or starved by the program).
HARNESS_GRACE_S = 3.0


def stdin_files(prelude: str, inputs: list[str]) -> dict[str, str]:
    """The stdin harness's files besides ``solution.py``: itself, the prelude it imports once, all inputs in one
    file and their byte ranges (the harness reads one input at a time, so big suites never sit in its memory)."""
    index, offset = [], 0
    for text in inputs:
        size = len(text.encode("utf-8"))
        index.append([offset, size])
        offset += size
    return {"harness_stdin.py": STDIN_HARNESS, "prelude.py": prelude, "stdin_inputs.txt": "".join(inputs),
            "stdin_index.json": json.dumps(index)}


def stdin_harness_spec(path: Callable[[str], str], start: int, per_test_timeout_s: float, max_output_bytes: int,
                       cpu_time_s: int, isolated: bool) -> str:
    """The harness's command-line argument; ``path`` is ``Sandbox.path`` (where the row's files are inside)."""
    return json.dumps({"start": start, "program": path("solution.py"), "prelude": path("prelude.py"),
                       "inputs": path("stdin_inputs.txt"), "index": path("stdin_index.json"),
                       "timeout_s": per_test_timeout_s, "output_bytes": max_output_bytes, "cpu_s": cpu_time_s,
                       "isolated": isolated})


class StdinReports:
    """``on_line`` for a stdin harness run: rebuilds each test's ``RunResult`` from its report and hands it to
    ``on_test(index, result)``, which returns False once the verdict is settled (the run is then stopped)."""

    def __init__(self, start: int, total: int, on_test: Callable[[int, RunResult], bool]):
        self.next, self.total, self.on_test = start, total, on_test
        self.ready = False
        self.restart_at: int | None = None
        self.last_report_at = time.monotonic()  # the test running now started about then
        self._header: dict | None = None
        self._lines: list[str] = []

    def __call__(self, line: str) -> bool:
        if self._header is not None:  # a raw line of the current report's stdout or stderr
            self._lines.append(line)
            return self._finish() if len(self._lines) == self._expected() else True
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            return True
        if not isinstance(message, dict):
            return True
        if message.get("ready") is True:
            self.ready = True
        elif isinstance(message.get("restart"), int):
            self.restart_at = message["restart"]
        elif isinstance(message.get("i"), int) and self.next <= message["i"] < self.total:
            self._header = message
            return self._finish() if self._expected() == 0 else True
        return True

    def _expected(self) -> int:
        return int(self._header.get("out", 0)) + int(self._header.get("err", 0))

    def _finish(self) -> bool:
        header, lines = self._header, self._lines
        self._header, self._lines = None, []
        n_out = int(header.get("out", 0))
        stdout = "".join(line + "\n" for line in lines[:n_out])
        if stdout and header.get("out_nl") is False:
            stdout = stdout[:-1]  # the harness added the newline that ends its last line
        stderr = "".join(line + "\n" for line in lines[n_out:])
        result = RunResult(int(header.get("rc", 0)), stdout.encode(), stderr.encode(), header.get("killed"),
                           float(header.get("wall_s", 0.0)))
        index = header["i"]
        self.next, self.last_report_at = index + 1, time.monotonic()
        return self.on_test(index, result)
