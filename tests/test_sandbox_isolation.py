"""The sandbox shows a program nothing of the host: no data to read back, no socket to reach, no survivor.

The attacks an adversarial probe found against the old sandbox (issue 19), as tests on every isolation backend
this machine allows (each skipped with the reason where it does not):

* reward hacking: a program that solves nothing reads the dataset being graded from a world-readable directory
  outside /tmp and prints the expected output; it must be graded incorrect (its file simply does not exist);
* a host unix socket (filesystem or abstract) must receive nothing;
* ``kill -9`` / ``kill -15`` of the grader while a program sleeps must leave no process and no temporary
  directory (the unsafe mode, which has a host directory, must sweep it on the next start);
* what programs legitimately need still works: their own files in the working directory and /tmp (up to the
  ``disk_mb`` cap), the standard library, multiprocessing.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import distill.verify.sandbox as sandbox
from distill.verify import CORRECT, INCORRECT
from distill.verify.code import SandboxConfig, sandbox_available, verify_code
from distill.verify.sandbox_backends import Backend, python_layout

REPO = Path(__file__).resolve().parents[1]
NAMESPACED = [pytest.param(name, marks=pytest.mark.skipif(not sandbox_available(name)[0],
                                                          reason=f"{name} unavailable here: {sandbox_available(name)[1]}"))
              for name in ("bwrap", "unshare")]
SUM_TESTS = {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]}


def answer(code: str) -> str:
    return f"```python\n{code}```\n"


def config(backend: str, **overrides) -> SandboxConfig:
    return SandboxConfig(**{"per_test_timeout_s": 20, "total_timeout_s": 60, "backend": backend, **overrides})


@pytest.fixture
def world_readable_dir():
    """A directory every user may read, outside /tmp (where the old sandbox showed the host read-only)."""
    if not os.access("/var/tmp", os.W_OK):
        pytest.skip("/var/tmp is not writable here")
    path = Path(tempfile.mkdtemp(prefix="distill-isolation-test-", dir="/var/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


def readable_by_anyone(path: Path) -> bool:
    parents_enterable = all(p.stat().st_mode & stat.S_IXOTH for p in path.parents)
    return parents_enterable and bool(path.stat().st_mode & stat.S_IROTH)


# ---------------------------------------------------------------- reward hacking: the graded data is not there

CHEAT_KNOWN_PATH = """\
import json, sys
given = sys.stdin.read()
for line in open({path!r}):
    tests = json.loads(json.loads(line)["test_cases"])
    for test_input, expected in zip(tests["inputs"], tests["outputs"]):
        if test_input == given:
            print(expected, end="")
"""

CHEAT_SEARCH = """\
import json, os, sys
given = sys.stdin.read()
for top, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(top, d) not in ("/proc", "/sys")]
    for name in files:
        if name.endswith((".jsonl", ".json")) and "site-packages" not in top:
            try:
                for line in open(os.path.join(top, name)):
                    tests = json.loads(json.loads(line)["test_cases"])
                    for test_input, expected in zip(tests["inputs"], tests["outputs"]):
                        if test_input == given:
                            print(expected, end="")
                            sys.exit(0)
            except Exception:
                continue
