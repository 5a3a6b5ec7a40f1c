"""Preforking: the master opens the listener and forks N workers, each with
its own accept loop on the shared socket. The master only supervises: it
respawns a worker that dies and passes INT/TERM on. Bounded by N; the rest
wait in the listen backlog. The workers share the store, made in shared
memory before the fork (runtime/shared_store.py)."""

from __future__ import annotations

from .runtime.blocking import accept_and_serve
from .runtime.context import Context
from .runtime.settings import Settings
from .runtime.stop import StopSignal
from .runtime.supervisor import supervise

ARCH = "preforking"
OVERFLOW = "queue"
SHARES_MEMORY = False
LISTENERS_PER_WORKER = False
DEFAULT_WORKERS = 32


def limits(settings: Settings) -> tuple[int, int]:
    workers = settings.concurrency or DEFAULT_WORKERS
    return workers, workers


def serve(context: Context) -> None:
    def worker(slot: int, stop: StopSignal) -> None:
        context.stop = stop
        accept_and_serve(context)

    supervise(context, context.info.concurrency, worker)
