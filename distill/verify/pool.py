"""Killable worker processes with a hard wall-clock timeout per task.

math-verify bounds its own work with ``signal.alarm``: that only works on a main thread and
cannot interrupt C-level sympy work (``2^{2^{2^{2^{2^2}}}}``, ``10^{10^{10}}``). So every check
runs in a worker process that the parent kills (SIGKILL) when a task overruns; the task gets
``on_timeout(payload)`` as its result and a fresh worker takes the dead one's place.

    with WorkerPool(num_workers=4, preload=("math_verify",)) as pool:
        results = pool.map(check_fn, payloads, timeout_s=5.0, on_timeout=lambda p: "timeout")

Worker counts are capped: never more workers than the cores this process may use (``available_cpus``;
checks are CPU-bound, more workers only fight over them, and a huge count is a fork storm), and never
more than the tasks at hand: workers start on the first ``map`` call, as many as its payloads need.

Workers are forked from a clean fork server (never from the parent, which may hold threads of
arrow / tokenizers); ``preload`` modules are imported once in the fork server, so a replacement
worker starts in milliseconds. Tasks go out in small chunks and results come back one by one, so
a task's clock starts when the previous one finished. Results are returned in payload order.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

_CONTEXT = None


def available_cpus() -> int:
    """Cores this process may run on (respects taskset / cgroup cpusets, unlike ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _context(preload: tuple[str, ...]):
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        # Our own list (not the default ['__main__']): never re-import the caller's script or pytest.
        _CONTEXT.set_forkserver_preload(list(preload))
    return _CONTEXT


def prestart(preload: tuple[str, ...] = ()) -> None:
    """Start the fork server now, without waiting: it imports ``preload`` while the caller goes on
    (a stage can overlap math-verify's ~1.5 s import with its own data loading)."""
    from multiprocessing import forkserver

    _context(tuple(preload))
    with _main_module_hidden():
        forkserver.ensure_running()


@contextmanager
def _main_module_hidden():
    """Start workers without the caller's ``__main__``: multiprocessing would re-import it in every
    worker (re-running an unguarded script, or recursing into the pool). Task functions must live in
    importable modules, never in ``__main__``."""
    main = sys.modules.get("__main__")
    saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if main is not None and key in main.__dict__}
    try:
        for key in saved:
            if key == "__spec__":
                main.__spec__ = None
            else:
                del main.__dict__[key]
        yield
    finally:
        for key, value in saved.items():
            main.__dict__[key] = value


