"""Runs inside the code sandbox (untrusted program's side): every stdin/stdout test of one program in one run.

Not imported by distill: ``distill.verify.code_harness`` ships this file's *text* into the sandbox and runs it
as ``python -I HARNESS SPEC`` under the sandbox runner (same rlimits, namespaces and watchdog as one program).
Standard library only. ``SPEC`` is a JSON object: ``start`` (first test), ``program``, ``prelude``, ``inputs``
and ``index`` (paths of the row's files), ``timeout_s`` (per test), ``output_bytes`` (the run's output cap),
``cpu_s`` (this process's own RLIMIT_CPU) and ``isolated`` (namespaced backend: SysV IPC here is the run's own).

For each test the harness forks a child from its pristine self (the program's module state never reaches the
next test) that gets the test's input as fd 0 (a memfd), pipes as fd 1 and 2, and runs the compiled program as
``__main__`` the way ``python -I solution.py`` would: same ``sys.std*`` objects (never touched here, so nothing
is buffered), exit status from ``SystemExit``, tracebacks through ``sys.excepthook``, non-daemon threads joined,
``atexit`` run, globals finalised and the streams flushed. The child inherits the runner's rlimits (address
space, CPU, file size, processes); the watchdog outside still sums the whole tree's memory and process count.

The harness enforces the per-test wall-clock limit and the output cap itself, then kills whatever the test left
(as a child subreaper, daemons of the program stay below it), empties the working directory (``/tmp``) and, in
a namespaced run, removes SysV IPC objects, so nothing a test leaves reaches the next one. POSIX message queues
cannot be listed from here, so the child may not create any (``RLIMIT_MSGQUEUE`` 0).

Reports go to this process's stdout (a dup made before any child exists; children never hold it), one line
``{"ready": true}`` then per test a JSON header line ``{"i", "rc", "killed", "wall_s", "out", "out_nl", "err"}``
followed by ``out`` raw lines of the program's stdout (sent only when it exited normally; ``out_nl`` false when
a final newline was added) and ``err`` raw lines of its stderr tail (only when it did not). Raw lines keep the
report as small as the output itself, so the run's output cap still holds: before a report would pass it, or
when this process's own CPU time reaches half its limit, the harness writes ``{"restart": i}`` and exits, and
the grader starts a fresh run from test ``i``.
"""

import builtins
import ctypes
import gc
import json
import os
import resource
import select
import signal
import sys
import time
import types

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
STDERR_KEEP = 32 << 10  # stderr tail kept per test: enough for the last traceback lines the grader classifies
HEADER_RESERVE = 4096  # bytes of the output cap kept for the report's own header line
IPC_RMID = 0

libc = ctypes.CDLL(None, use_errno=True)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Reporter:
    """Writes reports on a private dup of stdout and counts them against the run's output cap."""

    def __init__(self, cap):
        self.fd, self.cap, self.written = os.dup(1), cap, 0

    def fits(self, size):
        return self.written + size + 64 <= self.cap  # 64: room left for a restart line

    def send(self, data):
        write_all(self.fd, data)
        self.written += len(data)

    def line(self, obj):
        self.send((json.dumps(obj) + "\n").encode())


def load_input(spec, index, i):
    """A memfd holding test ``i``'s input, read in chunks from the shared inputs file (never all in memory)."""
    offset, size = index[i]
    fd = os.memfd_create("stdin", os.MFD_CLOEXEC)
    with open(spec["inputs"], "rb") as source:
        source.seek(offset)
        while size > 0:
            chunk = source.read(min(size, 1 << 20))
            if not chunk:
                break
            write_all(fd, chunk)
            size -= len(chunk)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def run_program(code, compile_error, path, stdin_fd, out_w, err_w):
    """In the forked child: become the program's process and run it; never returns."""
    status = 1
    try:
        os.dup2(stdin_fd, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 2**31 - 1)  # the report fd, the pidfd, the inputs: none of it stays with the program
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # as an exec'd program would be; the harness itself is not
        resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))
        main = types.ModuleType("__main__")
        main.__file__, main.__builtins__ = path, builtins
        sys.modules["__main__"], sys.argv = main, [path]
        status = execute(code, compile_error, main)
        # What interpreter shutdown does: non-daemon threads, atexit, flush; globals finalised (an unclosed
        # file's buffer reaches its fd), flush again. os._exit then skips the harness's own teardown.
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        import atexit
        atexit._run_exitfuncs()
        status = flush_streams(status)
        main.__dict__.clear()
        gc.collect()
        status = flush_streams(status)
    except BaseException:  # noqa: BLE001 - whatever the program broke, the child must not return into the harness
        pass
    os._exit(status)