print("nothing found")
"""


@pytest.mark.parametrize("backend", NAMESPACED)
def test_cheating_program_cannot_read_the_graded_dataset(backend, world_readable_dir):
    dataset = world_readable_dir / "graded.jsonl"
    dataset.write_text(json.dumps({"problem": "add two numbers", "test_cases": json.dumps(SUM_TESTS)}) + "\n")
    dataset.chmod(0o644)
    assert readable_by_anyone(dataset)
    cheat = CHEAT_KNOWN_PATH.format(path=str(dataset))
    # The attack is real: outside the sandbox this program, which computes nothing, prints the right answer.
    host = subprocess.run([sys.executable, "-I", "-c", cheat], input="3 4\n", capture_output=True, text=True,
                          timeout=30)
    assert host.stdout == "7\n", host.stderr
    verdict = verify_code(answer(cheat), SUM_TESTS, config=config(backend))
    assert verdict.status == INCORRECT and verdict.reason == "crashed: FileNotFoundError (test 1)", verdict.reason
    searched = verify_code(answer(CHEAT_SEARCH), SUM_TESTS, config=config(backend))
    assert searched.status == INCORRECT, searched.reason
    assert searched.reason == "failed test 1: expected '3' got 'nothing found'", searched.reason


@pytest.mark.parametrize("backend", NAMESPACED)
def test_root_holds_only_the_python_installation(backend):
    layout = python_layout()
    shown = {p.strip("/").split("/")[0] for p in [*layout.dirs, *(p for _, p in layout.symlinks),
                                                   *(p for _, p in layout.binds)]}
    probe = textwrap.dedent(f"""\
        import json, os
        print(json.dumps({{"root": sorted(os.listdir("/")), "etc": sorted(os.listdir("/etc")),
                          "repo_files": os.path.exists({str(REPO / "README.md")!r}),
                          "home_visible": [p for p in ("/var/tmp", "/run", "/home", {str(Path.home())!r} + "/.cache")
                                           if os.path.exists(p)]}}))
        """)
    with sandbox.Sandbox(config(backend), {"probe.py": probe}) as box:
        run = box.run([sys.executable, "-I", box.path("probe.py")], timeout_s=30)
    assert run.returncode == 0, run.stderr.decode()
    seen = json.loads(run.stdout)
    assert set(seen["root"]) <= shown | {"dev", "proc", "tmp", "sandbox"}, seen["root"]
    assert seen["etc"] in ([], ["ld.so.cache"]) and not seen["repo_files"] and seen["home_visible"] == []


# ---------------------------------------------------------------- host sockets

@pytest.mark.parametrize("backend", NAMESPACED)
def test_host_unix_sockets_receive_nothing(backend, world_readable_dir):
    path = str(world_readable_dir / "listener.sock")
    abstract = f"\0distill-isolation-test-{uuid.uuid4().hex}"
    servers = []
    for address in (path, abstract):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(address)
        server.listen(5)
        server.setblocking(False)
        servers.append(server)
    os.chmod(path, 0o777)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:  # the listener works from the host
            probe.connect(path)
            servers[0].accept()[0].close()
        for address, expected in ((path, "FileNotFoundError"), (abstract, "ConnectionRefusedError")):
            code = (f"import socket\ns = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
                    f"s.connect({address!r})\ns.sendall(b'leak')\nprint('connected')\n")
            verdict = verify_code(answer(code), SUM_TESTS, config=config(backend))
            assert verdict.status == INCORRECT and verdict.reason == f"crashed: {expected} (test 1)", verdict.reason
        for server in servers:
            with pytest.raises(BlockingIOError):
                server.accept()  # nothing ever reached the host's listeners
    finally:
        for server in servers:
            server.close()


# ---------------------------------------------------------------- the run dies with its grader

GRADER = """\
import sys
from distill.verify import sandbox
from distill.verify.code import SandboxConfig, verify_code
backend, program = sys.argv[1], sys.argv[2]
config = SandboxConfig(backend=backend, per_test_timeout_s=300, total_timeout_s=300)
if backend == "unsafe":  # as --unsafe-code-exec would, where namespaces are refused
    with sandbox.Sandbox(config, {"p.py": program}, sandbox.Backend("unsafe", None)) as box:
        box.run([sys.executable, "-I", box.path("p.py")], timeout_s=300)
else:
    verify_code("```python\\n" + program + "```", {"inputs": ["1\\n"], "outputs": ["1\\n"]}, config=config)
"""


def process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, start time, state) of every process."""
    table = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        table[int(name)] = (int(fields[1]), fields[19].decode(), fields[0].decode())
    return table


def descendants(root: int) -> set[tuple[int, str]]:
    """(pid, start time) of every process below ``root``."""
    table, found, stack = process_table(), set(), [root]
    while stack:
        parent = stack.pop()
        for pid, (ppid, start, _) in table.items():
            if ppid == parent:
                found.add((pid, start))
                stack.append(pid)
    return found


def alive(processes: set[tuple[int, str]]) -> set[tuple[int, str]]:
    table = process_table()
    return {(pid, start) for pid, start in processes if pid in table and table[pid][1] == start
            and table[pid][2] != "Z"}


