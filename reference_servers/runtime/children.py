"""Forked children: start them, notice when they die, reap them, stop them."""

from __future__ import annotations

import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable

from .stop import StopSignal

EXIT_DEADLINE = 4.8  # after the stop signal; the spec allows 5 s in all
RESIGNAL_SECONDS = 0.25


class Children:
    def __init__(self, stop: StopSignal) -> None:
        self.pids: set[int] = set()
        self._stop = stop
        self.wake_fd, self._wake_write = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_write, False)
        signal.signal(signal.SIGCHLD, self._on_sigchld)
        # Every signal the process handles, SIGCHLD included, now wakes through this pipe,
        # which every wait of the parent watches and drains (reap): a stop that comes just
        # before a wait wakes it too (stop.py).
        signal.set_wakeup_fd(self._wake_write, warn_on_full_buffer=False)

    def __len__(self) -> int:
        return len(self.pids)

    def spawn(self, run_in_child: Callable[[StopSignal], None]) -> int:
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                signal.set_wakeup_fd(-1)  # the parent's pipe, closed below; the child's own stop sets its own
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(self.wake_fd)
                os.close(self._wake_write)
                run_in_child(StopSignal.renew_after_fork(self._stop))
            except BaseException:
                traceback.print_exc(file=sys.stderr)
                status = 1
            finally:
                sys.stderr.flush()
                os._exit(status)
        self.pids.add(pid)
        return pid

    def reap(self) -> list[int]:
        """The children that have ended since the last call.

        Each call costs one wait per ended child, not one per child: with a
        thousand children alive, asking each of them (a waitpid per pid) on
        every accept made the accept loop quadratic."""
        try:
            while os.read(self.wake_fd, 4096):
                pass
        except BlockingIOError:
            pass
        ended: list[int] = []
        while self.pids:
            try:
                # Look without reaping: the process may have children that are
                # not ours to reap.
                found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if found is None:
                break
            if found.si_pid not in self.pids:
                return ended + self._reap_one_by_one()
            os.waitpid(found.si_pid, 0)
            self.pids.discard(found.si_pid)
            ended.append(found.si_pid)
        return ended

    def _reap_one_by_one(self) -> list[int]:
        """The slow way, for when another owner's child has ended and waits
        to be reaped by that owner, hiding ours from the look above."""
        ended: list[int] = []
        for pid in list(self.pids):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.pids.discard(pid)
                ended.append(pid)
        return ended

    def stop_all(self) -> None:
        """Pass the stop on, wait for the children to finish their own
        shutdown, and kill whoever is still there at the deadline."""
        for pid in self.pids:
            _signal(pid, signal.SIGTERM)
        started = self._stop.requested_at or time.monotonic()
        deadline = started + EXIT_DEADLINE
        poller = select.poll()
        poller.register(self.wake_fd, select.POLLIN)
        while self.pids:
            self.reap()
            if not self.pids:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not poller.poll(min(left, RESIGNAL_SECONDS) * 1000):
                # A signal that lands while a child is still starting up can be
                # lost (CPython clears pending signals after fork); stopping twice
                # is harmless, so say it again.
                for pid in self.pids:
                    _signal(pid, signal.SIGTERM)
        for pid in self.pids:
            _signal(pid, signal.SIGKILL)
        for pid in list(self.pids):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.pids.clear()

    def _on_sigchld(self, signum: int, frame: object) -> None:
        try:
            os.write(self._wake_write, b"x")
        except BlockingIOError:
            pass


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
