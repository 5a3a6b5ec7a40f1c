"""Thread per connection: the main thread accepts and spawns a thread for
each connection. Threads share the store, so it takes a lock. The thread
count is bounded by max_connections; past it, BUSY."""

from __future__ import annotations

import socket
import threading
import time

from .runtime.admission import Admission
from .runtime.blocking import serve_connection
from .runtime.children import EXIT_DEADLINE
from .runtime.context import Context
from .runtime.listeners import Listener
from .runtime.settings import Settings
from .runtime.stop import start_thread

ARCH = "thread-per-connection"
OVERFLOW = "busy"
SHARES_MEMORY = True
LISTENERS_PER_WORKER = False


def limits(settings: Settings) -> tuple[int, int]:
    return settings.max_connections, settings.max_connections


def serve(context: Context) -> None:
    active: set[threading.Thread] = set()
    lock = threading.Lock()

    def handle(sock: socket.socket, listener: Listener) -> None:
        try:
            serve_connection(context, sock, listener)
        finally:
            with lock:
                active.discard(threading.current_thread())

    def start(sock: socket.socket, listener: Listener) -> None:
        thread = threading.Thread(target=handle, args=(sock, listener), daemon=True)
        with lock:
            active.add(thread)
        start_thread(thread)

    def at_capacity() -> bool:
        with lock:
            return len(active) >= context.info.max_connections

    Admission(context, at_capacity, start).run()
    deadline = (context.stop.requested_at or time.monotonic()) + EXIT_DEADLINE
    with lock:
        remaining = list(active)
    for thread in remaining:
        thread.join(max(0.0, deadline - time.monotonic()))