def marked(marker: str) -> list[int]:
    """The processes running the sleeper: an argument that *starts* with the marker comment (the grader's own
    command line holds the program text, marker inside, so a substring match would count it too)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(arg.startswith(f"# {marker}".encode())
                   for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")):
                found.append(int(pid))
        except OSError:
            pass
    return found


def host_dirs() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("distill-sandbox-")}


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "kill-15"])
@pytest.mark.parametrize("backend", [*NAMESPACED, "unsafe"])
def test_killed_grader_leaves_no_survivor_and_no_temp_dir(backend, sig):
    marker = f"sleeper-{uuid.uuid4().hex}"
    # The sleeping program re-executes itself with the marker on its command line, and leaves a daemon too.
    program = (f"import os, sys\nif os.fork() == 0:\n    os.setsid()\n"
               f"os.execv(sys.executable, [sys.executable, '-c', '# {marker}\\nimport time; time.sleep(600)'])\n")
    before = host_dirs()
    grader = subprocess.Popen([sys.executable, "-c", GRADER, backend, program], cwd=REPO)
    try:
        assert wait_until(lambda: len(marked(marker)) >= 2, 60), "the sleeping program never started"
        tree = descendants(grader.pid)
        assert len(tree) >= 3
        grader.send_signal(sig)
        assert grader.wait(timeout=30) == -sig
        assert wait_until(lambda: not alive(tree) and not marked(marker), 60), (alive(tree), marked(marker))
        left = host_dirs() - before
        if backend != "unsafe":
            assert left == set()  # with isolation nothing was ever written on the host
        else:  # without it the run's directory stays until the next grader's first run sweeps it
            assert left == {n for n in left if n.startswith(f"distill-sandbox-{grader.pid}-")} and left
            subprocess.run([sys.executable, "-c", GRADER, "unsafe", "print(1)\n"], cwd=REPO, check=True, timeout=60)
            assert host_dirs() - before == set()
    finally:
        grader.kill()
        grader.wait()
        for pid in marked(marker):
            os.kill(pid, signal.SIGKILL)


def test_unsafe_sweep_keeps_directories_of_live_graders(monkeypatch):
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    base = Path(tempfile.gettempdir())
    orphan, busy = base / f"distill-sandbox-{dead.pid}-orphan", base / f"distill-sandbox-{live.pid}-busy"
    try:
        for path in (orphan, busy):
            (path / "ro").mkdir(parents=True)
            (path / "ro" / "tests.json").write_text("{}")
        monkeypatch.setattr(sandbox, "_swept", False)
        with sandbox.Sandbox(SandboxConfig(), {"p.py": "print(1)\n"}, Backend("unsafe", None)) as box:
            assert Path(box.root).name.startswith(f"distill-sandbox-{os.getpid()}-")
        assert not orphan.exists() and busy.exists() and not Path(box.root).exists()
    finally:
        live.kill()
        live.wait()
        for path in (orphan, busy):
            subprocess.run(["rm", "-rf", str(path)], check=True)


# ---------------------------------------------------------------- what programs need still works

@pytest.mark.parametrize("backend", NAMESPACED)
def test_program_uses_its_files_the_standard_library_and_processes(backend):
    code = textwrap.dedent("""\
        import bisect, bz2, collections, ctypes, datetime, decimal, fractions, hashlib, heapq, itertools, json
        import lzma, math, multiprocessing, os, re, sqlite3, ssl, statistics, tempfile, unicodedata, zlib
        assert os.getcwd() == "/tmp" and os.path.expanduser("~") == "/tmp"
        with open("notes.txt", "w") as fh:
            fh.write("kept")
        with tempfile.NamedTemporaryFile("w+", delete=False) as fh:
            fh.write("scratch")
        assert open("notes.txt").read() == "kept" and open(fh.name).read() == "scratch"
        db = sqlite3.connect(os.path.join(os.getcwd(), "db.sqlite"))
        db.execute("create table t (x)")
        db.execute("insert into t values (41)")
        assert db.execute("select x + 1 from t").fetchone() == (42,)
        with multiprocessing.Pool(2) as pool:
            assert pool.map(abs, [-1, -2]) == [1, 2]
        a, b = map(int, input().split())
        print(a + b)
        """)
    verdict = verify_code(answer(code), SUM_TESTS, config=config(backend))
    assert verdict.status == CORRECT, verdict.reason


@pytest.mark.parametrize("backend", NAMESPACED)
def test_disk_cap_holds_for_all_files_together(backend):
    code = textwrap.dedent("""\
        import errno
        written = 0
        try:
            while True:
                with open("f%d" % written, "wb") as fh:
                    fh.write(b"x" * (1 << 20))
                written += 1
        except OSError as exc:
            print(written, errno.errorcode[exc.errno])
        """)
    with sandbox.Sandbox(config(backend, disk_mb=8), {"fill.py": code}) as box:
        run = box.run([sys.executable, "-I", box.path("fill.py")], timeout_s=30)
    count, code_name = run.stdout.decode().split()
    assert code_name == errno.errorcode[errno.ENOSPC] and int(count) <= 8, run.stdout  # 8 x 1 MiB fill 8 MiB


@pytest.mark.parametrize("backend", NAMESPACED)
def test_an_interpreter_installed_under_tmp_still_runs(backend, tmp_path):
    """A CI checkout under /tmp has its venv there: the sandbox's own /tmp must not hide the interpreter."""
    ADD = "a, b = map(int, input().split())\nprint(a + b)\n"  # noqa: N806
    venv = Path(tempfile.mkdtemp(prefix="venv-", dir="/tmp"))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                       check=True, timeout=120)
        program = ("import sys\nfrom distill.verify.code import SandboxConfig, verify_code\n"
                   f"print(verify_code({answer(ADD)!r}, {SUM_TESTS!r}, "
                   f"config=SandboxConfig(per_test_timeout_s=10, backend={backend!r})).status)\n")
        result = subprocess.run([str(venv / "bin" / "python"), "-c", program], capture_output=True, text=True,
                                timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.stdout.strip() == CORRECT, result.stderr[-2000:]
    finally:
        subprocess.run(["rm", "-rf", str(venv)], check=False)
