"""A set of Sessions watched with one epoll, each with at most one timer.

Every architecture drives its connections through this: the evented reactor
holds thousands in one set, the blocking architectures hold one per thread or
process. epoll (unlike selectors and asyncio) reports EPOLLPRI, the urgent
byte's signal. A closed session leaves the set, and its timer, at once: the
set holds nothing for a connection that is gone.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Callable

from .session import Session
from .timers import Timers

_PRI = select.EPOLLPRI
_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_GONE = select.EPOLLERR | select.EPOLLHUP


class SessionSet:
    def __init__(self, on_closed: Callable[[Session], None] | None = None) -> None:
        self._on_closed = on_closed
        self._epoll = select.epoll()
        self._sessions: dict[int, Session] = {}
        self._masks: dict[int, int] = {}
        self._watchers: dict[int, Callable[[float], object]] = {}
        self._timers: Timers[Session] = Timers()

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def timer_count(self) -> int:
        """Entries in the timer heap: at most one per open session."""
        return len(self._timers)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._sessions.values()))

    def add(self, session: Session) -> None:
        if session.closed:
            return
        fd = session.fileno()
        self._sessions[fd] = session
        self._masks[fd] = self._mask(session)
        self._epoll.register(fd, self._masks[fd])
        self._schedule(session)

    def watch(self, fd: int, on_ready: Callable[[float], object]) -> None:
        """Call ``on_ready(now)`` when ``fd`` is readable (listeners, signal pipes)."""
        self._watchers[fd] = on_ready
        self._epoll.register(fd, _IN)

    def unwatch(self, fd: int) -> None:
        if self._watchers.pop(fd, None) is not None:
            # Closing a descriptor removes it from epoll by itself; it may be closed already.
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)

    def close(self) -> None:
        for session in list(self._sessions.values()):
            session.abort()
            self._refresh(session)
        self._epoll.close()

    def run_once(self, extra_deadline: float | None = None) -> None:
        """Wait for one batch of events or timers, and dispatch it."""
        now = time.monotonic()
        deadline = self._timers.earliest()
        if extra_deadline is not None:
            deadline = extra_deadline if deadline is None else min(deadline, extra_deadline)
        timeout = -1.0 if deadline is None else max(0.0, deadline - now)
        events = self._epoll.poll(timeout)
        now = time.monotonic()
        for fd, mask in events:
            watcher = self._watchers.get(fd)
            if watcher is not None:
                watcher(now)
                continue
            session = self._sessions.get(fd)
            if session is None:
                continue
            if mask & _PRI:
                session.on_urgent(now)
            if mask & (_IN | _GONE) and not session.closed:
                if session.wants_read:
                    session.on_readable(now)
                elif mask & _GONE:
                    session.on_hangup()
            if mask & _OUT and not session.closed:
                session.on_writable(now)
            self._refresh(session)
        self._fire_timers(now)

    def each(self, action: Callable[[Session, float], None]) -> None:
        """Apply ``action`` to every session (shutdown, for one)."""
        now = time.monotonic()
        for session in list(self._sessions.values()):
            action(session, now)
            self._refresh(session)

    # ---- bookkeeping -------------------------------------------------------

    @staticmethod
    def _mask(session: Session) -> int:
        return _PRI | (_IN if session.wants_read else 0) | (_OUT if session.wants_write else 0)

    def _refresh(self, session: Session) -> None:
        fd = session.fileno()
        if session.closed:
            self._timers.discard(session)
            if self._sessions.get(fd) is session:
                del self._sessions[fd]
                del self._masks[fd]
                # The socket is closed already, which removed it from the epoll set.
                if self._on_closed is not None:
                    self._on_closed(session)
            return
        mask = self._mask(session)
        if mask != self._masks[fd]:
            self._masks[fd] = mask
            self._epoll.modify(fd, mask)
        self._schedule(session)

    def _schedule(self, session: Session) -> None:
        deadline = session.deadline()
        scheduled = self._timers.deadline_of(session)
        if deadline is not None and scheduled is not None and scheduled <= deadline:
            # A deadline that only moved later (the idle timer, after each
            # request) keeps its earlier entry: that entry fires, finds the
            # session not due yet and schedules it anew (_fire_timers), so a
            # busy connection costs no heap work per request.
            return
        self._timers.set(session, deadline)

    def _fire_timers(self, now: float) -> None:
        for session in self._timers.pop_due(now):
            deadline = session.deadline()
            if deadline is not None and deadline <= now:
                session.on_timer(now)
            self._refresh(session)
