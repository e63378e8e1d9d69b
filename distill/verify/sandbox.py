"""Run untrusted programs in a throw-away sandbox: namespaces for isolation, rlimits and a watchdog for resources.

Each run is one child process tree (``Sandbox.run``) inside new mount, network, pid, ipc and uts namespaces, made
with bubblewrap (``bwrap``, Debian package ``bubblewrap``) or, without it, util-linux ``unshare``:

* an empty root: only the Python installation and the shared libraries it loads are shown, read-only, at their
  host paths (``sandbox_backends``); a size-capped tmpfs ``/tmp`` (``disk_mb``) is the working directory and
  ``$HOME``; a minimal ``/dev``, the run's own ``/proc`` and its files under ``/sandbox`` (read-only). No other
  host path exists inside, so neither the data being graded nor a host unix socket can be reached;
* a new network namespace with nothing but its own loopback: the host's 127.0.0.1, DNS and the rest are gone;
* the program runs as an unprivileged user (uid 65534) in a user namespace of its own, with no capabilities and
  ``no_new_privs``. When this process is root, the in-sandbox runner drops to the real uid 65534 first, so
  ``RLIMIT_NPROC`` applies (root ignores it) and a fork bomb stops at ``max_processes``;
* rlimits on CPU time, address space (``memory_mb``; BLAS thread pools are pinned to one thread so numpy fits),
  processes, file size and core dumps, plus a watchdog here that polls the tree's total RSS and process count,
  enforces the per-test and total wall-clock limits, reads stdout/stderr incrementally and kills the tree once
  the output passes ``max_output_bytes``;
* the run dies with its grader: the runner (``sandbox_runner``) holds the read end of a pipe only this process
  writes to and kills the whole pid namespace when it reads end-of-file, which happens however this process
  ends (``kill -9`` included); the pid namespace dies with its first process, so daemons never outlive a run.
  Files and stdin travel as memfds: no run leaves a file on the host.

``sandbox_available()`` probes this once per process. Without working namespaces nothing runs, unless
``unsafe_code_exec`` is set: then programs run as plain child processes in a host temporary directory with only
rlimits and the watchdog (no isolation, loud warning on stderr); such directories orphaned by a killed grader are
removed by the next grader's first run (they are named by pid).
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from distill.errors import UserError
from distill.verify.sandbox_backends import NOBODY, SANDBOX_DIR, Backend, memfd

__all__ = ["NOBODY", "SANDBOX_DIR", "RunResult", "Sandbox", "SandboxConfig", "SandboxUnavailable", "get_backend",
           "sandbox_available"]

_MAX_FILE_BYTES = 256 << 20
_STDERR_KEEP = 32 << 10
_PAGE = os.sysconf("SC_PAGE_SIZE")
_HOST_DIR_PREFIX = "distill-sandbox-"  # unsafe mode only: f"{prefix}{grader pid}-{random}"


@dataclass
class SandboxConfig:
    """Limits and switches for running generated code (``distill filter`` / ``distill eval``, code domain)."""

    per_test_timeout_s: float = field(default=6.0, metadata={"help": "Wall-clock limit for one test (seconds)."})
    total_timeout_s: float = field(default=60.0, metadata={"help": "Wall-clock limit for all tests of one row."})
    cpu_time_s: int = field(default=10, metadata={"help": "CPU-time limit per process (seconds, RLIMIT_CPU)."})
    memory_mb: int = field(default=2048, metadata={
        "help": "Memory limit in MiB: address space per process (RLIMIT_AS, BLAS pinned to one thread so numpy "
                "fits) and total resident memory of the program's process tree (watchdog)."})
    max_processes: int = field(default=64, metadata={
        "help": "Processes/threads the program may have at once (RLIMIT_NPROC in its own user namespace)."})
    max_output_bytes: int = field(default=32 << 20, metadata={
        "help": "Stdout+stderr bytes one test may print before it is killed."})
    min_pass_fraction: float = field(default=1.0, metadata={
        "help": "Fraction of tests that must pass for the row to count as correct (1.0 = all)."})
    unsafe_code_exec: bool = field(default=False, metadata={
        "help": "Run generated code even where namespaces are refused: WITHOUT isolation (rlimits only)."})
    max_workers: int | None = field(default=None, metadata={
        "help": "Rows verified in parallel (default: number of CPU cores)."})
    float_rel_tol: float = field(default=1e-6, metadata={"help": "Relative tolerance when comparing floats."})
    float_abs_tol: float = field(default=1e-6, metadata={"help": "Absolute tolerance when comparing floats."})
    backend: str = field(default="auto", metadata={"help": "Isolation: auto, bwrap or unshare."})
    disk_mb: int = field(default=256, metadata={
        "help": "Size in MiB of the program's writable /tmp (a tmpfs inside the sandbox, also its working "
                "directory): all files one test writes together."})


class SandboxUnavailable(UserError):
    """Namespaces are refused here, so generated code cannot be isolated (and ``unsafe_code_exec`` is off)."""


@dataclass
class RunResult:
    returncode: int | None
    stdout: bytes
    stderr: bytes
    killed: str | None = None  # timeout | memory | output | processes | stopped (by the caller)
    wall_s: float = 0.0

    @property
    def setup_failed(self) -> bool:
        return self.returncode == 125 and b"sandbox-setup-failed" in self.stderr


_PROBE = ("import os, socket, sys\nnames = sorted(n for _, n in socket.if_nameindex())\n"
          "ok = (names in ([], ['lo']) and not os.access('/', os.W_OK) and os.access('/tmp', os.W_OK)\n"
          "      and os.getuid() == 65534 and not os.path.exists(sys.argv[1]))\n"
          "print('sandbox-ok' if ok else 'sandbox-bad %s uid=%d' % (names, os.getuid()))\n")
# A host path that must not be visible inside (any path outside the layout would do).
_PROBE_CANARY = next((p for p in ("/etc/passwd", "/etc/hostname", "/etc/os-release", "/var", "/home")
                      if os.path.exists(p)), "/nonexistent")

_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}

_lock = threading.Lock()
_probed: dict[str, tuple[bool, str, Backend | None]] = {}
_warned_unsafe = False


def _probe(preference: str) -> tuple[bool, str, Backend | None]:
    tried = []
    for name in (("bwrap", "unshare") if preference == "auto" else (preference,)):
        exe = shutil.which(name)
        if exe is None:
            tried.append(f"{name}: not installed")
            continue
        try:
            backend = Backend(name, exe)
            with Sandbox(SandboxConfig(), {"probe.py": _PROBE}, backend) as box:
                res = box.run([sys.executable, "-I", box.path("probe.py"), _PROBE_CANARY], timeout_s=30)
        except (OSError, subprocess.SubprocessError) as exc:  # bwrap too old, ldd hanging, ...
            tried.append(f"{name}: {exc}")
            continue
        out = res.stdout.decode(errors="replace").strip()
        if res.returncode == 0 and out == "sandbox-ok":
            return True, name, backend
        detail = (res.stderr.decode(errors="replace").strip().splitlines() or [out or f"exit {res.returncode}"])[-1]
        tried.append(f"{name}: {detail[:200]}")
    return False, "; ".join(tried), None


def sandbox_available(backend: str = "auto") -> tuple[bool, str]:
    """Whether namespaces work here (probed once, cached): (True, backend name) or (False, why not)."""
    with _lock:
        if backend not in _probed:
            _probed[backend] = _probe(backend)
        ok, why, _ = _probed[backend]
    return ok, why


def get_backend(config: SandboxConfig) -> Backend:
    """The isolation backend to use, or SandboxUnavailable; with ``unsafe_code_exec`` a warned-about fallback."""
    global _warned_unsafe
    ok, why = sandbox_available(config.backend)
    if ok:
        return _probed[config.backend][2]
    if not config.unsafe_code_exec:
        raise SandboxUnavailable(
            f"code sandbox unavailable: the kernel refuses user/mount/network namespaces ({why}); "
            "--unsafe-code-exec runs generated code WITHOUT isolation")
    with _lock:
        if not _warned_unsafe:
            _warned_unsafe = True
            bar = "!" * 100
            print(f"{bar}\nWARNING: --unsafe-code-exec: namespaces are refused here ({why}).\nGenerated code runs "
                  "WITHOUT isolation: it can read and write your files and use the network; only rlimits and a "
                  f"watchdog apply.\n{bar}", file=sys.stderr, flush=True)
    return Backend("unsafe", None)


def _tree(root: int) -> tuple[list[int], int]:
    """Descendants of ``root`` (itself included) and their total resident memory in bytes."""
    children: dict[int, list[int]] = defaultdict(list)
    rss: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(name))
        rss[int(name)] = int(fields[21]) * _PAGE
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found, sum(rss.get(p, 0) for p in found)


def _pss(pids: list[int]) -> int:
    """Proportional set size of ``pids`` (bytes): RSS counts pages shared after fork once per process."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            continue
    return total


