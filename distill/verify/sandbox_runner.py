"""The first code that runs inside the sandbox (trusted): build the file system, drop privileges, supervise.

Not imported by distill: ``distill.verify.sandbox`` sends this file's *text* as ``python -I -S -c SOURCE SPEC``,
so no host file has to be visible inside for it to start. Standard library only; ``SPEC`` is a JSON object:

* ``mode``: ``unshare`` (this code builds the root itself), ``bwrap`` (bubblewrap built it) or ``unsafe``;
* ``argv``, ``memory_bytes``, ``cpu_s``, ``nproc``, ``fsize``: the program and its rlimits;
* ``lifeline``: the read end of a pipe whose write end only the grader holds. It reads end-of-file the moment the
  grader exits, however it dies (``kill -9`` included): then this process kills the whole run and exits. Unlike
  ``PR_SET_PDEATHSIG`` there is no window in which the grader's death goes unnoticed, since the end-of-file stays;
* unshare mode only: ``layout`` (``dirs``, ``symlinks``, ``binds``: what to show of the host, read-only),
  ``devices``, ``dev_symlinks``, ``files_fd`` (a memfd holding ``{name: text}`` for ``sandbox_dir``), ``root_bytes``,
  ``disk_bytes`` (size of the writable ``/tmp``) and ``host_mnt_ns`` (refuse to mount in the host's namespace).

The unshare-mode root is a fresh tmpfs holding only those binds, a size-capped tmpfs ``/tmp``, a minimal ``/dev``
and a ``/proc`` of the run's own pid namespace; ``pivot_root`` then detaches the host's tree, so nothing else of
the host (files, unix sockets) can be named from inside. Afterwards (every mode but unsafe): when this process is
real root it drops to uid 65534 (so ``RLIMIT_NPROC`` applies), enters a fresh user namespace (no capabilities
over anything that exists) and sets ``no_new_privs``; then it forks the program and waits. As pid 1 (unshare) its
exit kills everything left in the pid namespace; under bwrap, bwrap's own pid 1 does the same when it exits.
Unsafe mode has no pid namespace: this process becomes a child subreaper, so the program's orphans stay below it,
and kills all of them when the program exits or the lifeline ends.
"""

import ctypes
import json
import os
import re
import resource
import signal
import sys
import threading

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 1 << 14
MS_PRIVATE, MNT_DETACH, CLONE_NEWUSER = 1 << 18, 2, 0x10000000
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 4, 38, 36
# Flags a read-only remount must repeat: in a user namespace the kernel refuses to drop locked ones.
KEPT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 1024, "nodiratime": 2048,
              "relatime": 1 << 21}
# glibc has no pivot_root wrapper; the syscall number depends on the architecture.
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "ppc64": 203, "s390x": 217,
                  "i686": 217, "i386": 217, "armv7l": 218}

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def fail(message):
    os.write(2, f"sandbox-setup-failed: {message}\n".encode())
    os._exit(125)


def encode(text):
    return None if text is None else text.encode()


def mount(source, target, fstype, flags, data=None):
    if libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)) != 0:
        fail(f"mount {target}: {os.strerror(ctypes.get_errno())}")


def mounts():
    """{mount id: (mount point, options)} of every mount in this namespace."""
    found = {}
    with open("/proc/self/mountinfo", "rb") as fh:
        for line in fh:
            fields = line.split()
            # mountinfo escapes space, tab, newline and backslash as \ooo (octal); the rest are raw bytes
            point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4])
            found[int(fields[0])] = (os.fsdecode(point), fields[5].decode().split(","))
    return found


