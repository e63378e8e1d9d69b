"""Run untrusted programs in a throw-away sandbox: namespaces for isolation, rlimits and a watchdog for resources.

Each run is one child process tree (``Sandbox.run``) inside new mount, network, pid, ipc and uts namespaces, made
with bubblewrap (``bwrap``, Debian package ``bubblewrap``) or, without it, util-linux ``unshare``:

* the whole file system is read-only except the run's own temporary directory, seen as ``/tmp`` (also ``$HOME``
  and the working directory); directories that other users cannot enter (``$HOME``, ``/root``) are hidden behind
  empty read-only mounts, except the Python installation itself;
* a new network namespace with nothing but its own loopback: the host's 127.0.0.1, DNS and the rest are gone;
* the program runs as an unprivileged user (uid 65534) in a user namespace of its own, with no capabilities and
  ``no_new_privs``. When this process is root, the in-sandbox runner drops to the real uid 65534 first, so
  ``RLIMIT_NPROC`` applies (root ignores it) and a fork bomb stops at ``max_processes``;
* rlimits on CPU time, address space (``memory_mb``; BLAS thread pools are pinned to one thread so numpy fits),
  processes, file size and core dumps, plus a watchdog here that polls the tree's total RSS and process count,
  enforces the per-test and total wall-clock limits, reads stdout/stderr incrementally and kills the tree once
  the output passes ``max_output_bytes``;
* the pid namespace dies with its first process, so grandchildren (daemons included) never outlive a run.

``sandbox_available()`` probes this once per process. Without working namespaces nothing runs, unless
``unsafe_code_exec`` is set: then programs run as plain child processes with only rlimits and the watchdog
(no isolation, loud warning on stderr).
"""

from __future__ import annotations

import json
import os
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

NOBODY = 65534
SANDBOX_DIR = "/tmp/.sandbox"  # where the run's read-only files (runner, program, tests) appear inside
_MAX_FILE_BYTES = 256 << 20
_STDERR_KEEP = 32 << 10
_PAGE = os.sysconf("SC_PAGE_SIZE")


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


# The first Python code that runs inside the sandbox (trusted): mounts (unshare backend), privilege drop,
# a fresh user namespace, rlimits, then exec of the program. As pid 1 (unshare) it also reaps orphans.
_RUNNER = r'''
import ctypes, json, os, resource, sys
S = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
def fail(msg):
    os.write(2, ("sandbox-setup-failed: %s\n" % msg).encode()); os._exit(125)
enc = lambda s: None if s is None else s.encode()  # noqa: E731
def mount(src, dst, fstype, flags, data=None):
    if libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)) != 0:
        fail("mount %s: %s" % (dst, os.strerror(ctypes.get_errno())))
FLAGS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21}
if "setup" in S:
    if os.stat("/proc/self/ns/mnt").st_ino == S["host_mnt_ns"]:
        fail("not in a new mount namespace")
    mount(None, "/", None, (1 << 14) | (1 << 18))  # MS_REC | MS_PRIVATE
    fds = {op[1]: os.open(op[1], os.O_PATH) for op in S["setup"] if op[0] == "bind"}
    for op in S["setup"]:
        if op[0] == "tmpfs":
            mount("tmpfs", op[1], "tmpfs", 2 | 4, "size=1m,mode=755")
        else:
            os.makedirs(op[2], mode=0o755, exist_ok=True)
            mount("/proc/self/fd/%d" % fds[op[1]], op[2], None, 4096 | (1 << 14))  # MS_BIND | MS_REC
    for line in open("/proc/self/mountinfo").read().splitlines():
        f = line.split()
        point, opts = f[4].encode().decode("unicode_escape"), f[5].split(",")
        if point == "/tmp" or point == "/proc" or point.startswith("/proc/") or "ro" in opts:
            continue
        flags = 32 | 4096 | 1 | sum(FLAGS.get(o, 0) for o in opts)  # MS_REMOUNT | MS_BIND | MS_RDONLY
        if libc.mount(None, enc(point), None, flags, None) != 0 and ctypes.get_errno() != 2:
            fail("read-only remount of %s: %s" % (point, os.strerror(ctypes.get_errno())))
    os.chdir("/tmp")
if not S.get("unsafe"):
    if os.getuid() == 0 and open("/proc/self/uid_map").read().split() == ["0", "0", "4294967295"]:
        os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
        libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE, so this process may write its own uid_map
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(0x10000000) == 0:  # CLONE_NEWUSER: fresh process accounting, no capabilities anywhere
        for name, text in (("setgroups", "deny"), ("uid_map", "65534 %d 1" % uid), ("gid_map", "65534 %d 1" % gid)):
            with open("/proc/self/" + name, "w") as fh:
                fh.write(text)
        libc.prctl(4, 0, 0, 0, 0)  # not dumpable again: the program (same uid) cannot ptrace this process
    elif uid == 0:
        fail("cannot leave uid 0: %s" % os.strerror(ctypes.get_errno()))
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        fail("no_new_privs refused")
def limits():
    mem, cpu = S["memory_bytes"], S["cpu_s"]
    for res, val in ((resource.RLIMIT_AS, (mem, mem)), (resource.RLIMIT_CPU, (cpu, cpu + 1)),
                     (resource.RLIMIT_FSIZE, (S["fsize"], S["fsize"])), (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(res, val)
    if not S.get("unsafe"):
        resource.setrlimit(resource.RLIMIT_NPROC, (S["nproc"], S["nproc"]))
def run():
    limits()
    try:
        os.execv(S["argv"][0], S["argv"])
    except OSError as exc:
        fail("exec %s: %s" % (S["argv"][0], exc))
if os.getpid() != 1 or (child := os.fork()) == 0:
    run()
while True:  # pid 1: reap orphans until the program exits, then exit with its status (killing the rest)
    pid, status = os.wait()
    if pid == child:
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)
'''

