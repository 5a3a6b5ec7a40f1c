"""Driving connections to their end, for the architectures that block a
thread or a process on each one, and the graceful-shutdown schedule that
every architecture follows."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable

from .context import Context
from .listeners import Listener, close_listeners
from .sessions import SessionSet
from .stop import StopSignal


def drive(
    sessions: SessionSet,
    stop: StopSignal,
    keep_going: Callable[[], bool],
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Run ``sessions`` while ``keep_going()``; after a stop, call ``on_stop``,
    drain them with the shutdown schedule and return once none is left."""
    sessions.watch(stop.fd, lambda now: None)
    shutting_down = forced = False
    while True:
        if stop.requested and not shutting_down:
            shutting_down = True
            sessions.unwatch(stop.fd)  # the pipe stays readable; watching it would spin
            if on_stop is not None:
                on_stop()
            sessions.each(lambda session, now: session.begin_shutdown(now))
        force_at = stop.force_at
        if shutting_down and not forced and force_at is not None and time.monotonic() >= force_at:
            forced = True
            sessions.each(lambda session, now: session.force_shutdown(now))
        if shutting_down and len(sessions) == 0:
            return
        if not shutting_down and not keep_going():
            return
        sessions.run_once(extra_deadline=None if forced else force_at)


def serve_connection(context: Context, sock: socket.socket, listener: Listener) -> None:
    """One connection, start to end, on the calling thread. A stop that comes
    meanwhile closes the listeners at once: new clients are refused while
    this connection drains."""
    sessions = SessionSet()
    try:
        sessions.add(context.session(sock, listener, time.monotonic()))
        drive(
            sessions,
            context.stop,
            keep_going=lambda: len(sessions) > 0,
            on_stop=lambda: close_listeners(context.listeners),
        )
    finally:
        sessions.close()


def accept_and_serve(context: Context) -> None:
    """Wait for a connection on any listener, serve it to its end, repeat until
    stopped. Several threads or processes may run this on the same listeners:
    the kernel hands each connection to one of them."""
    poller = select.poll()
    by_fd = {listener.fileno(): listener for listener in context.listeners}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    poller.register(context.stop.fd, select.POLLIN)
    while not context.stop.requested:
        for fd, _ in poller.poll():
            listener = by_fd.get(fd)
            if listener is None or context.stop.requested:
                continue
            sock = listener.accept()
            if sock is not None:
                serve_connection(context, sock, listener)
    close_listeners(context.listeners)
