"""Stop an engine's child processes when the process that started them dies, even by ``kill -9``.

vLLM runs its engine core (and workers) in child processes. When the parent is killed outright they
are orphaned and keep decoding, holding the GPU memory the rerun needs. ``watch_new_children``
snapshots the children an engine start created and hands them to a tiny watcher process (its own
session, so a signal to the job's process group does not stop it first); when the owner is gone the
watcher kills them. ``stop`` ends the watcher on a normal shutdown.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

_WATCHER = r"""
import sys, time
import psutil

def alive(pid, created):
    try:
        return abs(psutil.Process(pid).create_time() - created) < 1e-3
    except psutil.Error:
        return False

owner, owner_created = int(sys.argv[1]), float(sys.argv[2])
targets = [(int(p), float(c)) for p, c in (arg.split(":") for arg in sys.argv[3:])]
while alive(owner, owner_created):
    time.sleep(0.5)
for pid, created in targets:
    if alive(pid, created):
        try:
            process = psutil.Process(pid)
            for child in process.children(recursive=True):
                child.kill()
            process.kill()
        except psutil.Error:
            pass
"""


def children() -> dict[int, float]:
    import psutil

    return {c.pid: c.create_time() for c in psutil.Process().children(recursive=True)}


def watch_new_children(before: dict[int, float]) -> subprocess.Popen | None:
    """Start a watcher for the children that appeared since ``before`` (None if there are none)."""
    import psutil

    new = {pid: created for pid, created in children().items() if before.get(pid) != created}
    if not new:
        return None
    me = psutil.Process()
    return subprocess.Popen([sys.executable, "-c", _WATCHER, str(me.pid), str(me.create_time()),
                             *(f"{pid}:{created}" for pid, created in new.items())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


def stop(watcher: subprocess.Popen | None) -> None:
    if watcher is not None and watcher.poll() is None:
        with contextlib.suppress(OSError):
            watcher.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            watcher.wait(timeout=5)
