"""Code correctness: run the answer's program against the row's tests in a local sandbox (filter domain ``code``).

    verdict = verify_code(answer_text, row["test_cases"], fn_name=row.get("fn_name"),
                          starter_code=row.get("starter_code"), config=SandboxConfig())

* The program is the last fenced Python block of the answer (```python / ```py / ```Python3; a bare ``` fence
  only when no block is labelled Python).
* Tests come as OpenThoughts/TACO/APPS ``test_cases`` (JSON string or dict ``{"inputs": [...], "outputs": [...],
  "fn_name": optional}``) or LiveCodeBench lists of ``{"input", "output", "testtype": "stdin"|"functional"}``.
  Two styles: stdin/stdout (each test a fresh process forked from one harness, so no module state carries over)
  and function calls (``fn_name``: a ``Solution`` method, LeetCode style, or a top-level function; all calls in one
  process). Either way all of a row's tests run in one sandbox run whose harness reports after each test
  (``code_harness``); a test that takes the harness down (crash, timeout, limit) counts as failed and a fresh run
  goes on from the next test when partial credit is on.
* Output is compared like the TACO/APPS/CodeContests graders: whitespace-insensitive tokens, numbers within
  ``float_rel_tol``/``float_abs_tol``, tuples as lists and APPS's ``[value]`` wrapping for function results.
* Verdict: ``correct`` when at least ``min_pass_fraction`` of the tests pass, else ``incorrect`` with the first
  failure ("failed test 3: expected '4' got '5'", "timeout on test 2", "memory limit (test 1)", "crashed:
  ZeroDivisionError (test 1)", "no code block"); ``unverified`` for unusable tests or a sandbox fault.
  ``details`` holds the per-test results and the pass fraction.

Isolation, limits and the kill-the-whole-tree logic live in ``distill.verify.sandbox``; expected outputs never enter it.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from distill.verify import CORRECT, INCORRECT, UNVERIFIED, Verdict
from distill.verify.code_harness import (
    CALL_HARNESS,
    HARNESS_GRACE_S,
    StdinReports,
    stdin_files,
    stdin_harness_spec,
)
from distill.verify.sandbox import (
    RunResult,
    Sandbox,
    SandboxConfig,
    SandboxUnavailable,
    get_backend,
    sandbox_available,
)

__all__ = ["SandboxConfig", "SandboxUnavailable", "TestCase", "TestSuite", "compare_stdout", "compare_values",
           "extract_program", "parse_test_cases", "sandbox_available", "verify_code", "verify_code_batch"]

# Imports graders put in front of solutions (APPS/TACO style, minus numpy: too slow to import per test).
PRELUDE = ("import sys, os, re, math, heapq, bisect, random, string, itertools, functools, collections, fractions\n"
           "from itertools import accumulate, product, permutations, combinations, combinations_with_replacement\n"
           "from collections import Counter, OrderedDict, deque, defaultdict, ChainMap\n"
           "from functools import lru_cache, cache, reduce, cmp_to_key\n"
           "from math import sqrt, ceil, floor, gcd, log, log2, inf\n"
           "from heapq import heappush, heappop, heapify\n"
           "from bisect import bisect_left, bisect_right, insort\n"
           "from typing import *\n")

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.S | re.M)
_PY_LANGS = {"python", "py", "python3", "py3", "python2", "pypy", "pypy3"}
_INT = re.compile(r"[+-]?\d+")
_NUM = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass
class TestCase:
    input: Any  # stdin text, or the list of positional arguments
    output: Any  # expected stdout text, or the expected return value


@dataclass
class TestSuite:
    mode: str  # "stdin" | "call"
    tests: list[TestCase] = field(default_factory=list)
    fn_name: str | None = None
    starter_code: str | None = None


def extract_program(answer_text: str) -> str | None:
    """The last fenced Python block of the answer (after any ``</think>``), or None."""
    if not answer_text:
        return None
    text = answer_text.rsplit("</think>", 1)[-1]
    labelled = bare = None
    for match in _FENCE.finditer(text):
        lang, code = match.group(1).lower(), match.group(2)
        if not code.strip():
            continue
        code = code if code.endswith("\n") else code + "\n"
        if lang in _PY_LANGS:
            labelled = code
        elif lang == "":
            bare = code
    return labelled if labelled is not None else bare


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(_text(v) for v in value)
    return value if isinstance(value, str) else json.dumps(value)


def _json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _args_from_text(value: Any) -> list:
    """Function arguments: a list already (APPS), or LiveCodeBench's one JSON value per line."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [_json_or_text(line) for line in value.splitlines() if line.strip()]
    return [value]


