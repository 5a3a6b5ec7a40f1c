"""Connections the server is confirmed to be serving, and one reply
collected from many connections with its arrival time: what the CONC, LIMIT
and STORE checks share."""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass

from suite.api import FreshTarget, Timeline, Unsupported
from suite.escape import escape
from suite.probe import Probe
from suite.targets.base import Target
from suite.wire import Ending, WireTimeout

SLEEP_MS = 500
T = SLEEP_MS / 1000
BUSY = b"-ERR BUSY"
# A busy server counts a connection until it has closed it, so a slot the
# harness (its INFO probe) or an earlier check has just given up can still be
# counted for a moment (section 13 tells checkers to wait for that). Filling
# the slots therefore retries a BUSY for this long before calling it a refusal.
BUSY_GRACE = 2.0


def no_line(probe: Probe) -> str:
    """What came instead of a line."""
    pending = probe.wire.pending()
    if probe.wire.ending is not Ending.OPEN:
        return str(probe.wire.ending.value) + (f" after {escape(pending)}" if pending else "")
    return f"only {escape(pending)} (incomplete)" if pending else "nothing before the deadline"


def send_quietly(probe: Probe, data: bytes) -> bool:
    """Send, tolerating a server that has already refused and closed the connection."""
    try:
        probe.wire.send(data, probe.timeout)
    except (OSError, WireTimeout):
        return False
    return True


def connect_served(target: Target, label: str, grace: float = BUSY_GRACE, judge: bool = True) -> Probe:
    """A connection the server is serving right now: its PING was answered.

    ``judge`` says that the check is about serving connections within the
    declared limits, on an instance the suite has to itself: then a
    connection that is not served is the target's failure. Otherwise (a
    store check, or a shared --address server that others may be filling)
    the check cannot be done, and says so."""
    deadline = time.monotonic() + grace
    while True:
        probe = target.connect(label)
        send_quietly(probe, b"PING\r\n")
        line = probe.wire.read_line(probe.timeout)
        if line == b"+PONG\r\n":
            return probe
        busy = line is not None and line.startswith(BUSY)
        if busy and time.monotonic() < deadline:
            probe.wire.wait_for_end(1.0)  # its slot is not ours; let the refusal finish first
            probe.close()
            continue
        got = escape(line) if line is not None else no_line(probe)
        if not judge:
            raise Unsupported(
                f"{label} was not served (PING got {got}), so this check cannot run; "
                "whether the server serves the connections it declares is judged by CH-CONC-1, CH-LIMIT-1 "
                "and CH-LIMIT-4"
            )
        raise probe.violation(
            f"{label} (within the declared limits) was not served: expected +PONG to a PING, got {got}",
            expected=b"+PONG\r\n",
            actual=line if line is not None else probe.wire.pending(),
        )


def open_served(target: Target, count: int, label: str = "connection", judge: bool = True) -> list[Probe]:
    """``count`` connections opened one after another, each confirmed served
    before the next is opened (so the listen backlog cannot fake them)."""
    return [connect_served(target, f"{label} {n + 1} of {count}", judge=judge) for n in range(count)]


@contextlib.contextmanager
def own_instance(target: Target, fresh_target: FreshTarget, why: str) -> Iterator[Target]:
    """A fresh instance when the suite can start one; else (--address) the shared one."""
    if not target.owned:
        yield target
        return
    with fresh_target(why=why) as instance:
        yield instance


@dataclass
class Arrival:
    line: bytes | None = None  # the first complete line, CRLF included
    at: float | None = None  # time.monotonic() when it had arrived
    ending: Ending = Ending.OPEN  # how the connection ended, if it ended without a line


def draw(timeline: Timeline, probes: list[Probe], sent: list[float], arrivals: list[Arrival]) -> None:
    """One bar per connection: from its request to its first line (open-ended if none came)."""
    for probe, at, arrival in zip(probes, sent, arrivals, strict=True):
        if arrival.line is not None:
            outcome = escape(arrival.line)
        else:
            outcome = arrival.ending.value if arrival.ending is not Ending.OPEN else "no reply"
        timeline.bar(probe.label, at, arrival.at, outcome)


def gather_lines(probes: list[Probe], deadline: float, close_when_answered: bool = False) -> list[Arrival]:
    """The first line from each connection, with its arrival time, until all
    have one (or have ended) or the deadline passes. One thread polls them
    all, so arrival times are taken as soon as the poll returns."""
    arrivals = [Arrival() for _ in probes]
    poller = select.poll()
    by_fd: dict[int, int] = {}
    for index, probe in enumerate(probes):
        if b"\n" in probe.wire.pending():
            arrivals[index].line = probe.wire.read_line(0.01)
            arrivals[index].at = time.monotonic()
        elif probe.wire.ending is not Ending.OPEN:
            arrivals[index].ending = probe.wire.ending
        else:
            fd = probe.wire.sock.fileno()
            by_fd[fd] = index
            poller.register(fd, select.POLLIN)
    while by_fd and (left := deadline - time.monotonic()) > 0:
        events = poller.poll(left * 1000)
        now = time.monotonic()
        for fd, _ in events:
            index = by_fd[fd]
            probe = probes[index]
            line = probe.wire.read_line(0.05)
            if line is None and probe.wire.ending is Ending.OPEN:
                continue  # part of a line; the rest follows
            if line is not None:
                arrivals[index].line, arrivals[index].at = line, now
            else:
                arrivals[index].ending = probe.wire.ending
            poller.unregister(fd)
            del by_fd[fd]
            if close_when_answered:
                probe.close()
    return arrivals
