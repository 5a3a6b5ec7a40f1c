"""Hybrid (nginx-style): a master forks N worker processes, and each runs the
evented reactor. The connection limit is global, kept in shared memory, and
so is the store (runtime/shared_store.py).

Each worker has listeners of its own on the same ports (SO_REUSEPORT, nginx's
``listen ... reuseport``), and the kernel spreads new connections across them.
On one shared listener every worker's epoll wakes for each connection and the
first to run takes the whole queue: redis-benchmark's 50 connections all
landed on one worker while the other sat idle. The master keeps every
worker's listeners open, so a replacement worker finds its dead
predecessor's queue waiting."""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
from collections.abc import Iterator

from .evented import run_reactor
from .runtime.context import Context
from .runtime.listeners import close_listeners, join_listeners
from .runtime.settings import Settings
from .runtime.stop import StopSignal
from .runtime.supervisor import supervise

ARCH = "hybrid"
OVERFLOW = "busy"
SHARES_MEMORY = False
LISTENERS_PER_WORKER = True
DEFAULT_WORKERS = 2
_COUNT_BYTES = 8  # one signed count per slot (memoryview type "q")


class SharedLimiter:
    """One count per worker slot, in a mapping every forked worker shares, so a
    worker that dies and is replaced takes its connections' count with it.

    The counts change under a POSIX record lock on the mapping's memfd, which
    the kernel drops when its holder dies: a worker killed while admitting
    does not wedge the others, as a multiprocessing lock (a semaphore) would.
    Record locks belong to a process, which suits workers of one thread each."""

    def __init__(self, limit: int, workers: int) -> None:
        self._limit = limit
        self._fd = os.memfd_create("sockspec-limiter", os.MFD_CLOEXEC)
        os.ftruncate(self._fd, workers * _COUNT_BYTES)
        self._map = mmap.mmap(self._fd, workers * _COUNT_BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._counts = memoryview(self._map).cast("q")
        self.slot = 0

    def reset(self, slot: int) -> None:
        with self._locked():
            self._counts[slot] = 0
        self.slot = slot

    def try_admit(self) -> bool:
        with self._locked():
            if sum(self._counts) >= self._limit:
                return False
            self._counts[self.slot] += 1
            return True

    def release(self) -> None:
        with self._locked():
            self._counts[self.slot] -= 1

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)


def limits(settings: Settings) -> tuple[int, int]:
    return settings.max_connections, settings.max_connections


def serve(context: Context) -> None:
    workers = context.settings.concurrency or DEFAULT_WORKERS
    limiter = SharedLimiter(context.info.max_connections, workers)
    per_worker = [context.listeners] + [join_listeners(context.listeners, context.settings) for _ in range(1, workers)]

    def worker(slot: int, stop: StopSignal) -> None:
        for other, listeners in enumerate(per_worker):
            if other != slot:  # held open here, another worker's connections would wait behind a stop
                close_listeners(listeners)
        context.listeners = per_worker[slot]
        context.stop = stop
        limiter.reset(slot)
        run_reactor(context, limiter)

    # The master's are all of them, so that a stop closes every set at once.
    context.listeners = [listener for listeners in per_worker for listener in listeners]
    supervise(context, workers, worker)