def _fn_from_starter(starter_code: str | None) -> str | None:
    found = re.findall(r"def\s+(\w+)\s*\(\s*self", starter_code or "") or re.findall(r"def\s+(\w+)\s*\(",
                                                                                       starter_code or "")
    return found[0] if found else None


def parse_test_cases(test_cases: Any, fn_name: str | None = None, starter_code: str | None = None) -> TestSuite:
    """Tests from a JSON string / dict with ``inputs``/``outputs`` (+ ``fn_name``) or a LiveCodeBench list."""
    data = test_cases
    for _ in range(2):  # some dumps double-encode
        if isinstance(data, (bytes, bytearray)):
            data = data.decode("utf-8")
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise ValueError(f"test cases are not valid JSON: {exc}") from None
    if isinstance(data, dict) and "input_output" in data:
        return parse_test_cases(data["input_output"], fn_name or data.get("fn_name"),
                                starter_code or data.get("starter_code"))
    if isinstance(data, dict):
        inputs, outputs = data.get("inputs"), data.get("outputs")
        if not isinstance(inputs, list) or not isinstance(outputs, list):
            raise ValueError("test cases need 'inputs' and 'outputs' lists")
        if len(inputs) != len(outputs):
            raise ValueError(f"test cases have {len(inputs)} inputs but {len(outputs)} outputs")
        name = fn_name or data.get("fn_name")
        if name:
            tests = [TestCase(_args_from_text(i), o) for i, o in zip(inputs, outputs, strict=True)]
        else:
            tests = [TestCase(_text(i), _text(o)) for i, o in zip(inputs, outputs, strict=True)]
        suite = TestSuite("call" if name else "stdin", tests, name, starter_code)
    elif isinstance(data, list) and all(isinstance(t, dict) and "input" in t and "output" in t for t in data):
        kinds = {t.get("testtype", "functional" if fn_name else "stdin") for t in data}
        if len(kinds) > 1:
            raise ValueError(f"test cases mix test types {sorted(kinds)}")
        if kinds == {"functional"}:
            name = fn_name or _fn_from_starter(starter_code)
            if not name:
                raise ValueError("functional test cases need fn_name (or starter code defining the function)")
            tests = [TestCase(_args_from_text(t["input"]), _json_or_text(t["output"])) for t in data]
            suite = TestSuite("call", tests, name, starter_code)
        else:
            suite = TestSuite("stdin", [TestCase(_text(t["input"]), _text(t["output"])) for t in data], None,
                              starter_code)
    else:
        raise ValueError(f"unrecognised test cases ({type(data).__name__}): expected a JSON object with "
                         "'inputs'/'outputs' or a list of {'input', 'output'} objects")
    if not suite.tests:
        raise ValueError("no test cases")
    return suite


def _tokens_equal(expected: str, got: str, rel_tol: float, abs_tol: float) -> bool:
    if expected == got:
        return True
    if _INT.fullmatch(expected) and _INT.fullmatch(got):
        return int(expected) == int(got)
    if _NUM.fullmatch(expected) and _NUM.fullmatch(got):
        return math.isclose(float(expected), float(got), rel_tol=rel_tol, abs_tol=abs_tol)
    return False