def build_root(spec):
    """unshare mode: a new root holding only what the program needs, then pivot into it."""
    if os.stat("/proc/self/ns/mnt").st_ino == spec["host_mnt_ns"]:
        fail("not in a new mount namespace")
    os.umask(0o022)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    layout = spec["layout"]
    # Sources are opened before anything is mounted over them and bound through /proc/self/fd, so any host
    # directory (one under /tmp too) serves as the mount point of the new root.
    sources = {src: os.open(src, os.O_PATH | os.O_CLOEXEC) for src, _ in layout["binds"]}
    devices = {name: os.open("/dev/" + name, os.O_PATH | os.O_CLOEXEC) for name in spec["devices"]}
    root, host_mounts = "/tmp", mounts()
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={spec['root_bytes']},mode=755")
    # The writable /tmp first: an interpreter installed under /tmp (a venv in a CI checkout there) is bound
    # inside it, read-only, instead of being hidden by it.
    os.makedirs(root + "/tmp")
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={spec['disk_bytes']},mode=1777")
    for path in layout["dirs"]:
        os.makedirs(root + path, mode=0o755, exist_ok=True)
    for target, path in layout["symlinks"]:
        os.symlink(target, root + path)
    for src, dst in layout["binds"]:
        if os.path.isdir(f"/proc/self/fd/{sources[src]}"):
            os.makedirs(root + dst, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(root + dst), mode=0o755, exist_ok=True)
            open(root + dst, "ab").close()
        mount(f"/proc/self/fd/{sources[src]}", root + dst, None, MS_BIND | MS_REC)
    for mount_id, (point, options) in mounts().items():  # every bind (and its submounts) read-only
        if mount_id not in host_mounts and point.startswith(root + "/") and point != root + "/tmp" and \
                "ro" not in options:
            flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
            flags |= sum(KEPT_FLAGS.get(o, 0) for o in options if o not in ("nosuid", "nodev"))
            if libc.mount(None, encode(point), None, flags, None) != 0:
                fail(f"read-only remount of {point[len(root):]}: {os.strerror(ctypes.get_errno())}")
    os.makedirs(root + "/dev", exist_ok=True)
    mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=755")
    for name, fd in devices.items():
        open(root + "/dev/" + name, "ab").close()
        mount(f"/proc/self/fd/{fd}", root + "/dev/" + name, None, MS_BIND)
    for target, path in spec["dev_symlinks"]:
        os.symlink(target, root + path)
    os.makedirs(root + "/proc", exist_ok=True)
    if libc.mount(b"proc", encode(root + "/proc"), b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) != 0:
        mount("/proc", root + "/proc", None, MS_BIND | MS_REC)  # the pid namespace's proc from --mount-proc
    os.makedirs(root + spec["sandbox_dir"], mode=0o755)
    with os.fdopen(spec["files_fd"], "rb") as fh:
        for name, text in json.loads(fh.read()).items():
            with open(os.path.join(root + spec["sandbox_dir"], name), "w", encoding="utf-8") as out:
                out.write(text)
    for fd in list(sources.values()) + list(devices.values()):
        os.close(fd)
    os.chdir(root)
    pivot = SYS_PIVOT_ROOT.get(os.uname().machine)
    if pivot is None or libc.syscall(pivot, b".", b".") != 0:  # the old root now sits on top of the new one
        fail(f"pivot_root: {os.strerror(ctypes.get_errno()) if pivot else 'unsupported architecture'}")
    if libc.umount2(b".", MNT_DETACH) != 0:  # ... and is detached: no path leads to the host any more
        fail(f"detach the host root: {os.strerror(ctypes.get_errno())}")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    mount(None, "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def drop_privileges():
    if os.getuid() == 0 and open("/proc/self/uid_map").read().split() == ["0", "0", "4294967295"]:
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # so this process may write its own uid_map
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER) == 0:  # fresh process accounting, no capabilities over anything that exists
        for name, text in (("setgroups", "deny"), ("uid_map", f"65534 {uid} 1"), ("gid_map", f"65534 {gid} 1")):
            with open("/proc/self/" + name, "w") as fh:
                fh.write(text)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # not dumpable again: the program (same uid) cannot ptrace us
    elif uid == 0:
        fail(f"cannot leave uid 0: {os.strerror(ctypes.get_errno())}")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        fail("no_new_privs refused")


def kill_descendants():
    """Unsafe mode (no pid namespace): kill every process below this one. As a child subreaper this process
    inherits the orphans (daemons included), so they are all found here."""
    for _ in range(100):
        parents = {}
        for name in os.listdir("/proc"):
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
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break


def watch_lifeline(spec):
    """End of file on the lifeline: the grader is gone, so is this run (every process of it)."""
    while True:
        try:
            if not os.read(spec["lifeline"], 64):
                break
        except InterruptedError:
            continue
    if spec["mode"] == "unsafe":
        kill_descendants()
    else:
        os.kill(-1, signal.SIGKILL)  # in the run's pid namespace: all of it but this process (and bwrap's init)
    os._exit(137)


def start_program(spec):
    pid = os.fork()
    if pid:
        return pid
    try:
        os.closerange(3, 1 << 16)  # the lifeline and anything else the runner inherited stay with the runner
        mem, cpu = spec["memory_bytes"], spec["cpu_s"]
        for res, value in ((resource.RLIMIT_AS, (mem, mem)), (resource.RLIMIT_CPU, (cpu, cpu + 1)),
                           (resource.RLIMIT_FSIZE, (spec["fsize"], spec["fsize"])), (resource.RLIMIT_CORE, (0, 0))):
            resource.setrlimit(res, value)
        if spec["mode"] != "unsafe":
            resource.setrlimit(resource.RLIMIT_NPROC, (spec["nproc"], spec["nproc"]))
        os.execv(spec["argv"][0], spec["argv"])
    except OSError as exc:
        fail(f"exec {spec['argv'][0]}: {exc}")
    except BaseException:  # noqa: BLE001 - never return into the supervisor's code in the child
        os._exit(125)


def main():
    spec = json.loads(sys.argv[1])
    if spec["mode"] == "unshare":
        build_root(spec)
        os.chdir("/tmp")
    if spec["mode"] != "unsafe":
        drop_privileges()  # before any thread: unshare(CLONE_NEWUSER) refuses a threaded process
    else:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of the program stay below this process
    threading.Thread(target=watch_lifeline, args=(spec,), daemon=True).start()
    child = start_program(spec)
    while True:  # reap (orphans too, as pid 1) until the program exits, then exit with its status
        try:
            pid, status = os.wait()
        except InterruptedError:
            continue
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            if spec["mode"] == "unsafe":
                kill_descendants()  # namespaced modes: the pid namespace ends with its init
            os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