def _exited(proc: subprocess.Popen) -> bool:
    """Whether the child has exited, without reaping it (so its pid cannot be reused while we kill around it)."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_tree(proc: subprocess.Popen) -> None:
    if proc.returncode is not None:
        return
    for _ in range(50):
        pids, _ = _tree(proc.pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if _exited(proc) and len(_tree(proc.pid)[0]) <= 1:
            return
        time.sleep(0.01)


def _rmtree(path: str) -> None:
    """Remove a run's directory even where the program left directories without permissions (non-root)."""
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            try:
                if not os.path.islink(full := os.path.join(dirpath, name)):
                    os.chmod(full, 0o700)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)


def _sweep_orphaned_host_dirs() -> None:
    """Remove the unsafe-mode run directories of graders that died without cleaning up (``kill -9``).
    Directories are named by the grader's pid; only ours (same owner) whose process is gone are removed."""
    base = tempfile.gettempdir()
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        match = re.fullmatch(re.escape(_HOST_DIR_PREFIX) + r"(\d+)-\w+", name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        path = os.path.join(base, name)
        try:
            if os.lstat(path).st_uid != os.geteuid():
                continue
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            _rmtree(path)
        except OSError:
            continue


_swept = False


class Sandbox:
    """One row's files; ``run`` executes one program among them in a fresh sandbox, fully isolated, each time.

    With isolation nothing is written on the host: the files are handed to each run as memfds. Without it
    (``unsafe_code_exec``) they live in a host temporary directory, removed by ``close``."""

    def __init__(self, config: SandboxConfig, files: dict[str, str], backend: Backend | None = None):
        global _swept
        self.config = config
        self.backend = backend or get_backend(config)
        self.files = dict(files)
        self.root: str | None = None
        if self.backend.name == "unsafe":
            with _lock:
                if not _swept:
                    _swept = True
                    _sweep_orphaned_host_dirs()
            self.root = tempfile.mkdtemp(prefix=f"{_HOST_DIR_PREFIX}{os.getpid()}-")
            os.makedirs(self.root + "/ro")
            for name, text in self.files.items():
                with open(os.path.join(self.root, "ro", name), "w", encoding="utf-8") as fh:
                    fh.write(text)

    def path(self, name: str) -> str:
        """Path of one of the row's files as the program sees it."""
        return f"{self.root}/ro/{name}" if self.backend.name == "unsafe" else f"{SANDBOX_DIR}/{name}"

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.root is not None:
            _rmtree(self.root)

    def run(self, argv: list[str], stdin: str | None = None, timeout_s: float = 10.0,
            idle_timeout_s: float | None = None, on_line=None) -> RunResult:
        """Run ``argv`` (paths from ``path()``) with ``stdin``; kill the tree on any limit. ``on_line`` sees each
        stdout line and returns False to stop the run; ``idle_timeout_s`` limits the time between lines."""
        cfg = self.config
        disk_bytes = max(1, cfg.disk_mb) << 20
        spec = {"argv": argv, "memory_bytes": cfg.memory_mb << 20, "cpu_s": int(cfg.cpu_time_s),
                "nproc": cfg.max_processes, "fsize": min(_MAX_FILE_BYTES, disk_bytes)}
        if self.backend.name == "unsafe":
            cwd = self.root + "/work"
            _rmtree(cwd)
            os.makedirs(cwd)
            env = dict(_ENV, HOME=cwd, TMPDIR=cwd)
        else:
            cwd, env = "/", dict(_ENV, HOME="/tmp", TMPDIR="/tmp")
        lifeline, lifeline_write = os.pipe()  # only this process holds the write end (close-on-exec)
        opened = [lifeline]
        try:
            opened.append(stdin_fd := memfd("distill-sandbox-stdin", (stdin or "").encode()))
            command, file_fds = self.backend.command(dict(spec, lifeline=lifeline), self.files, disk_bytes, env)
            opened += file_fds
            # umask: bwrap creates mount points with it; a restrictive one would hide them from uid 65534.
            proc = subprocess.Popen(command, stdin=stdin_fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                    env=env, start_new_session=True, pass_fds=[lifeline, *file_fds], umask=0o022)
        except BaseException:
            os.close(lifeline_write)
            raise
        finally:
            for fd in opened:
                os.close(fd)
        try:
            result = self._watch(proc, timeout_s, idle_timeout_s, on_line)
        finally:
            os.close(lifeline_write)  # the runner now kills whatever is left of the run by itself
            _kill_tree(proc)  # before reaping: the zombie keeps its pid and process group from being reused
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        result.returncode = proc.returncode
        return result

    def _watch(self, proc: subprocess.Popen, timeout_s: float, idle_timeout_s: float | None, on_line) -> RunResult:
        cfg = self.config
        start = last_line = time.monotonic()
        out, err, total, killed, pending = bytearray(), bytearray(), 0, None, 0
        sel = selectors.DefaultSelector()
        for stream in (proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)
            sel.register(stream.fileno(), selectors.EVENT_READ, stream)
        next_scan, exited_at = start, None
        while killed is None:
            now = time.monotonic()
            if _exited(proc):
                exited_at = exited_at or now
                if not sel.get_map() or now - exited_at > 0.5:  # orphans holding the pipes (unsafe mode only)
                    break
            if now - start > timeout_s or (idle_timeout_s and now - last_line > idle_timeout_s):
                killed = "timeout"
                break
            if now >= next_scan:
                pids, rss = _tree(proc.pid)
                if rss > cfg.memory_mb << 20 and (len(pids) <= 4 or _pss(pids) > cfg.memory_mb << 20):
                    killed = "memory"
                elif len(pids) > cfg.max_processes + 4:
                    killed = "processes"
                next_scan = now + 0.1
            for key, _ in sel.select(0.05):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                total += len(chunk)
                if key.data is proc.stderr:
                    err += chunk
                    if len(err) > 2 * _STDERR_KEEP:
                        del err[:-_STDERR_KEEP]
                    continue
                out += chunk
                while on_line is not None and killed is None and (end := out.find(b"\n", pending)) >= 0:
                    line, pending = bytes(out[pending:end]), end + 1
                    last_line = time.monotonic()
                    if on_line(line.decode("utf-8", errors="replace")) is False:
                        killed = "stopped"
            if total > cfg.max_output_bytes and killed is None:
                killed = "output"
        sel.close()
        return RunResult(None, bytes(out), bytes(err), killed, time.monotonic() - start)