def compare_stdout(expected: str, got: str, rel_tol: float = 1e-6, abs_tol: float = 1e-6) -> bool:
    """Whitespace-insensitive token comparison; numeric tokens within a relative/absolute tolerance."""
    exp, out = expected.split(), got.split()
    return len(exp) == len(out) and all(_tokens_equal(e, g, rel_tol, abs_tol) for e, g in zip(exp, out, strict=True))


def _values_equal(got: Any, expected: Any, rel_tol: float, abs_tol: float) -> bool:
    if isinstance(got, tuple):
        got = list(got)
    if isinstance(expected, tuple):
        expected = list(expected)
    if isinstance(got, bool) or isinstance(expected, bool):
        return got == expected
    if isinstance(got, (int, float)) and isinstance(expected, (int, float)):
        if isinstance(got, int) and isinstance(expected, int):
            return got == expected
        return math.isclose(got, expected, rel_tol=rel_tol, abs_tol=abs_tol)
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(
            _values_equal(g, e, rel_tol, abs_tol) for g, e in zip(got, expected, strict=True))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(_values_equal(got[k], expected[k], rel_tol, abs_tol)
                                                     for k in got)
    return got == expected


def compare_values(got: Any, expected: Any, rel_tol: float = 1e-6, abs_tol: float = 1e-6) -> bool:
    """Function-test comparison: tuples as lists, floats within tolerance, APPS's ``[value]`` wrapping."""
    if _values_equal(got, expected, rel_tol, abs_tol):
        return True
    return isinstance(expected, list) and len(expected) == 1 and _values_equal(got, expected[0], rel_tol, abs_tol)