def execute(code, compile_error, main):
    try:
        if compile_error is not None:
            raise compile_error
        exec(code, main.__dict__)
        return 0
    except SystemExit as stop:
        return exit_status(stop.code)
    except BaseException as exc:  # noqa: BLE001 - reported like the interpreter would
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None  # drop this frame
        if compile_error is not None:
            tb = None
        try:
            sys.excepthook(type(exc), exc, tb)
        except BaseException:  # noqa: BLE001
            pass
        return 1


def exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except BaseException:  # noqa: BLE001
        pass
    return 1


def flush_streams(status):
    for name in ("stdout", "stderr"):
        try:
            getattr(sys, name).flush()
        except BaseException:  # noqa: BLE001 - the interpreter exits 120 when it cannot flush stdout
            if name == "stdout" and status == 0:
                status = 120
    return status


def descendants():
    """Every process below this one (as a subreaper, the program's orphans included)."""
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                parents[int(name)] = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, stack = [], [os.getpid()]
    while stack:
        parent = stack.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        stack += children
    return found


def reap(statuses):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        statuses[pid] = status


def kill_all(statuses):
    """Kill every process the test left and reap them; False when some would not go away."""
    for _ in range(500):
        found = descendants()
        if not found:
            return True
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        reap(statuses)
        time.sleep(0.001)
    return False


def empty_directory(path):
    """Remove everything a test wrote to the working directory; the harness owns it all (same uid)."""
    for entry in os.scandir(path):
        full = os.path.join(path, entry.name)
        if entry.is_dir(follow_symlinks=False):
            os.chmod(full, 0o700)  # a directory the program made unreadable
            empty_directory(full)
            os.rmdir(full)
        else:
            os.unlink(full)


def remove_sysv_ipc():
    """Remove the SysV shared memory, semaphores and message queues a test made (the run's own namespace)."""
    for kind, call in (("shm", libc.shmctl), ("sem", libc.semctl), ("msg", libc.msgctl)):
        try:
            with open(f"/proc/sysvipc/{kind}") as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            ipc_id = int(row.split()[1])
            if call(ipc_id, 0, IPC_RMID, None) if kind == "sem" else call(ipc_id, IPC_RMID, None):
                raise OSError(ctypes.get_errno(), f"cannot remove SysV {kind} {ipc_id}")


