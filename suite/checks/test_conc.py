"""CH-CONC: concurrency (PROTOCOL.md section 13)."""

from __future__ import annotations

import select
import socket
import time

import psutil

from suite.api import FreshTarget, Measure, StartTimeline, Violation, fresh_key, not_applicable, requirement
from suite.checks.connections import (
    BUSY,
    SLEEP_MS,
    Arrival,
    T,
    connect_served,
    draw,
    gather_lines,
    open_served,
    own_instance,
    send_quietly,
)
from suite.escape import escape
from suite.targets.base import Target
from suite.wire import Ending


def describe(arrival: Arrival, since: float, until: float) -> str:
    if arrival.line is not None and arrival.at is not None:
        return f"{escape(arrival.line)} after {(arrival.at - since) * 1000:.0f} ms"
    if arrival.ending is not Ending.OPEN:
        return str(arrival.ending.value)
    return f"no reply within {(until - since) * 1000:.0f} ms"


# ---- CH-CONC-1 ----------------------------------------------------------------------------


# 1.5 T is the spec's bound; the margin covers scheduling on a loaded two-core
# machine. It must stay below 0.5 T: two SLEEPs run one after the other take
# 2 T, and the check has to tell that apart from 1.5 T.
CONC1_MARGIN = 0.2


@requirement("CH-CONC-1")
def test_declared_concurrency_runs_in_parallel(
    target: Target, fresh_target: FreshTarget, measure: Measure, timeline: StartTimeline
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
            probes[index].request(b"SLEEP %d" % SLEEP_MS)
        bound = 1.5 * T + CONC1_MARGIN
        until = time.monotonic() + bound + 2.0
        arrivals = gather_lines(probes, until)
        draw(
            timeline(
                f"SLEEP {SLEEP_MS} on {len(probes)} connection(s) at once (concurrency={concurrency})",
                origin=min(sent),
                note="served in parallel, every reply comes at about T; one at a time, they queue",
                bound=bound,
            ),
            probes,
            sent,
            arrivals,
        )
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
    target: Target, fresh_target: FreshTarget, measure: Measure, timeline: StartTimeline
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
        sent = [0.0] * len(probes)
        for index in reversed(range(len(probes))):
            sent[index] = time.monotonic()
            send_quietly(probes[index], b"SLEEP %d\r\n" % SLEEP_MS)
        cutoff = first + 2 * T - CONC2_TOLERANCE
        arrivals = gather_lines(probes, cutoff, close_when_answered=True)
        draw(
            timeline(
                f"SLEEP {SLEEP_MS} on {len(probes)} connections at once, one more than concurrency={concurrency}",
                origin=first,
                note="at least one must wait for a free worker (or be refused BUSY): watched until 2 T",
                bound=cutoff - first,
            ),
            probes,
            sent,
            arrivals,
        )
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
        # Sent together on purpose: the order of pipelined requests on one connection is what is judged.
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
        a.ask(b"SET " + key + b" 41", b"+OK", why="the value the INCR will change")
        start = time.monotonic()
        # Sent together on purpose: the INCR pipelined behind the SLEEP must wait for it.
        a.send(b"SLEEP %d\r\nINCR " % SLEEP_MS + key + b"\r\n")
        b.quiet_for(T / 2)  # the spec's 250 ms, on the wire
        b.request(b"GET " + key)
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
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        self.family, self.kind, self.proto, self.address = family, kind, proto, address
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
    target: Target, fresh_target: FreshTarget, measure: Measure
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
