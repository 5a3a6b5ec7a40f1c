"""Hybrid (nginx-style): a master forks N worker processes, and each runs the
evented reactor on the shared listener. The connection limit is global, kept
in shared memory, and so is the store (runtime/shared_store.py)."""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
from collections.abc import Iterator

from .evented import run_reactor
from .runtime.context import Context
from .runtime.settings import Settings
from .runtime.stop import StopSignal
from .runtime.supervisor import supervise

ARCH = "hybrid"
OVERFLOW = "busy"
SHARES_MEMORY = False
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

    def worker(slot: int, stop: StopSignal) -> None:
        context.stop = stop
        limiter.reset(slot)
        run_reactor(context, limiter)

    supervise(context, workers, worker)
