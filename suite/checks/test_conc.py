"""CH-CONC: concurrency (PROTOCOL.md section 13).

The helpers at the top (connections the server is confirmed to be serving,
and collecting one reply from many connections with arrival times) are also
used by test_limit.py and test_store.py.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil

from suite.api import Unsupported, Violation, fresh_key, not_applicable, requirement
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

FreshTarget = Callable[..., contextlib.AbstractContextManager[Target]]


# ---- helpers shared by the CONC, LIMIT and STORE checks -------------------------------------


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


def describe(arrival: Arrival, since: float, until: float) -> str:
    if arrival.line is not None and arrival.at is not None:
        return f"{escape(arrival.line)} after {(arrival.at - since) * 1000:.0f} ms"
    if arrival.ending is not Ending.OPEN:
        return arrival.ending.value
    return f"no reply within {(until - since) * 1000:.0f} ms"


def no_line(probe: Probe) -> str:
    """What came instead of a line."""
    pending = probe.wire.pending()
    if probe.wire.ending is not Ending.OPEN:
        return probe.wire.ending.value + (f" after {escape(pending)}" if pending else "")
    return f"only {escape(pending)} (incomplete)" if pending else "nothing before the deadline"


# ---- CH-CONC-1 ----------------------------------------------------------------------------


# 1.5 T is the spec's bound; the margin covers scheduling on a loaded two-core
# machine. It must stay below 0.5 T: two SLEEPs run one after the other take
# 2 T, and the check has to tell that apart from 1.5 T.
CONC1_MARGIN = 0.2


@requirement("CH-CONC-1")
def test_declared_concurrency_runs_in_parallel(
    target: Target, fresh_target: FreshTarget, measure: Callable[..., None]
) -> None:
    with own_instance(target, fresh_target, why="it occupies every connection slot") as t:
        concurrency = t.declared.number("concurrency")
        max_connections = t.declared.number("max_connections")
        if concurrency > max_connections:
            raise Violation(
                f"concurrency={concurrency} cannot be real with max_connections={max_connections}: "
                "concurrency counts requests of different connections",
                expected=f"concurrency <= {max_connections}",
                actual=f"concurrency={concurrency}",
            )
        probes = open_served(t, concurrency, judge=t is not target)
        sent: list[float] = [0.0] * len(probes)
        # Reverse order of opening: a server that only serves the first
        # connections it accepted (the rest waiting in the backlog) cannot pass.
        for index in reversed(range(len(probes))):
            sent[index] = time.monotonic()
            probes[index].send(b"SLEEP %d\r\n" % SLEEP_MS)
        bound = 1.5 * T + CONC1_MARGIN
        until = time.monotonic() + bound + 2.0
        arrivals = gather_lines(probes, until)
        latencies = [(a.at - s) if a.at is not None else float("inf") for a, s in zip(arrivals, sent, strict=True)]
        finite = [x for x in latencies if x != float("inf")]
        if finite:
            measure("slowest of the parallel SLEEP replies", round(max(finite) * 1000), "ms")
        wrong = [i for i, a in enumerate(arrivals) if a.line != b"+OK\r\n"]
        late = [i for i, x in enumerate(latencies) if x > bound and i not in wrong]
        if wrong or late:
            bad = (wrong + late)[:4]
            raise Violation(
                f"{len(wrong) + len(late)} of {len(probes)} connections (concurrency={concurrency}) did not get "
                f"+OK within 1.5 x {SLEEP_MS} ms (+{CONC1_MARGIN * 1000:.0f} ms margin) of sending SLEEP {SLEEP_MS}",
                expected=f"+OK within {bound * 1000:.0f} ms on every one of the {len(probes)} connections",
                actual="; ".join(f"{probes[i].label}: {describe(arrivals[i], sent[i], until)}" for i in bad),
                transcripts=[probes[i].wire.transcript for i in bad],
            )


# ---- CH-CONC-2 ----------------------------------------------------------------------------

# Lower bounds are exact but for clock granularity.
CONC2_TOLERANCE = 0.03


@requirement("CH-CONC-2")
def test_no_more_than_the_declared_concurrency_runs_at_once(
    target: Target, fresh_target: FreshTarget, measure: Callable[..., None]
) -> None:
    with own_instance(target, fresh_target, why="it occupies every connection slot and one more") as t:
        concurrency = t.declared.number("concurrency")
        max_connections = t.declared.number("max_connections")
        served = open_served(t, min(concurrency, max_connections), judge=False)
        # The extra connections are not confirmed: a queue server leaves them
        # waiting, a busy one refuses them, and either is fine here.
        extra = [t.connect(f"extra connection {n + 1}") for n in range(concurrency + 1 - len(served))]
        probes = extra + served
        first = time.monotonic()
        for probe in reversed(probes):
            send_quietly(probe, b"SLEEP %d\r\n" % SLEEP_MS)
        cutoff = first + 2 * T - CONC2_TOLERANCE
        arrivals = gather_lines(probes, cutoff, close_when_answered=True)
        early_ok = [a for a in arrivals if a.line == b"+OK\r\n" and a.at is not None and a.at < cutoff]
        refused = [a for a in arrivals if a.line is not None and a.line.startswith(BUSY)]
        measure(
            "SLEEPs finished before 2 T",
            len(early_ok),
            "requests",
            note=f"of {len(probes)} sent at once; declared concurrency={concurrency}",
        )
        if len(early_ok) == len(probes) and not refused:
            raise Violation(
                f"all {len(probes)} SLEEP {SLEEP_MS} requests sent at once on different connections were answered "
                f"within 2 x {SLEEP_MS} ms: more than concurrency={concurrency} ran at once",
                expected=f"at least one +OK no earlier than {2 * SLEEP_MS} ms, or -ERR BUSY",
                actual="; ".join(
                    f"{p.label}: {describe(a, first, cutoff)}" for p, a in zip(probes[:6], arrivals, strict=False)
                ),
                transcripts=[p.wire.transcript for p in probes[:4]],
            )


# ---- CH-CONC-3 ----------------------------------------------------------------------------


@requirement("CH-CONC-3")
def test_pipelined_sleeps_run_one_after_the_other(target: Target) -> None:
    with target.connect() as c:
        start = time.monotonic()
        c.send(b"SLEEP 300\r\nSLEEP 300\r\nPING\r\n")
        c.expect_line(b"+OK\r\n", timeout=3, why="the first SLEEP")
        # The second SLEEP may start only once the first is answered: 600 ms in all.
        c.expect_silence(max(0.0, start + 0.6 - 0.005 - time.monotonic()), why="the second SLEEP runs after the first")
        c.expect_line(b"+OK\r\n", timeout=3, why="the second SLEEP")
        c.expect_line(b"+PONG\r\n", why="the PING after both SLEEPs")


@requirement("CH-CONC-3")
def test_a_request_waits_for_the_sleep_before_it(target: Target) -> None:
    concurrency = target.declared.number("concurrency")
    max_connections = target.declared.number("max_connections")
    if max_connections < 2 or concurrency < 2:
        # The spec's example needs two connections served at once; with one at
        # a time only the pipelined form above can show the order.
        return
    key = fresh_key("conc3")
    with (
        connect_served(target, "sleeping connection", judge=False) as a,
        connect_served(target, "reading connection", judge=False) as b,
    ):
        a.send(b"SET " + key + b" 41\r\n")
        a.expect_line(b"+OK\r\n")
        start = time.monotonic()
        a.send(b"SLEEP %d\r\nINCR " % SLEEP_MS + key + b"\r\n")
        b.quiet_for(T / 2)  # the spec's 250 ms, on the wire
        b.send(b"GET " + key + b"\r\n")
        got = b.line("the reply to GET")
        answered = time.monotonic() - start
        # Only the INCR's effect, seen before the SLEEP could have ended, shows
        # the order broken (any other wrong value is a matter for CH-STORE).
        if got == b"$42\r\n" and answered < T:
            raise Violation(
                f"a GET sent {T / 2 * 1000:.0f} ms after SLEEP {SLEEP_MS} and INCR were pipelined on another "
                f"connection, and answered after {answered * 1000:.0f} ms (before the SLEEP could end), "
                "already saw the INCR's result: the INCR did not wait for the SLEEP",
                expected=b"$41\r\n",
                actual=got,
                transcripts=[a.wire.transcript, b.wire.transcript],
            )
        a.expect_line(b"+OK\r\n", timeout=3, why="the SLEEP")
        a.expect_line(b":42\r\n", why="the INCR after the SLEEP")


# ---- CH-CONC-4 ----------------------------------------------------------------------------

BOUND_SLACK = 16


class Flood:
    """Many non-blocking connections: each sends SLEEP once connected, and
    whatever comes back (replies, BUSY lines, closes) is read and dropped.
    A connection that never completes is not judged here (CH-LIMIT-6)."""

    def __init__(self, host: str, port: int) -> None:
        self.family, self.kind, self.proto, _, self.address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        self.poller = select.poll()
        self.sockets: dict[int, socket.socket] = {}
        self.sent: set[int] = set()

    def open(self) -> None:
        sock = socket.socket(self.family, self.kind, self.proto)
        sock.setblocking(False)
        sock.connect_ex(self.address)
        self.sockets[sock.fileno()] = sock
        self.poller.register(sock, select.POLLOUT | select.POLLIN)

    def pump(self, seconds: float) -> None:
        for fd, events in self.poller.poll(seconds * 1000):
            sock = self.sockets[fd]
            try:
                if events & select.POLLOUT and fd not in self.sent:
                    self.sent.add(fd)
                    sock.send(b"SLEEP %d\r\n" % SLEEP_MS)
                    self.poller.modify(fd, select.POLLIN)
                elif events & (select.POLLIN | select.POLLHUP | select.POLLERR) and sock.recv(65536):
                    continue
                else:
                    self.poller.unregister(fd)  # ended (or failed): nothing more to do
            except OSError:
                self.poller.unregister(fd)

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()


@requirement("CH-CONC-4")
def test_processes_and_threads_stay_bounded_under_a_flood(
    target: Target, fresh_target: FreshTarget, measure: Callable[..., None]
) -> None:
    if not target.owned:
        not_applicable("needs the server's process (the suite must start it: --cmd or --reference)")
    with fresh_target(why="it floods the server with connections") as t:
        assert t.process is not None
        max_connections = t.declared.number("max_connections")
        limit = max_connections + BOUND_SLACK
        root = psutil.Process(t.process.pid)
        peak_processes, peak_threads, worst = 0, 0, ""

        def sample() -> None:
            nonlocal peak_processes, peak_threads, worst
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            counts = []
            for process in tree:
                try:
                    counts.append((process.num_threads(), process.pid))
                except psutil.Error:
                    continue
            peak_processes = max(peak_processes, len(counts))
            if counts and max(counts)[0] > peak_threads:
                peak_threads, worst = max(counts)[0], f"pid {max(counts)[1]}"

        flood = Flood(t.endpoint.host, t.endpoint.port)
        try:
            for n in range(3 * max_connections):
                flood.open()
                flood.pump(0)
                if n % 8 == 0:
                    sample()
            hold_until = time.monotonic() + 1.0  # keep them all open about 1 s
            while (left := hold_until - time.monotonic()) > 0:
                sample()
                flood.pump(min(left, 0.05))
            sample()
        finally:
            flood.close()
        measure("peak processes in the server's tree", peak_processes, "processes", note=f"bound {limit}")
        measure("peak threads in one process", peak_threads, "threads", note=f"bound {limit}; {worst}")
        problems = []
        if peak_processes > limit:
            problems.append(f"{peak_processes} processes")
        if peak_threads > limit:
            problems.append(f"{peak_threads} threads in one process ({worst})")
        if problems:
            raise Violation(
                f"flooded with {len(flood.sockets)} connections (3 x max_connections={max_connections}), the server's "
                f"process tree reached {' and '.join(problems)}",
                expected=f"at most {limit} processes, and at most {limit} threads in any one process",
                actual=f"{peak_processes} processes, at most {peak_threads} threads in one process",
            )