def run_test(spec, index, i, code, compile_error, statuses):
    """Fork the program for test ``i``: (exit code, killed, wall seconds, stdout, stderr tail, whether everything
    the test started is gone)."""
    stdin_fd = load_input(spec, index, i)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    limit = max(0, spec["output_bytes"] - min(HEADER_RESERVE, spec["output_bytes"] // 2))
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        run_program(code, compile_error, spec["program"], stdin_fd, out_w, err_w)
    for fd in (stdin_fd, out_w, err_w):
        os.close(fd)
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # kernel before 5.3: poll for the exit instead
        pidfd = None
    out, err, total, killed = bytearray(), bytearray(), 0, None
    poller = select.poll()
    open_fds = {out_r: out, err_r: err}
    for fd in open_fds:
        poller.register(fd, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    deadline = started + spec["timeout_s"]
    while pid not in statuses:
        left = deadline - time.monotonic()
        if left <= 0:
            killed = "timeout"
            break
        wait_ms = left * 1000 if pidfd is not None else min(left * 1000, 5)
        for fd, _ in poller.poll(max(1, wait_ms)):
            if fd == pidfd:
                statuses[pid] = os.waitpid(pid, 0)[1]
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                poller.unregister(fd)
                continue
            total += len(chunk)
            open_fds[fd] += chunk
            if fd == err_r and len(err) > 2 * STDERR_KEEP:
                del err[:-STDERR_KEEP]
        if pidfd is None:
            reap(statuses)
        if total > limit and pid not in statuses:
            killed = "output"
            break
    wall = time.monotonic() - started
    if killed is not None:
        os.kill(pid, signal.SIGKILL)
    clean = kill_all(statuses)  # the child (if still running) and anything it left behind
    if pid not in statuses:
        statuses[pid] = os.waitpid(pid, 0)[1]
    # Every writer is dead now: what is left in the pipes is the rest of the test's output (non-blocking, in
    # case a process survived the kill: then the harness is restarted after this report anyway).
    for fd, buffer in open_fds.items():
        os.set_blocking(fd, False)
        try:
            while total <= limit and (chunk := os.read(fd, 1 << 16)):
                total += len(chunk)
                buffer += chunk
        except BlockingIOError:
            pass
        os.close(fd)
    if pidfd is not None:
        os.close(pidfd)
    if total > limit and killed is None:
        killed = "output"
    exit_code = os.waitstatus_to_exitcode(statuses.pop(pid))
    statuses.clear()
    exit_code = exit_code if exit_code >= 0 else 128 - exit_code  # as the sandbox runner reports a signal
    return exit_code, killed, wall, bytes(out), bytes(err[-STDERR_KEEP:]), clean


def report(reporter, i, rc, killed, wall, out, err):
    """The test's report, or False when it would pass the run's output cap (the grader restarts from ``i``)."""
    normal = killed is None and rc == 0
    out = out if normal else b""
    err = b"" if normal else err
    out_nl = not out or out.endswith(b"\n")
    out = out if out_nl else out + b"\n"
    err = err if not err or err.endswith(b"\n") else err + b"\n"
    header = {"i": i, "rc": rc, "killed": killed, "wall_s": round(wall, 4), "out": out.count(b"\n"),
              "out_nl": out_nl, "err": err.count(b"\n")}
    data = (json.dumps(header) + "\n").encode() + out + err
    if not reporter.fits(len(data)):
        return False
    reporter.send(data)
    return True


def main():
    spec = json.loads(sys.argv[1])
    reporter = Reporter(spec["output_bytes"])
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # the programs run as the same uid: they must not ptrace this
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of a test stay below this process, to be killed
    with open(spec["index"]) as fh:
        index = json.load(fh)
    with open(spec["prelude"]) as fh:
        exec(compile(fh.read(), "<prelude>", "exec", dont_inherit=True), {})  # imported once, not per test
    with open(spec["program"], "rb") as fh:  # bytes, as the interpreter reads a file (coding cookie, BOM)
        source = fh.read()
    code = compile_error = None
    try:
        code = compile(source, spec["program"], "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:  # raised again in each test's child, as the interpreter would
        compile_error = exc
    workdir, statuses = os.getcwd(), {}
    # The harness's own objects move to the collector's permanent generation: a test's collection at exit then
    # walks only what the program made, and does not touch (copy-on-write) the pages it shares with the harness.
    gc.collect()
    gc.freeze()
    reporter.line({"ready": True})
    for i in range(spec["start"], len(index)):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        if (usage.ru_utime + usage.ru_stime > spec["cpu_s"] / 2 or reporter.written > spec["output_bytes"] // 2) \
                and i > spec["start"]:
            reporter.line({"restart": i})
            return
        rc, killed, wall, out, err, clean = run_test(spec, index, i, code, compile_error, statuses)
        if not report(reporter, i, rc, killed, wall, out, err):
            reporter.line({"restart": i})
            return
        try:
            empty_directory(workdir)
            if spec["isolated"]:
                remove_sysv_ipc()
        except OSError:
            clean = False
        if not clean and i + 1 < len(index):  # something of this test survived: the next one gets a new run
            reporter.line({"restart": i + 1})
            return


if __name__ == "__main__":
    main()
