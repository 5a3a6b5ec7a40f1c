"""Hybrid (nginx-style): a master forks N worker processes, and each runs the
evented reactor on the shared listener. The connection limit is global, kept
in shared memory, and so is the store (runtime/shared_store.py)."""

from __future__ import annotations

import multiprocessing

from .evented import run_reactor
from .runtime.context import Context
from .runtime.settings import Settings
from .runtime.stop import StopSignal
from .runtime.supervisor import supervise

ARCH = "hybrid"
OVERFLOW = "busy"
SHARES_MEMORY = False
DEFAULT_WORKERS = 2


class SharedLimiter:
    """One count per worker slot in shared memory, so a worker that dies and
    is replaced takes its connections' count with it."""

    def __init__(self, limit: int, workers: int) -> None:
        self._limit = limit
        self._counts = multiprocessing.Array("i", workers)
        self.slot = 0

    def reset(self, slot: int) -> None:
        with self._counts.get_lock():
            self._counts[slot] = 0
        self.slot = slot

    def try_admit(self) -> bool:
        with self._counts.get_lock():
            if sum(self._counts[:]) >= self._limit:
                return False
            self._counts[self.slot] += 1
            return True

    def release(self) -> None:
        with self._counts.get_lock():
            self._counts[self.slot] -= 1


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