_PROBE = ("import os, socket\nnames = sorted(n for _, n in socket.if_nameindex())\n"
          "ok = names in ([], ['lo']) and not os.access('/usr', os.W_OK) and os.getuid() == 65534\n"
          "print('sandbox-ok' if ok else 'sandbox-bad %s uid=%d' % (names, os.getuid()))\n")

_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}


def _needed_paths() -> list[str]:
    """Where the interpreter, its standard library and the venv's packages live (must stay visible)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable))}
    real = sorted({os.path.realpath(p) for p in paths if p} | {p for p in paths if p and os.path.isdir(p)})
    return [p for p in real if os.path.isdir(p)]


def _visibility_ops() -> list[tuple[str, ...]]:
    """Mount plan hiding $HOME and every directory others may not enter, then re-exposing Python (read-only)."""
    needed = _needed_paths()
    masks: set[str] = set()
    home = os.path.realpath(os.path.expanduser("~"))
    if os.path.isdir(home) and home not in ("/", "/tmp") and not "/tmp".startswith(home + "/"):
        masks.add(home)
    for path in needed:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            ancestor = "/" + "/".join(parts[:i])
            try:
                if not os.stat(ancestor).st_mode & 0o001 and ancestor != "/tmp":
                    masks.add(ancestor)
            except OSError:
                pass
    top = sorted(m for m in masks if not any(m.startswith(o + "/") for o in masks))
    ops: list[tuple[str, ...]] = [("tmpfs", m) for m in top]
    exposed: list[str] = []
    for path in needed:
        hidden = any(path.startswith(m + "/") or path == m for m in top) or path == "/tmp" or path.startswith("/tmp/")
        if hidden and not any(path.startswith(e + "/") or path == e for e in exposed):
            exposed.append(path)
    ops += [("bind", p, p) for p in exposed if not p.startswith("/tmp/")]
    ops.append(("work", "/tmp"))  # placeholder: the run's directory
    ops += [("bind", p, p) for p in exposed if p.startswith("/tmp/")]
    return ops


class _Backend:
    def __init__(self, name: str, exe: str | None):
        self.name, self.exe = name, exe
        self.ops = _visibility_ops() if exe else []
        help_text = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout if name == "bwrap" else ""
        self.bwrap_size = "--size" in help_text

    def argv(self, root: str, spec: dict) -> list[str]:
        inner = root + "/ro/runner.py" if self.name != "bwrap" else SANDBOX_DIR + "/runner.py"
        cmd = [sys.executable, "-I", "-S", inner]
        if self.name == "unsafe":
            return cmd + [json.dumps(spec)]
        ops = [("bind", root + "/work", "/tmp") if op[0] == "work" else op for op in self.ops]
        ops.insert(ops.index(("bind", root + "/work", "/tmp")) + 1, ("bind", root + "/ro", SANDBOX_DIR))
        if self.name == "unshare":
            spec = dict(spec, setup=ops, host_mnt_ns=os.stat("/proc/self/ns/mnt").st_ino)
            user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
            return [self.exe, *user, "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
                    "--mount-proc", "--", *cmd, json.dumps(spec)]
        args = [self.exe, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--die-with-parent", "--new-session", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        if os.geteuid() != 0:
            args += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
        masks, made = [op[1] for op in ops if op[0] == "tmpfs"], set()
        for op in ops:
            if op[0] == "tmpfs":
                args += (["--size", str(1 << 20)] if self.bwrap_size else []) + ["--tmpfs", op[1]]
                continue
            parts = op[2].split("/")
            for i in range(2, len(parts)):  # bwrap would create missing parents as 0700: make them 0755
                parent = "/".join(parts[:i])
                if parent not in made and any(parent.startswith(m + "/") for m in masks):
                    made.add(parent)
                    args += ["--dir", parent]
            args += ["--bind" if op[2] == "/tmp" else "--ro-bind", op[1], op[2]]
        args += [arg for mask in masks for arg in ("--remount-ro", mask)] + ["--chdir", "/tmp", "--clearenv"]
        args += [arg for item in dict(_ENV, HOME="/tmp", TMPDIR="/tmp").items() for arg in ("--setenv", *item)]
        return args + ["--", *cmd, json.dumps(spec)]


_lock = threading.Lock()
_probed: dict[str, tuple[bool, str, _Backend | None]] = {}
_warned_unsafe = False


def _probe(preference: str) -> tuple[bool, str, _Backend | None]:
    tried = []
    for name in (("bwrap", "unshare") if preference == "auto" else (preference,)):
        exe = shutil.which(name)
        if exe is None:
            tried.append(f"{name}: not installed")
            continue
        try:
            backend = _Backend(name, exe)
            with Sandbox(SandboxConfig(), {"probe.py": _PROBE}, backend) as box:
                res = box.run([sys.executable, "-I", box.path("probe.py")], timeout_s=30)
        except OSError as exc:
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


def get_backend(config: SandboxConfig) -> _Backend:
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
    return _Backend("unsafe", None)


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


class Sandbox:
    """A temporary directory for one row; ``run`` executes one program in it, fully isolated, and cleans up."""

    def __init__(self, config: SandboxConfig, files: dict[str, str], backend: _Backend | None = None):
        self.config = config
        self.backend = backend or get_backend(config)
        self.root = tempfile.mkdtemp(prefix="distill-sandbox-")
        os.makedirs(self.root + "/ro")
        for name, text in dict(files, **{"runner.py": _RUNNER}).items():
            with open(os.path.join(self.root, "ro", name), "w", encoding="utf-8") as fh:
                fh.write(text)
        os.chmod(self.root + "/ro", 0o755)

    def path(self, name: str) -> str:
        """Path of one of the row's files as the program sees it."""
        inside = self.root + "/ro" if self.backend.name == "unsafe" else SANDBOX_DIR
        return f"{inside}/{name}"

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        _rmtree(self.root)

    def _fresh_workdir(self) -> str:
        work = self.root + "/work"
        _rmtree(work)
        os.makedirs(work + "/.sandbox")
        if os.geteuid() == 0 and self.backend.name != "unsafe":
            os.chown(work, NOBODY, NOBODY)
        return work

    def run(self, argv: list[str], stdin: str | None = None, timeout_s: float = 10.0,
            idle_timeout_s: float | None = None, on_line=None) -> RunResult:
        """Run ``argv`` (paths from ``path()``) with ``stdin``; kill the tree on any limit. ``on_line`` sees each
        stdout line and returns False to stop the run; ``idle_timeout_s`` limits the time between lines."""
        cfg = self.config
        work = self._fresh_workdir()
        spec = {"argv": argv, "memory_bytes": cfg.memory_mb << 20, "cpu_s": int(cfg.cpu_time_s),
                "nproc": cfg.max_processes, "fsize": _MAX_FILE_BYTES, "unsafe": self.backend.name == "unsafe"}
        stdin_path = self.root + "/stdin"
        with open(stdin_path, "w", encoding="utf-8") as fh:
            fh.write(stdin or "")
        env = dict(_ENV, HOME=work if spec["unsafe"] else "/tmp", TMPDIR=work if spec["unsafe"] else "/tmp")
        with open(stdin_path, "rb") as stdin_fh:
            proc = subprocess.Popen(self.backend.argv(self.root, spec), stdin=stdin_fh, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, cwd=work, env=env, start_new_session=True)
        try:
            result = self._watch(proc, timeout_s, idle_timeout_s, on_line)
        finally:
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
                if rss > cfg.memory_mb << 20 and (len(pids) <= 3 or _pss(pids) > cfg.memory_mb << 20):
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
