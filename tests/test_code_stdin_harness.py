"""Stdin/stdout tests run in one sandbox run per program (distill/verify/code_stdin_harness.py), not one per test.

Real programs through ``verify_code`` on every isolation backend this machine allows: hundreds of tests verify fast
and a failure is reported as the test it happened in; a timeout, a crash, a harness killed by its program, a fork
bomb or a flood of output costs only its own test and the next tests still run; nothing a test leaves (globals,
files, shared memory, daemons) reaches the next; every way of reading stdin works; what the interpreter does at
exit (SystemExit codes, unflushed files, threads) is kept.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

import distill.verify.sandbox as sandbox
from distill.verify import CORRECT, INCORRECT
from distill.verify.code import SandboxConfig, sandbox_available, verify_code

BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(not sandbox_available(name)[0],
                                                        reason=f"{name} unavailable here: {sandbox_available(name)[1]}"))
            for name in ("bwrap", "unshare")]
# Test k (1-based) feeds "k" and expects "2k": a program doubles its input unless it misbehaves on purpose.
DOUBLE = "k = int(input())\nprint(2 * k)\n"


def answer(code: str) -> str:
    return f"```python\n{code}```\n"


def numbered_tests(n: int) -> dict:
    return {"inputs": [f"{k}\n" for k in range(1, n + 1)], "outputs": [f"{2 * k}\n" for k in range(1, n + 1)]}


def config(backend: str, **overrides) -> SandboxConfig:
    return SandboxConfig(**{"per_test_timeout_s": 10, "total_timeout_s": 120, "backend": backend, **overrides})


def statuses(verdict) -> dict[int, str]:
    return {t["test"]: t["status"] for t in verdict.details["tests"]}


def procs_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_tests_verify_in_one_run(backend):
    tests = {"inputs": [f"{k}\n{' '.join(map(str, range(k, k + 30)))}\n" for k in range(565)],
             "outputs": [f"{sum(range(k, k + 30)) * k}\n" for k in range(565)]}
    code = "import sys\nn = int(sys.stdin.readline())\nprint(sum(map(int, sys.stdin.readline().split())) * n)\n"
    started = time.monotonic()
    verdict = verify_code(answer(code), tests, config=config(backend))
    elapsed = time.monotonic() - started
    assert verdict.status == CORRECT and verdict.reason == "passed 565/565", verdict.reason
    assert len(verdict.details["tests"]) == 565 and set(statuses(verdict).values()) == {"passed"}
    # One sandbox start per test took ~31 s here (2 cores, loaded); one run takes ~3 s. Generous for CI.
    assert elapsed < 60, elapsed


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_answer_on_test_400_is_reported_as_test_400(backend):
    code = "k = int(input())\nprint(2 * k + (k == 400))\n"
    verdict = verify_code(answer(code), numbered_tests(565), config=config(backend))
    assert verdict.status == INCORRECT and verdict.reason == "failed test 400: expected '800' got '801'", \
        verdict.reason
    assert len(verdict.details["tests"]) == 400  # stopped as soon as the verdict was settled
    assert statuses(verdict)[399] == "passed" and statuses(verdict)[400] == "failed"


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_on_one_test_of_many(backend):
    code = "k = int(input())\nwhile k == 5:\n    pass\nprint(2 * k)\n"
    started = time.monotonic()
    strict = verify_code(answer(code), numbered_tests(30), config=config(backend, per_test_timeout_s=1.5))
    assert strict.status == INCORRECT and strict.reason == "timeout on test 5", strict.reason
    assert time.monotonic() - started < 10
    lenient = verify_code(answer(code), numbered_tests(30),
                          config=config(backend, per_test_timeout_s=1.5, min_pass_fraction=0.9))
    assert lenient.status == CORRECT and lenient.reason == "passed 29/30", lenient.reason
    assert [k for k, s in statuses(lenient).items() if s != "passed"] == [5]
    assert statuses(lenient)[5] == "timeout"


@pytest.mark.parametrize("backend", BACKENDS)
def test_program_that_takes_its_harness_down_fails_only_that_test(backend):
    marker = f"bomb-{uuid.uuid4().hex}"
    code = ("import os, signal, sys\nk = int(input())\n"
            "if k == 3:\n    os.kill(os.getppid(), signal.SIGKILL)\n"  # the harness itself
            "if k == 5:\n    os._exit(0)\n"  # before anything was printed
            "if k == 7:\n    for _ in range(1024):\n        sys.stdout.write('x' * (1 << 20))\n"
            "if k == 9:\n"
            f"    os.execv(sys.executable, [sys.executable, '-c', '# {marker}\\nimport os\\nwhile True:\\n    os.fork()'])\n"
            "if k == 11:\n    os.kill(os.getppid(), signal.SIGSTOP)\n    import time\n    time.sleep(60)\n"
            "if k == 13:\n    os.kill(0, signal.SIGKILL)\n"  # its whole process group
            "print(2 * k)\n")
    cfg = config(backend, per_test_timeout_s=2, max_output_bytes=1 << 20, max_processes=32, min_pass_fraction=0.1)
    started = time.monotonic()
    verdict = verify_code(answer(code), numbered_tests(16), config=cfg)
    seen = statuses(verdict)
    reasons = {t["test"]: t["reason"] for t in verdict.details["tests"]}
    assert len(seen) == 16, reasons
    assert [k for k, s in seen.items() if s != "passed"] == [3, 5, 7, 9, 11, 13], reasons
    assert reasons[3] == "crashed: signal SIGKILL (test 3)" and reasons[13] == "crashed: signal SIGKILL (test 13)"
    assert reasons[5] == "failed test 5: expected '10' got ''"
    assert reasons[7] == "output limit exceeded (test 7)"
    assert "process limit" in reasons[9] or reasons[9].startswith(("timeout on test 9", "crashed: exit code 1"))
    assert reasons[11] == "timeout on test 11"  # a stopped harness: the watchdog's idle limit ends the run
    assert verdict.status == CORRECT and verdict.reason == "passed 10/16"
    assert time.monotonic() - started < 40
    time.sleep(0.2)
    assert procs_with(marker) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_nothing_a_test_leaves_reaches_the_next(backend):
    marker = f"daemon-{uuid.uuid4().hex}"
    # Each test reports what earlier tests left, then leaves all of it again: a module global, an attribute on
    # a module the harness imported, files in the working directory and in /tmp, POSIX shared memory (under
    # /dev/shm), a SysV shared memory segment, a POSIX message queue, and a daemon that keeps writing a file.
    code = ("import ctypes, os, subprocess, sys, time\nfrom multiprocessing import shared_memory\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "libc.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]\n"
            "k = int(input())\n"
            "leaks = [name for name, found in (('global', 'counter' in globals()), ('module', hasattr(sys, 'seen')),\n"
            "         ('cwd', os.path.exists('state.txt')), ('tmp', os.path.exists('/tmp/state/deep.txt')),\n"
            "         ('daemon', os.path.exists('late.txt')), ('sysv', libc.shmget(4242, 0, 0) != -1),\n"
            "         ('mqueue', libc.mq_open(b'/distill-leak', os.O_RDWR, 0, None) != -1)) if found]\n"
            "try:\n    shared_memory.SharedMemory(name='distill-leak').close()\n    leaks.append('shm')\n"
            "except FileNotFoundError:\n    pass\n"
            "counter = k\nsys.seen = k\nopen('state.txt', 'w').write(str(k))\n"
            "os.makedirs('/tmp/state/sub', exist_ok=True)\nopen('/tmp/state/deep.txt', 'w').write('x')\n"
            "os.chmod('/tmp/state/sub', 0)\n"
            "segment = shared_memory.SharedMemory(name='distill-leak', create=True, size=64)\n"
            "assert libc.shmget(4242, 4096, 0o1600) != -1\n"  # IPC_CREAT | 0600
            "libc.mq_open(b'/distill-leak', os.O_RDWR | os.O_CREAT, 0o600, None)\n"  # refused: RLIMIT_MSGQUEUE 0
            f"subprocess.Popen([sys.executable, '-c', '# {marker}\\nimport time\\nwhile True:\\n    "
            "open(\"late.txt\", \"w\").close()\\n    time.sleep(0.005)'], start_new_session=True)\n"
            "time.sleep(0.1)\n"
            "print(2 * k if not leaks else ' '.join(leaks))\n")
    verdict = verify_code(answer(code), numbered_tests(6), config=config(backend))
    assert verdict.status == CORRECT and verdict.reason == "passed 6/6", verdict.reason
    time.sleep(0.2)
    assert procs_with(marker) == []


@pytest.mark.skipif(not sandbox_available()[0], reason=f"namespaces unavailable here: {sandbox_available()[1]}")
@pytest.mark.parametrize("reader", [
    "data = sys.stdin.buffer.read().decode()",
    "data = input() + '\\n' + input()",
    "data = open(0).read()",
    "data = sys.stdin.read()",
    "data = b''.join(iter(lambda: os.read(0, 3), b'')).decode()",
    "data = ''.join(line for line in sys.stdin)",
    "data = open('/dev/stdin').read()",
])
def test_every_way_of_reading_stdin(reader):  # on the default backend: reading does not depend on it
    tests = {"inputs": [f"{k}\n{k + 1}\n" for k in range(25)], "outputs": [str(2 * k + 1) for k in range(25)]}
    code = f"import os, sys\n{reader}\nprint(sum(map(int, data.split())))\n"
    verdict = verify_code(answer(code), tests, config=config("auto"))
    assert verdict.status == CORRECT and verdict.reason == "passed 25/25", verdict.reason


@pytest.mark.parametrize("backend", BACKENDS)
def test_interpreter_exit_behaviour_is_kept(backend):
    tests = numbered_tests(8)
    cfg = config(backend, min_pass_fraction=0.1)
    code = ("import os, sys, threading, atexit\nk = int(input())\n"
            "if k == 1:\n    out = open(1, 'w')\n    out.write(str(2 * k))\n"  # unclosed: flushed at exit
            "elif k == 2:\n    threading.Thread(target=lambda: (__import__('time').sleep(0.2), print(2 * k))).start()\n"
            "elif k == 3:\n    atexit.register(print, 2 * k)\n"
            "elif k == 4:\n    print(2 * k)\n    sys.exit(0)\n"
            "elif k == 5:\n    print(2 * k)\n    sys.exit(3)\n"
            "elif k == 6:\n    print(2 * k)\n    sys.exit('bye')\n"
            "elif k == 7:\n    print(2 * k)\n    raise KeyError(k)\n"
            "else:\n    print(2 * k, end='')\n")  # no final newline
    verdict = verify_code(answer(code), tests, config=cfg)
    reasons = {t["test"]: t["reason"] for t in verdict.details["tests"]}
    assert [k for k, t in reasons.items() if t] == [5, 6, 7], reasons
    assert reasons[5] == "crashed: exit code 3 (test 5)" and reasons[6] == "crashed: exit code 1 (test 6)"
    assert reasons[7] == "crashed: KeyError (test 7)"
    syntax = verify_code(answer("print(1\n"), tests, config=cfg)
    assert {t["reason"] for t in syntax.details["tests"]} == {f"crashed: SyntaxError (test {k})" for k in range(1, 9)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_output_of_many_tests_beyond_the_run_cap_restarts_the_harness(backend):
    # 40 tests x 20 KB = 800 KB through a 64 KB cap per test: the harness hands over to a fresh run before its
    # reports would pass the cap, and every test still passes; a test printing more than the cap fails alone.
    tests = {"inputs": [f"{k}\n" for k in range(40)], "outputs": [" ".join([str(k)] * 4000) for k in range(40)]}
    code = "k = int(input())\nprint(' '.join([str(k)] * (4000 if k != 17 else 40000)))\n"
    verdict = verify_code(answer(code), tests, config=config(backend, max_output_bytes=64 << 10,
                                                               min_pass_fraction=0.5))
    reasons = {t["test"]: t["reason"] for t in verdict.details["tests"]}
    assert verdict.status == CORRECT and verdict.reason == "passed 39/40", reasons
    assert reasons[18] == "output limit exceeded (test 18)"


@pytest.fixture
def unsafe_only(monkeypatch):
    """No bwrap, no unshare: the unsafe mode (plain child processes), with a fresh probe cache."""
    saved = dict(sandbox._probed)
    sandbox._probed.clear()
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    monkeypatch.setattr(sandbox, "_warned_unsafe", True)
    yield
    sandbox._probed.clear()
    sandbox._probed.update(saved)


def test_unsafe_mode_runs_many_tests_and_cleans_between_them(unsafe_only):
    code = ("import os\nk = int(input())\nprint('leak' if os.path.exists('state.txt') else 2 * k)\n"
            "open('state.txt', 'w').write('x')\nwhile k == 4:\n    pass\n")
    cfg = SandboxConfig(per_test_timeout_s=1.5, unsafe_code_exec=True, min_pass_fraction=0.5)
    verdict = verify_code(answer(code), numbered_tests(50), config=cfg)
    assert verdict.details["backend"] == "unsafe"
    assert verdict.status == CORRECT and verdict.reason == "passed 49/50", verdict.reason
    assert statuses(verdict)[4] == "timeout"