def _short(text: str, limit: int = 60) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _crash_reason(stderr: str, returncode: int | None) -> tuple[str, str]:
    """(status, reason) for a program that exited abnormally, from its exit code and traceback."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    exc = None
    if "Traceback" in stderr or re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b", last):
        match = re.match(r"^([A-Za-z_][\w.]*)(:|$)", last)
        exc = match.group(1).rsplit(".", 1)[-1] if match else None
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return "memory", "memory limit"
    if exc == "BlockingIOError" and "Resource temporarily unavailable" in stderr:
        return "crashed", "crashed: process limit (BlockingIOError)"
    if exc:
        return "crashed", f"crashed: {exc}"
    rc = returncode if returncode is not None else 0
    sig = -rc if rc < 0 else rc - 128 if rc > 128 else 0
    if sig == signal.SIGXCPU:
        return "timeout", "timeout (cpu time limit)"
    if sig:
        try:
            return "crashed", f"crashed: signal {signal.Signals(sig).name}"
        except ValueError:
            pass
    return "crashed", f"crashed: exit code {rc}"


def _abnormal(run: RunResult) -> tuple[str, str] | None:
    """(status, reason) when the run hit a limit or crashed; None when it exited normally."""
    if run.setup_failed:
        text = run.stderr.decode(errors="replace")
        return "error", "sandbox error: " + text[text.index("sandbox-setup-failed"):].splitlines()[0]
    kind = {"timeout": ("timeout", "timeout"), "memory": ("memory", "memory limit"),
            "output": ("output_limit", "output limit exceeded"), "processes": ("crashed", "crashed: process limit")}
    if run.killed == "timeout" and b"BlockingIOError" in run.stderr:
        return "timeout", "timeout (process limit reached)"
    if run.killed in kind:
        return kind[run.killed]
    if run.returncode != 0:
        return _crash_reason(run.stderr.decode("utf-8", errors="replace"), run.returncode)
    return None


def _result(index: int, status: str, reason: str, seconds: float = 0.0) -> dict:
    if status == "timeout" and reason.startswith("timeout"):
        reason = f"timeout on test {index + 1}" + reason[len("timeout"):]
    elif status == "failed":
        reason = f"failed test {index + 1}: {reason}"
    elif status != "passed":
        reason = f"{reason} (test {index + 1})"
    return {"test": index + 1, "status": status, "reason": reason, "time_s": round(seconds, 3)}


class _Runner:
    """Runs one row's tests in one Sandbox, stopping as soon as the verdict is settled."""

    def __init__(self, box: Sandbox, suite: TestSuite, config: SandboxConfig):
        self.box, self.suite, self.cfg = box, suite, config
        self.results: dict[int, dict] = {}
        self.deadline = time.monotonic() + config.total_timeout_s
        total = len(suite.tests)
        self.allowed_failures = total - math.ceil(config.min_pass_fraction * total - 1e-9)

    def settled(self) -> bool:
        failures = sum(r["status"] != "passed" for r in self.results.values())
        return failures > self.allowed_failures or any(r["status"] == "error" for r in self.results.values())

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def judge_stdin(self, index: int, run: RunResult) -> bool:
        """Record one stdin test's result; False once the verdict is settled."""
        test = self.suite.tests[index]
        bad = _abnormal(run)
        got = run.stdout.decode("utf-8", errors="replace")
        if bad is None and not compare_stdout(test.output, got, self.cfg.float_rel_tol, self.cfg.float_abs_tol):
            bad = ("failed", f"expected {_short(test.output)} got {_short(got)}")
        self.results[index] = _result(index, *(bad or ("passed", "")), run.wall_s)
        return not self.settled()

    def run_stdin(self) -> None:
        """All stdin tests in one harness run (``code_harness``), a fresh run after one that a test took down."""
        tests, start, cfg = self.suite.tests, 0, self.cfg
        while start < len(tests) and self.remaining() > 0 and not self.settled():
            reports = StdinReports(start, len(tests), self.judge_stdin)
            spec = stdin_harness_spec(self.box.path, start, cfg.per_test_timeout_s, cfg.max_output_bytes,
                                      cfg.cpu_time_s, isolated=self.box.backend.name != "unsafe")
            run = self.box.run([sys.executable, "-I", self.box.path("harness_stdin.py"), spec],
                               timeout_s=self.remaining(), idle_timeout_s=cfg.per_test_timeout_s + HARNESS_GRACE_S,
                               on_line=reports)
            current = reports.next
            if current >= len(tests) or run.killed == "stopped":
                return
            if reports.restart_at is not None and run.killed is None and run.returncode == 0:
                if reports.restart_at > start:  # the harness asked for a fresh run (output or CPU budget)
                    start = reports.restart_at
                    continue
                # not even this test's report fits in the run's output cap
                self.results[current] = _result(current, "output_limit", "output limit exceeded")
                start = current + 1
                continue
            bad = _abnormal(run)
            if not reports.ready and run.killed is None and (bad is None or bad[0] != "error"):
                last = (run.stderr.decode(errors="replace").strip().splitlines() or [f"exit {run.returncode}"])[-1]
                bad = ("error", f"sandbox error: the test harness did not start: {last[:200]}")
            bad = bad or ("crashed", "crashed: exited before finishing the tests")
            self.results[current] = _result(current, *bad, time.monotonic() - reports.last_report_at)
            start = current + 1

    def run_calls(self) -> None:
        tests, start = self.suite.tests, 0
        while start < len(tests) and self.remaining() > 0 and not self.settled():
            state: dict[str, Any] = {"next": start, "load_error": None, "t": time.monotonic()}

            def on_line(line: str, state=state) -> bool:
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    return True
                if not isinstance(msg, dict):
                    return True
                if "load_error" in msg:
                    state["load_error"] = str(msg["load_error"])
                elif isinstance(msg.get("i"), int) and 0 <= msg["i"] < len(tests):
                    i, now = msg["i"], time.monotonic()
                    if "error" in msg:
                        error = str(msg["error"])
                        status = "memory" if error.startswith("MemoryError") else "crashed"
                        reason = "memory limit" if status == "memory" else f"crashed: {error.split(':')[0]}"
                    elif compare_values(msg.get("result"), tests[i].output, self.cfg.float_rel_tol,
                                        self.cfg.float_abs_tol):
                        status, reason = "passed", ""
                    else:
                        status = "failed"
                        reason = (f"expected {_short(json.dumps(tests[i].output, default=repr))} "
                                  f"got {_short(json.dumps(msg.get('result'), default=repr))}")
                    self.results[i] = _result(i, status, reason, now - state["t"])
                    state["next"], state["t"] = i + 1, now
                    return not self.settled()
                else:
                    state["t"] = time.monotonic()
                return True

            run = self.box.run([sys.executable, "-I", self.box.path("harness.py"), str(start)],
                               timeout_s=self.remaining(), idle_timeout_s=self.cfg.per_test_timeout_s,
                               on_line=on_line)
            current = state["next"]
            if current >= len(tests) or run.killed == "stopped":
                return
            if state["load_error"]:
                name = state["load_error"].split(":")[0]
                self.results[current] = _result(current, "crashed", f"crashed: {name}")
                return
            bad = _abnormal(run) or ("crashed", "crashed: exited before finishing the tests")
            self.results[current] = _result(current, *bad, time.monotonic() - state["t"])
            start = current + 1


