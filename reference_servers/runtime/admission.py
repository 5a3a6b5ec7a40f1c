"""The accept loop of the architectures that hand each connection to a new
thread or process: admit while under the limit, refuse with BUSY over it."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from .blocking import drive
from .context import Context
from .listeners import Listener, close_listeners
from .sessions import SessionSet

ACCEPT_BATCH = 64


class Admission:
    def __init__(
        self,
        context: Context,
        at_capacity: Callable[[], bool],
        start: Callable[[socket.socket, Listener], None],
    ) -> None:
        self._context = context
        self._at_capacity = at_capacity
        self._start = start
        # Refused connections linger here for their drain; the loop never blocks on one.
        self.refusals = SessionSet()
        for listener in context.listeners:
            self.refusals.watch(listener.fileno(), self._acceptor(listener))

    def also_watch(self, fd: int, on_ready: Callable[[float], object]) -> None:
        self.refusals.watch(fd, on_ready)

    def run(self) -> None:
        """Until the stop; refused connections still draining are then dropped."""
        drive(self.refusals, self._context.stop, keep_going=lambda: True, on_stop=self._stop_listening)
        self.refusals.close()

    def close_inherited(self) -> None:
        """In a forked child: let go of the parent's listeners and refusals."""
        self.refusals.close()
        close_listeners(self._context.listeners)

    def _stop_listening(self) -> None:
        for listener in self._context.listeners:
            self.refusals.unwatch(listener.fileno())
        close_listeners(self._context.listeners)

    def _acceptor(self, listener: Listener) -> Callable[[float], None]:
        def accept(now: float) -> None:
            # Under a burst, take what is waiting in one go (a trip through the
            # event loop per connection is time the ones behind it wait), and
            # only then start them. When starting is a fork, each fork makes the
            # parent's pages copy-on-write again, and the parent pays a page
            # copy for every page it writes before the next fork: a loop that
            # does nothing but start keeps that to half of what accepting in
            # between cost (measured: 98 page faults per connection, then 50).
            accepted = []
            for _ in range(ACCEPT_BATCH):
                sock = listener.accept()
                if sock is None:
                    break
                accepted.append(sock)
            for sock in accepted:
                if self._at_capacity():
                    self.refusals.add(self._context.refusal(sock, listener, time.monotonic()))
                else:
                    self._start(sock, listener)

        return accept
