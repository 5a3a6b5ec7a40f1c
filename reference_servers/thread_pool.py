"""Thread pool: N threads, each running its own accept loop on the shared
listener; the kernel gives each connection to one of them. The main thread
only waits for the stop. Bounded by N; the rest wait in the listen backlog."""

from __future__ import annotations

import threading
import time

from .runtime.blocking import accept_and_serve
from .runtime.children import EXIT_DEADLINE
from .runtime.context import Context
from .runtime.listeners import close_listeners
from .runtime.settings import Settings
from .runtime.stop import start_thread, wait_for

ARCH = "thread-pool"
OVERFLOW = "queue"
SHARES_MEMORY = True
LISTENERS_PER_WORKER = False
DEFAULT_THREADS = 32


def limits(settings: Settings) -> tuple[int, int]:
    threads = settings.concurrency or DEFAULT_THREADS
    return threads, threads


def serve(context: Context) -> None:
    pool = [
        threading.Thread(target=accept_and_serve, args=(context,), name=f"pool-{n}", daemon=True)
        for n in range(context.info.concurrency)
    ]
    for thread in pool:
        start_thread(thread)
    wait_for(context.stop)  # the stop signals reach only this (main) thread
    close_listeners(context.listeners)
    deadline = (context.stop.requested_at or time.monotonic()) + EXIT_DEADLINE
    for thread in pool:
        thread.join(max(0.0, deadline - time.monotonic()))