def verify_code(answer_text: str, test_cases: Any, *, fn_name: str | None = None, starter_code: str | None = None,
                config: SandboxConfig | None = None) -> Verdict:
    """Run the answer's program against the tests in the sandbox; raises SandboxUnavailable without isolation."""
    config = config or SandboxConfig()
    backend = get_backend(config)
    try:
        suite = parse_test_cases(test_cases, fn_name, starter_code)
    except ValueError as exc:
        return Verdict(UNVERIFIED, None, f"bad test cases: {exc}")
    program = extract_program(answer_text)
    if program is None:
        return Verdict(INCORRECT, None, "no code block")
    source = program if "__future__" in program else PRELUDE + program
    files = {"solution.py": source}
    if suite.mode == "call":
        files["harness.py"] = CALL_HARNESS
        files["tests.json"] = json.dumps({"fn_name": suite.fn_name, "tests": [t.input for t in suite.tests]})
    else:
        files.update(stdin_files(PRELUDE, [t.input for t in suite.tests]))
    with Sandbox(config, files, backend) as box:
        runner = _Runner(box, suite, config)
        runner.run_calls() if suite.mode == "call" else runner.run_stdin()
    total = len(suite.tests)
    results = [runner.results[i] for i in sorted(runner.results)]
    passed = sum(r["status"] == "passed" for r in results)
    fraction = passed / total
    details = {"tests": results, "passed": passed, "total": total, "pass_fraction": fraction, "mode": suite.mode,
               "backend": backend.name}
    errors = [r for r in results if r["status"] == "error"]
    if errors:
        return Verdict(UNVERIFIED, program, errors[0]["reason"], details)
    if passed and fraction + 1e-9 >= config.min_pass_fraction:
        return Verdict(CORRECT, program, f"passed {passed}/{total}", details)
    failures = [r for r in results if r["status"] != "passed"]
    reason = failures[0]["reason"] if failures else "timeout (total time limit)"
    if config.min_pass_fraction < 1.0:
        reason += f"; passed {passed}/{total} < {config.min_pass_fraction:g}"
    return Verdict(INCORRECT, program, reason, details)


def verify_code_batch(items: list[dict], config: SandboxConfig | None = None) -> list[Verdict]:
    """Verify many rows in parallel (``max_workers`` at once). Each item: ``answer_text`` (or ``answer``),
    ``test_cases``, optional ``fn_name`` and ``starter_code``. One row's failure never stops the others."""
    config = config or SandboxConfig()
    get_backend(config)  # refuse (or warn) once, before any row runs

    def one(item: dict) -> Verdict:
        try:
            return verify_code(item.get("answer_text", item.get("answer", "")), item.get("test_cases"),
                               fn_name=item.get("fn_name"), starter_code=item.get("starter_code"), config=config)
        except SandboxUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken row must not stop the filter run
            return Verdict(UNVERIFIED, None, f"verifier error: {type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=max(1, config.max_workers or os.cpu_count() or 1)) as pool:
        return list(pool.map(one, items))
