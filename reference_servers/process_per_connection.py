"""Process per connection: the parent accepts and forks a child for each
connection, then goes straight back to accept. The children share the store,
made in shared memory before the first fork (runtime/shared_store.py). The
parent counts its children, reaps them as they exit, and refuses with BUSY
past max_connections."""

from __future__ import annotations

import socket

from .runtime.admission import Admission
from .runtime.blocking import serve_connection
from .runtime.children import Children
from .runtime.context import Context
from .runtime.listeners import Listener
from .runtime.settings import Settings
from .runtime.stop import StopSignal

ARCH = "process-per-connection"
OVERFLOW = "busy"
SHARES_MEMORY = False
LISTENERS_PER_WORKER = False


def limits(settings: Settings) -> tuple[int, int]:
    return settings.max_connections, settings.max_connections


def serve(context: Context) -> None:
    children = Children(context.stop)

    def start(sock: socket.socket, listener: Listener) -> None:
        def in_child(stop: StopSignal) -> None:
            admission.close_inherited()
            context.stop = stop
            serve_connection(context, sock, listener)

        children.spawn(in_child)
        sock.close()  # the child has its own copy

    def at_capacity() -> bool:
        # SIGCHLD wakes the loop to reap; a child that ended since then is
        # only worth looking for when the count says the server is full.
        if len(children) >= context.info.max_connections:
            children.reap()
        return len(children) >= context.info.max_connections

    admission = Admission(context, at_capacity, start)
    admission.also_watch(children.wake_fd, lambda now: children.reap())
    admission.run()
    children.stop_all()
