"""SIGTERM and SIGINT as a readable file descriptor every loop can watch.

The pipe is written once and never read, so it stays readable: every thread
and loop that polls it sees the stop, not just the first one. It is also the
interpreter's wakeup fd, written by the C-level handler at the signal itself,
so a wait that began just before the Python-level handler could run still
wakes. (A process that forks children moves the wakeup fd to a pipe of its
own, which its waits drain: SIGCHLD must not look like a stop.)

Python runs signal handlers only in the main thread, but the kernel hands a
signal sent to the process to any thread that does not block it. A worker
thread that took SIGTERM would only have its own wait interrupted, and the
main thread, asleep in poll, would never run the handler: the server would
ignore the signal. So every thread the servers start blocks the stop signals
(``start_thread``), and only the main thread can receive them.
"""

from __future__ import annotations

import os
import select
import signal
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the forking architectures must not import threading (its after-fork hook costs every child)
    import threading

GRACE_SECONDS = 4.0
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


class StopSignal:
    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self.requested_at: float | None = None

    @property
    def fd(self) -> int:
        return self._read_fd

    @property
    def requested(self) -> bool:
        return self.requested_at is not None

    @property
    def force_at(self) -> float | None:
        """When unanswered requests get SHUTDOWN instead of an answer."""
        return None if self.requested_at is None else self.requested_at + GRACE_SECONDS

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        # The handler above is Python's: it runs in the main thread, between two of its
        # instructions. A signal that comes after the interpreter's last look and before
        # the main thread enters its wait, or that another thread's C-level handler takes,
        # would leave that wait asleep. The C-level handler writes the pipe itself, at once.
        signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)

    def request(self) -> None:
        if self.requested_at is None:
            self.requested_at = time.monotonic()
            try:
                os.write(self._write_fd, b"x")
            except BlockingIOError:
                pass

    def _on_signal(self, signum: int, frame: object) -> None:
        self.request()

    def close(self) -> None:
        os.close(self._read_fd)
        os.close(self._write_fd)

    @classmethod
    def renew_after_fork(cls, inherited: StopSignal) -> StopSignal:
        """A child's own stop: the parent's pipe would wake the whole family.

        A signal that reached the child before this (through the inherited
        handler) is carried over, not lost."""
        fresh = cls()
        fresh.install()
        if inherited.requested:
            fresh.request()
        inherited.close()
        return fresh


def wait_for(stop: StopSignal) -> None:
    """Block the calling (main) thread until the stop is requested."""
    while not stop.requested:
        wait_for_any(stop)


def wait_for_any(stop: StopSignal, *fds: int) -> None:
    """Block until the stop or until any of ``fds`` is readable."""
    poller = select.poll()
    for fd in (stop.fd, *fds):
        poller.register(fd, select.POLLIN)
    poller.poll()


def start_thread(thread: threading.Thread) -> None:
    """Start ``thread`` with the stop signals blocked in it (a new thread
    inherits its creator's mask), so that they reach the main thread."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        thread.start()
    finally:
        # A stop signal that came meanwhile was held pending, and is delivered here.
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
