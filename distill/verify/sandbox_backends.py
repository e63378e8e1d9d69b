"""What the code sandbox shows of the host, and the bwrap / unshare command lines that build it.

The sandbox's root is empty but for this ``Layout``, bound read-only at the same paths as on the host:

* the Python installation: every hop of the ``sys.executable`` symlink chain (the venv's ``pyvenv.cfg`` too), the
  standard library and the site-packages directories (not the directories ``.pth`` files add: an editable
  install's source tree stays hidden);
* the directories of the shared libraries the interpreter and its standard-library extension modules load (found
  with ``ldd``; on Debian ``/usr/lib/x86_64-linux-gnu``), plus ``/etc/ld.so.cache``;
* symlinked path components (``/lib -> usr/lib``) recreated as symlinks, parents as empty directories.

Nothing else: no home, no working directory, no ``/var/tmp``, no ``/run`` (hence no host unix sockets and no
dataset). Both backends then add a size-capped tmpfs ``/tmp`` (the program's working directory and ``$HOME``), a
minimal ``/dev`` (``/dev/shm`` points into ``/tmp``), the run's own ``/proc`` and its files under ``SANDBOX_DIR``, and make the root read-only.
The row's files and stdin travel as memfds, so a run leaves no file on the host even when the grader is killed.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
SANDBOX_DIR = "/sandbox"  # where the row's read-only files (program, harness, tests) appear inside
DEVICES = ("null", "zero", "full", "random", "urandom")
# /dev/shm points into the size-capped /tmp, so POSIX semaphores (multiprocessing) work within the same cap.
DEV_SYMLINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"), ("/proc/self/fd/1", "/dev/stdout"),
                ("/proc/self/fd/2", "/dev/stderr"), ("/tmp", "/dev/shm"))
RUNNER_SOURCE = (Path(__file__).with_name("sandbox_runner.py")).read_text(encoding="utf-8")
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


@dataclass(frozen=True)
class Layout:
    dirs: tuple[str, ...]  # empty directories (parents of what is shown), mode 0755
    symlinks: tuple[tuple[str, str], ...]  # (target, path): symlinked path components, as on the host
    binds: tuple[tuple[str, str], ...]  # (host path, path inside): shown read-only


class _LayoutBuilder:
    """Collects what must be shown so that given host paths resolve inside exactly as they do outside."""

    def __init__(self) -> None:
        self.symlinks: dict[str, str] = {}
        self.binds: set[str] = set()

    def _resolve(self, path: str, hops: int = 0) -> str:
        """The real path of ``path``, recording each symlink met on the way (to recreate it inside)."""
        if hops > 40:
            raise OSError(f"too many symlinks resolving {path}")
        current, parts = "/", [p for p in os.path.normpath(path).split("/") if p]
        for i, part in enumerate(parts):
            candidate = os.path.join(current, part)
            if os.path.islink(candidate):
                target = os.readlink(candidate)
                self.symlinks[candidate] = target
                return self._resolve(os.path.normpath(os.path.join(current, target, *parts[i + 1:])), hops + 1)
            current = candidate
        return current

    def tree(self, path: str) -> None:
        """Show the directory ``path`` and everything below it."""
        real = self._resolve(path)
        if real != "/" and os.path.isdir(real):
            self.binds.add(real)

    def file(self, path: str, whole_directory: bool = True, hops: int = 0) -> None:
        """Show the file ``path`` (its whole directory by default, so libraries loaded later resolve too)."""
        directory = self._resolve(os.path.dirname(path))
        real = os.path.join(directory, os.path.basename(path))
        if whole_directory:
            self.tree(directory)
        if os.path.islink(real) and hops < 40:  # a symlinked file: show its target as well
            if not whole_directory:
                self.symlinks[real] = os.readlink(real)
            self.file(os.path.normpath(os.path.join(directory, os.readlink(real))), whole_directory, hops + 1)
        elif not whole_directory and os.path.isfile(real):
            self.binds.add(real)

    def build(self) -> Layout:
        def inside(path: str, roots) -> bool:
            return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

        binds = sorted(b for b in self.binds if not inside(b, {o for o in self.binds if o != b}))
        symlinks = sorted((t, p) for p, t in self.symlinks.items() if not inside(p, binds))
        dirs = set()
        for path in [b for b in binds] + [p for _, p in symlinks]:
            parent = os.path.dirname(path)
            while parent != "/" and not inside(parent, binds):
                dirs.add(parent)
                parent = os.path.dirname(parent)
        return Layout(tuple(sorted(dirs)), tuple(symlinks), tuple((b, b) for b in binds))


def _shared_libraries() -> list[str] | None:
    """Shared libraries the interpreter and its standard-library extension modules load (None without ldd)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    dynload = Path(sysconfig.get_paths()["platstdlib"]) / "lib-dynload"
    targets = [os.path.realpath(sys.executable), *sorted(str(p) for p in dynload.glob("*.so"))]
    # ldd runs the dynamic loader on each file: only ever on the trusted interpreter's own files.
    out = subprocess.run([ldd, *targets], capture_output=True, text=True, timeout=120).stdout
    return sorted({m.group(1) for m in _LDD_PATH.finditer(out)})


