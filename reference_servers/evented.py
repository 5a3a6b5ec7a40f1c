"""Evented (reactor): one thread, one epoll over the listeners and every
connection. Each connection keeps its input and output buffers; reads and
writes never block; a request runs when the core has a whole one. SLEEP is a
timer, not a blocking call, so one slow request never stalls the others."""

from __future__ import annotations

import socket
import time
from typing import Protocol

from .runtime.blocking import drive
from .runtime.context import Context
from .runtime.listeners import Listener, close_listeners
from .runtime.session import Session
from .runtime.sessions import SessionSet
from .runtime.settings import Settings

ARCH = "evented"
OVERFLOW = "busy"
SHARES_MEMORY = True
LISTENERS_PER_WORKER = False
ACCEPT_BATCH = 64


class LocalLimiter:
    """Connections counted in this process."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._count = 0

    def try_admit(self) -> bool:
        if self._count >= self._limit:
            return False
        self._count += 1
        return True

    def release(self) -> None:
        self._count -= 1


class Limiter(Protocol):
    """What the reactor needs to count connections; hybrid shares one across processes."""

    def try_admit(self) -> bool: ...

    def release(self) -> None: ...


def limits(settings: Settings) -> tuple[int, int]:
    return settings.max_connections, settings.max_connections


def serve(context: Context) -> None:
    run_reactor(context, LocalLimiter(context.info.max_connections))


def run_reactor(context: Context, limiter: Limiter) -> None:
    def closed(session: Session) -> None:
        if session.conn is not None:  # refused connections were never counted
            limiter.release()

    sessions = SessionSet(on_closed=closed)

    def acceptor(listener: Listener):  # type: ignore[no-untyped-def]
        def accept(now: float) -> None:
            for _ in range(ACCEPT_BATCH):
                sock: socket.socket | None = listener.accept()
                if sock is None:
                    return
                now = time.monotonic()
                if limiter.try_admit():
                    sessions.add(context.session(sock, listener, now))
                else:
                    sessions.add(context.refusal(sock, listener, now))

        return accept

    for listener in context.listeners:
        sessions.watch(listener.fileno(), acceptor(listener))

    def stop_listening() -> None:
        for listener in context.listeners:
            sessions.unwatch(listener.fileno())
        close_listeners(context.listeners)

    try:
        drive(sessions, context.stop, keep_going=lambda: True, on_stop=stop_listening)
    finally:
        sessions.close()