def _worker_main(conn, memory_limit_mb: int | None) -> None:
    """Worker loop: receive ``(fn, [(index, payload), ...])``, send ``(index, ok, result)`` per task."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and kills us
    if memory_limit_mb:
        try:
            import resource

            limit = int(memory_limit_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, chunk = message
        for index, payload in chunk:
            try:
                result, ok = fn(payload), True
            except MemoryError:
                result, ok = "MemoryError: the check ran out of its memory limit", False
            except BaseException as exc:  # noqa: BLE001 - report any failure of one task, keep serving
                result, ok = f"{type(exc).__name__}: {str(exc)[:300]}", False
            try:
                conn.send((index, ok, result))
            except (EOFError, OSError, BrokenPipeError):
                return


@dataclass
class _Worker:
    process: Any
    conn: Any
    inflight: deque = field(default_factory=deque)  # task indices sent, not yet answered
    deadline: float = 0.0


def cap_workers(num_workers: int | None) -> int:
    """Worker processes to run: ``num_workers`` (default: all cores), at most the cores available, at least 1."""
    cpus = available_cpus()
    return max(1, min(int(num_workers), cpus) if num_workers else cpus)


class WorkerPool:
    """At most ``num_workers`` worker processes (capped at the cores available); see the module docstring."""

    def __init__(self, num_workers: int | None = None, preload: tuple[str, ...] = (),
                 memory_limit_mb: int | None = 4096):
        self.num_workers = cap_workers(num_workers)
        self.preload = tuple(preload)
        self.memory_limit_mb = memory_limit_mb
        self.workers: list[_Worker] = []
        self.killed = 0  # how many workers were killed for overrunning (for stats)
        self.crashed = 0

    # ------------------------------------------------------------------ lifecycle

    def _spawn(self) -> _Worker:
        ctx = _context(self.preload)
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        process = ctx.Process(target=_worker_main, args=(child_conn, self.memory_limit_mb), daemon=True)
        with _main_module_hidden():
            process.start()
        child_conn.close()
        return _Worker(process=process, conn=parent_conn)

    def start(self, tasks: int | None = None) -> WorkerPool:
        """Start workers up to ``num_workers``, or up to ``tasks`` when fewer tasks are at hand."""
        want = self.num_workers if tasks is None else min(self.num_workers, tasks)
        while len(self.workers) < want:
            self.workers.append(self._spawn())
        return self

    def _kill(self, worker: _Worker) -> None:
        try:
            worker.process.kill()
        except (OSError, ValueError, AttributeError):
            pass
        worker.process.join(timeout=5)
        worker.conn.close()

    def _replace(self, worker: _Worker) -> _Worker:
        self._kill(worker)
        fresh = self._spawn()
        self.workers[self.workers.index(worker)] = fresh
        return fresh

    def close(self) -> None:
        for worker in self.workers:
            try:
                worker.conn.send(None)
            except (OSError, ValueError, BrokenPipeError):
                pass
        deadline = time.monotonic() + 2
        for worker in self.workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            worker.conn.close()
        self.workers = []

    def __enter__(self) -> WorkerPool:
        return self  # workers start with the first map(), no more than its tasks need

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ work

    def map(self, fn: Callable[[Any], Any], payloads: list[Any], timeout_s: float | None,
            on_timeout: Callable[[Any], Any], on_error: Callable[[Any, str], Any] | None = None,
            progress: Callable[[int], None] | None = None, chunk_size: int | None = None) -> list[Any]:
        """``[fn(p) for p in payloads]`` across the workers, each call bounded by ``timeout_s`` seconds.

        ``fn`` must be a module-level function of an importable module (not ``__main__``). A call that overruns
        yields ``on_timeout(payload)``; one that raises (or kills its worker) yields
        ``on_error(payload, message)`` (default: re-raise as RuntimeError in the parent).
        """
        n = len(payloads)
        self.start(n)
        results: list[Any] = [None] * n
        done = [False] * n
        pending = deque(range(n))
        if chunk_size is None:  # small chunks: cheap IPC, but work still spreads evenly at the end
            chunk_size = max(1, min(16, n // (max(1, len(self.workers)) * 8) or 1))
        limit = float(timeout_s) if timeout_s else None
        remaining = n

        def finish(index: int, value: Any) -> None:
            nonlocal remaining
            results[index] = value
            done[index] = True
            remaining -= 1
            if progress is not None:
                progress(1)

        def fail(index: int, message: str) -> Any:
            if on_error is None:
                raise RuntimeError(f"check failed on item {index}: {message}")
            return on_error(payloads[index], message)

        try:
            while remaining:
                now = time.monotonic()
                for worker in self.workers:
                    if not worker.inflight and pending:
                        chunk = [pending.popleft() for _ in range(min(chunk_size, len(pending)))]
                        try:
                            worker.conn.send((fn, [(i, payloads[i]) for i in chunk]))
                        except (OSError, BrokenPipeError, ValueError):
                            pending.extendleft(reversed(chunk))
                            self.crashed += 1
                            self._replace(worker)
                            continue
                        worker.inflight.extend(chunk)
                        worker.deadline = now + limit if limit else float("inf")
                busy = [w for w in self.workers if w.inflight]
                if not busy:
                    continue
                wait_s = max(0.0, min(w.deadline for w in busy) - now) if limit else None
                ready = wait([w.conn for w in busy], timeout=wait_s)
                now = time.monotonic()
                for worker in busy:
                    if worker.conn in ready:
                        try:
                            while worker.conn.poll():
                                index, ok, value = worker.conn.recv()
                                worker.inflight.remove(index)
                                finish(index, value if ok else fail(index, value))
                                worker.deadline = now + limit if limit else float("inf")
                        except (EOFError, OSError):  # the worker died (segfault, OOM killer)
                            self.crashed += 1
                            if worker.inflight:
                                lost = worker.inflight.popleft()
                                finish(lost, fail(lost, "worker process died"))
                            pending.extendleft(reversed(worker.inflight))
                            worker.inflight.clear()
                            self._replace(worker)
                    elif limit and now >= worker.deadline and worker.inflight:
                        self.killed += 1
                        lost = worker.inflight.popleft()
                        finish(lost, on_timeout(payloads[lost]))
                        pending.extendleft(reversed(worker.inflight))
                        worker.inflight.clear()
                        self._replace(worker)
        except BaseException:
            # Ctrl-C or a failing callback: no worker may outlive us with half a chunk
            for worker in list(self.workers):
                self._kill(worker)
            self.workers = []
            raise
        assert all(done)
        return results