@functools.lru_cache(maxsize=1)
def python_layout() -> Layout:
    """The read-only part of the sandbox's root: the Python installation and its shared libraries (cached)."""
    builder = _LayoutBuilder()
    builder.file(sys.executable, whole_directory=False)  # each hop of its symlink chain, not all of bin/
    if sys.prefix != sys.base_prefix and os.path.isfile(venv_config := os.path.join(sys.prefix, "pyvenv.cfg")):
        builder.file(venv_config, whole_directory=False)  # how the interpreter knows it runs in the venv
    paths = sysconfig.get_paths()
    for directory in {paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"],
                      *site.getsitepackages()}:
        if os.path.isdir(directory):
            builder.tree(directory)
    libraries = _shared_libraries()
    if libraries is None:  # no ldd: the standard library directories, whichever exist
        for directory in ("/lib", "/lib64", "/usr/lib", "/usr/lib64"):
            if os.path.isdir(directory):
                builder.tree(directory)
    for library in libraries or ():
        builder.file(library)
    if os.path.isfile("/etc/ld.so.cache"):
        builder.file("/etc/ld.so.cache", whole_directory=False)
    return builder.build()


def memfd(name: str, data: bytes) -> int:
    """An anonymous in-memory file holding ``data``, positioned at its start (gone when the last fd closes)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Backend:
    """One way of isolating a run: ``bwrap``, ``unshare``, or ``unsafe`` (none: a plain child process)."""

    def __init__(self, name: str, exe: str | None):
        self.name, self.exe = name, exe
        self.layout = python_layout() if exe else None
        if name == "bwrap":
            help_text = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout
            missing = [flag for flag in ("--perms", "--size", "--file", "--die-with-parent") if flag not in help_text]
            if missing:
                raise OSError(f"bubblewrap too old (no {', '.join(missing)})")

    def command(self, spec: dict, files: dict[str, str], disk_bytes: int,
                env: dict[str, str]) -> tuple[list[str], list[int]]:
        """(argv, file descriptors it inherits) for one run of the runner with ``spec`` and ``env`` (given to the
        process by the caller; bwrap clears and sets it again). The caller closes the descriptors after the start."""
        runner = [sys.executable, "-I", "-S", "-c", RUNNER_SOURCE]
        spec = dict(spec, mode=self.name)
        if self.name == "unsafe":
            return runner + [json.dumps(spec)], []
        if self.name == "unshare":
            blob = json.dumps(files).encode()
            files_fd = memfd("distill-sandbox-files", blob)
            layout = {"dirs": self.layout.dirs, "symlinks": self.layout.symlinks, "binds": self.layout.binds}
            spec.update(layout=layout, devices=DEVICES, dev_symlinks=DEV_SYMLINKS, files_fd=files_fd,
                        root_bytes=len(blob) + (4 << 20), disk_bytes=disk_bytes, sandbox_dir=SANDBOX_DIR,
                        host_mnt_ns=os.stat("/proc/self/ns/mnt").st_ino)
            user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
            return ([self.exe, *user, "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
                     "--mount-proc", "--", *runner, json.dumps(spec)], [files_fd])
        args = [self.exe, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--die-with-parent", "--new-session"]
        if os.geteuid() != 0:
            args += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
        # the writable /tmp first: an interpreter installed under /tmp is then bound inside it (read-only)
        args += ["--perms", "1777", "--size", str(disk_bytes), "--tmpfs", "/tmp"]
        for directory in self.layout.dirs:  # explicit modes: bwrap's own parents would follow the umask
            args += ["--perms", "0755", "--dir", directory]
        for target, path in self.layout.symlinks:
            args += ["--symlink", target, path]
        for source, path in self.layout.binds:
            args += ["--ro-bind", source, path]
        # /dev built like the unshare backend's rather than with --dev, whose /dev/shm is not writable
        args += ["--perms", "0755", "--size", str(64 << 10), "--tmpfs", "/dev"]
        args += [arg for name in DEVICES for arg in ("--dev-bind", f"/dev/{name}", f"/dev/{name}")]
        args += [arg for target, path in DEV_SYMLINKS for arg in ("--symlink", target, path)]
        args += ["--remount-ro", "/dev", "--proc", "/proc", "--perms", "0755", "--dir", SANDBOX_DIR]
        fds: list[int] = []
        try:
            for name, text in files.items():
                fds.append(memfd(name, text.encode()))
                args += ["--perms", "0644", "--file", str(fds[-1]), f"{SANDBOX_DIR}/{name}"]
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        args += ["--remount-ro", "/", "--chdir", "/tmp", "--clearenv"]
        args += [arg for item in env.items() for arg in ("--setenv", *item)]
        return args + ["--", *runner, json.dumps(spec)], fds
