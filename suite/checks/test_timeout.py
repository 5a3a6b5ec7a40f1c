"""CH-TIMEOUT: the idle timer (PROTOCOL.md section 12).

Every check starts its own instance with a short idle timeout ({idle}=1 s) and
takes its bounds from what that instance declares in INFO. Where a check needs
several connections, they run side by side when the instance serves that many at
once (max_connections), so the waits overlap; otherwise one after the other,
since a connection waiting in the listen backlog has no timer yet.

Timing references are chosen so that a loaded machine can never make a
conforming server fail: a lower bound ("not before idle_timeout_ms") is
measured from a moment known to precede the server's timer start (just before
the request that restarts it is sent, or before connect), and an upper bound
from a moment known to follow it (when its reply arrived, or connect returned).

Each request's reply is read before the next request is sent, so that a
server which cannot pipeline fails CH-FRAME-17/18 and not these; only
CH-TIMEOUT-6 pipelines, because its requirement is about a request waiting
behind a SLEEP.
"""

from __future__ import annotations

import select
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from suite.api import FreshTarget, HarnessError, Measure, Unsupported, Violation, not_applicable, requirement, waits
from suite.probe import Probe, silent_until
from suite.targets.base import Target
from suite.wire import Ending

# Each check waits out a timer on an instance of its own: a worker runs it beside its next checks.
pytestmark = waits

IDLE_SECONDS = 1.0  # what the checks ask for with {idle}
LONGEST_IDLE_MS = 5000  # longer declared timeouts would make these checks too slow
GRANULARITY = 0.020  # clock granularity allowed on lower bounds
WINDOW = 1.0  # CH-TIMEOUT-1: no later than idle_timeout_ms + 1000 ms
TIMELY = 0.250  # CH-TIMEOUT-2: no later than idle_timeout_ms + 250 ms
TIMELY_MARGIN = 0.100  # scheduling noise on a loaded 2-core machine (other checks run in parallel)
DRIP = 0.2  # CH-TIMEOUT-4/5: one byte (or empty line) every 200 ms
DISABLED_WATCH = 1.5  # CH-TIMEOUT-10: how long an idle connection must stay open
TLS_ALERT = 0x15  # a TLS alert record may precede the close; any other byte would be a message


@dataclass
class Waiter:
    """A connection whose idle timer is running, and what is known about when it started."""

    probe: Probe
    what: str
    since: str  # the event the timer (re)starts from, for messages
    lower_ref: float  # a moment known to precede the server's timer (re)start
    upper_ref: float  # a moment known to follow it
    drip: Callable[[], None] | None = None  # sends one more idle-looking byte every DRIP seconds
    arrival: float | None = None  # when the first byte (or the end) arrived


def _idle_seconds(t: Target) -> float:
    """The instance's idle timeout; not applicable when it is disabled."""
    idle = t.declared.number("idle_timeout_ms")
    if idle == 0:
        not_applicable(f"the instance started with {{idle}}={IDLE_SECONDS:g} declares idle_timeout_ms=0 (disabled)")
    if idle > LONGEST_IDLE_MS:
        raise Unsupported(
            f"the instance started with {{idle}}={IDLE_SECONDS:g} declares idle_timeout_ms={idle}; these checks wait "
            f"at most {LONGEST_IDLE_MS} ms: give the --cmd template an {{idle}} placeholder"
        )
    return idle / 1000


def _side_by_side(t: Target, count: int) -> bool:
    return count > 1 and t.declared.number("max_connections") >= count


def _connect_idle(t: Target, what: str) -> Waiter:
    """A connection that never sends anything: its timer starts at accept."""
    before = time.monotonic()
    probe = t.connect(what)
    return Waiter(probe, what, "accept", lower_ref=before, upper_ref=time.monotonic())


def _after_ping(t: Target, what: str, framed: bool = False) -> Waiter:
    """A connection that got one reply: its timer restarts at that reply."""
    probe = t.connect(what)
    if framed:
        probe.switch_to_framed()
    before = time.monotonic()
    probe.ask(b"PING", b"+PONG", why="the reply the idle timer restarts from")
    return Waiter(probe, what, "the reply", lower_ref=before, upper_ref=time.monotonic())


def _await_first_bytes(waiters: list[Waiter], until: float) -> None:
    """Wait (polling every connection at once) until each has received something
    or ended, or ``until``; record when. Drips the waiters that have a drip."""
    poller = select.poll()
    by_fd: dict[int, Waiter] = {}
    for waiter in waiters:
        if waiter.probe.wire.pending():
            waiter.arrival = time.monotonic()
            continue
        fd = waiter.probe.wire.sock.fileno()
        by_fd[fd] = waiter
        poller.register(fd, select.POLLIN)
    next_drip = time.monotonic() + DRIP
    while by_fd and (now := time.monotonic()) < until:
        for fd, _ in poller.poll(max(0.0, min(until, next_drip) - now) * 1000):
            by_fd[fd].arrival = time.monotonic()
            poller.unregister(fd)
            del by_fd[fd]
        if time.monotonic() >= next_drip:
            for waiter in by_fd.values():
                if waiter.drip is not None:
                    waiter.drip()
            next_drip += DRIP


def _in_window(waiter: Waiter, idle: float, what: str) -> None:
    """CH-TIMEOUT-1's window: not before idle, no later than idle + 1000 ms."""
    probe, frm = waiter.probe, waiter.since
    if waiter.arrival is None:
        raise probe.violation(
            f"{waiter.what}: no {what} within idle_timeout_ms + 1000 ms ({idle + WINDOW:.3f} s) of {frm}",
            expected=f"{what} after {idle:.3f} s to {idle + WINDOW:.3f} s",
            actual=probe.wire.pending() or "nothing",
        )
    early = waiter.arrival - waiter.lower_ref
    if early < idle - GRANULARITY:
        got = probe.wire.read_exactly(1 << 16, timeout=0.05)
        raise probe.violation(
            f"{waiter.what}: the connection was timed out {early:.3f} s after {frm}, before idle_timeout_ms "
            f"({idle * 1000:.0f} ms) had elapsed",
            expected=f"nothing for {idle:.3f} s",
            actual=got or probe.wire.ending.value,
        )
    late = waiter.arrival - waiter.upper_ref
    if late > idle + WINDOW:
        raise probe.violation(
            f"{waiter.what}: {what} came {late:.3f} s after {frm}, later than idle_timeout_ms + 1000 ms",
            expected=f"{what} within {idle + WINDOW:.3f} s",
            actual=f"after {late:.3f} s",
        )


def _expect_timeout_and_fin(waiter: Waiter, idle: float) -> None:
    _in_window(waiter, idle, "-ERR TIMEOUT")
    waiter.probe.expect_error("TIMEOUT", why="the idle timer expired", timeout=1.0)
    waiter.probe.expect_end(timeout=1.5, why="after TIMEOUT the server closes as in section 9")


def _run(t: Target, starters: list[Callable[[], Waiter]], judge: Callable[[Waiter], None], span: float) -> None:
    """Start the waiters (side by side when the instance serves them all at once),
    wait up to ``span`` after each one's upper reference, and judge each."""
    if _side_by_side(t, len(starters)):
        waiters = [start() for start in starters]
        _await_first_bytes(waiters, max(w.upper_ref for w in waiters) + span)
        for waiter in waiters:
            judge(waiter)
        return
    for start in starters:
        waiter = start()
        _await_first_bytes([waiter], waiter.upper_ref + span)
        judge(waiter)
        waiter.probe.close()


def _client_hello(t: Target) -> bytes:
    """The first flight of a real TLS client, as bytes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = t.trust.context().wrap_bio(incoming, outgoing, server_hostname=t.trust.hostname)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    if len(hello) < 10:
        raise HarnessError("could not build a TLS ClientHello")
    return hello


def _closed_without_message(waiter: Waiter, idle: float) -> None:
    """A connection in a TLS handshake: closed in the window, with no CloudHash message
    (a TLS alert record is allowed); FIN or RST."""
    _in_window(waiter, idle, "the close")
    probe = waiter.probe
    ending = probe.wire.wait_for_end(1.5)
    got = probe.wire.pending()
    if got and got[0] != TLS_ALERT:
        raise probe.violation(
            f"{waiter.what}: the server sent bytes that are not a TLS alert when the idle timer expired "
            "during a TLS handshake; it must close without any CloudHash message",
            expected="no bytes (or a TLS alert record), then the close",
            actual=got,
        )
    if ending not in (Ending.FIN, Ending.RST):
        raise probe.violation(
            f"{waiter.what}: the connection was not closed when the idle timer expired",
            expected="FIN or RST",
            actual=ending.value,
        )


# ---- CH-TIMEOUT-1, -2, -3 --------------------------------------------------------------------------


@requirement("CH-TIMEOUT-1")
def test_an_idle_connection_gets_timeout_then_fin_within_the_window(fresh_target: FreshTarget) -> None:
    with fresh_target(idle=IDLE_SECONDS, why="needs a short idle timeout") as t:
        idle = _idle_seconds(t)
        _run(
            t,
            [
                lambda: _connect_idle(t, "a connection that never sends anything"),
                lambda: _after_ping(t, "a connection idle after one reply"),
            ],
            lambda w: _expect_timeout_and_fin(w, idle),
            idle + WINDOW + 0.1,
        )


@requirement("CH-TIMEOUT-2")
def test_the_timeout_comes_within_250_ms_of_the_idle_timeout(fresh_target: FreshTarget, measure: Measure) -> None:
    with fresh_target(idle=IDLE_SECONDS, why="needs a short idle timeout") as t:
        idle = _idle_seconds(t)
        waiter = _after_ping(t, "a connection idle after one reply")
        _await_first_bytes([waiter], waiter.upper_ref + idle + WINDOW + 0.1)
        if waiter.arrival is None:
            raise waiter.probe.violation(
                "no -ERR TIMEOUT within idle_timeout_ms + 1000 ms", expected="-ERR TIMEOUT", actual="nothing"
            )
        delay = waiter.arrival - waiter.upper_ref - idle
        measure("TIMEOUT after idle_timeout_ms", round(delay * 1000, 1), "ms", "measured from the reply's arrival")
        # 250 ms is the server's bound; 100 ms more for scheduling on a loaded 2-core machine.
        if delay > TIMELY + TIMELY_MARGIN:
            raise waiter.probe.violation(
                f"the TIMEOUT came {delay * 1000:.0f} ms after idle_timeout_ms had elapsed "
                f"(allowed: 250 ms, plus {TIMELY_MARGIN * 1000:.0f} ms for scheduling)",
                expected=f"-ERR TIMEOUT within {idle + TIMELY:.3f} s of the reply",
                actual=f"after {waiter.arrival - waiter.upper_ref:.3f} s",
            )
        waiter.probe.expect_error("TIMEOUT", timeout=1.0)


@requirement("CH-TIMEOUT-3")
def test_a_reply_restarts_the_idle_timer(fresh_target: FreshTarget) -> None:
    with fresh_target(idle=IDLE_SECONDS, why="needs a short idle timeout") as t:
        idle = _idle_seconds(t)
        with t.connect() as c:
            c.ask(b"PING", b"+PONG", why="the first reply")
            silent_until(c, time.monotonic() + 0.6 * idle, why="60 % of the idle timeout")
            before = time.monotonic()
            c.ask(b"PING", b"+PONG", why="a request at 60 % of the idle timeout is answered")
            # The timer restarts at that reply, which the server sent after `before`.
            silent_until(
                c,
                before + idle - GRANULARITY,
                why=f"the reply restarted the timer: no TIMEOUT until idle_timeout_ms ({idle * 1000:.0f} ms) after it",
            )


# ---- CH-TIMEOUT-4, -5: bytes that are no request -------------------------------------------------


def _dripping(waiter: Waiter, data: bytes) -> Waiter:
    sent = iter(data)

    def drip() -> None:
        byte = next(sent, None)
        if byte is None:
            raise HarnessError("ran out of bytes to trickle")
        waiter.probe.send(bytes([byte]))

    waiter.drip = drip
    return waiter


def _expect_the_timer_expired(waiter: Waiter, idle: float) -> None:
    """The idle timer expired in CH-TIMEOUT-1's window: -ERR TIMEOUT (as a line or a
    frame) or the close. The message and its form are CH-TIMEOUT-1's and -7's business."""
    _in_window(waiter, idle, "-ERR TIMEOUT")
    probe = waiter.probe
    ending = probe.wire.wait_for_end(1.5)
    got = probe.wire.read_exactly(1 << 16, timeout=0)
    if got and not (got.startswith(b"-ERR TIMEOUT") or got[4:].startswith(b"-ERR TIMEOUT")):
        raise probe.violation(
            f"{waiter.what}: when the idle timer expired the server sent something else than -ERR TIMEOUT",
            expected=b"-ERR TIMEOUT",
            actual=got,
        )
    if ending not in (Ending.FIN, Ending.RST):
        raise probe.violation(
            f"{waiter.what}: the connection was not closed after the idle timeout",
            expected="the close",
            actual=ending.value,
        )


@requirement("CH-TIMEOUT-4")
def test_a_request_trickling_in_does_not_keep_the_connection_alive(fresh_target: FreshTarget) -> None:
    with fresh_target(idle=IDLE_SECONDS, why="needs a short idle timeout") as t:
        idle = _idle_seconds(t)
        # Enough bytes for idle + 1000 ms at one per 200 ms, never an LF.
        slow_line = b"ECHO slowloris " + b"x" * 64
        # A frame announcing 64 bytes, sent one byte at a time (header first), never complete.
        slow_frame = b"\x00\x00\x00\x40ECHO " + b"y" * 64
        starters = [lambda: _dripping(_after_ping(t, "line mode, one byte every 200 ms"), slow_line)]
        if t.declared.has("framed"):
            starters.append(
                lambda: _dripping(_after_ping(t, "framed mode, one byte every 200 ms", framed=True), slow_frame)
            )
        _run(t, starters, lambda w: _expect_the_timer_expired(w, idle), idle + WINDOW + 0.1)


@requirement("CH-TIMEOUT-5")
def test_empty_lines_do_not_keep_the_connection_alive(fresh_target: FreshTarget) -> None:
    with fresh_target(idle=IDLE_SECONDS, why="needs a short idle timeout") as t:
        idle = _idle_seconds(t)
        waiter = _after_ping(t, "an empty line every 200 ms")
        # One whole empty line per tick: "\r\n" and "\n" alternately.
        lines = iter([b"\r\n", b"\n"] * 20)
        waiter.drip = lambda: waiter.probe.send(next(lines))
        _await_first_bytes([waiter], waiter.upper_ref + idle + WINDOW + 0.1)
        _expect_the_timer_expired(waiter, idle)


# ---- CH-TIMEOUT-6, -7 ------------------------------------------------------------------------------


@requirement("CH-TIMEOUT-6")
def test_the_timer_is_paused_while_a_request_runs(fresh_target: FreshTarget) -> None:
    with fresh_target(idle=IDLE_SECONDS, why="needs a short idle timeout") as t:
        idle = _idle_seconds(t)
        sleep_ms = round(idle * 1250)  # clearly longer than the idle timeout
        with t.connect() as c:
            before = time.monotonic()
            # Sent together on purpose: the requirement covers a request waiting behind the SLEEP.
            c.send(b"SLEEP %d\r\nPING\r\n" % sleep_ms)
            c.expect_line(
                b"+OK\r\n", timeout=sleep_ms / 1000 + 3, why=f"a SLEEP {sleep_ms} longer than the idle timeout"
            )
            c.expect_line(b"+PONG\r\n", timeout=2, why="the request pipelined behind the SLEEP")
            received = time.monotonic()
            # The last reply left the server after the SLEEP had run (CH-CMD-10), and before it arrived here.
            restart = min(received, before + sleep_ms / 1000)
            silent_until(c, restart + idle - GRANULARITY, why="the timer starts again from the last reply")


@requirement("CH-TIMEOUT-7")
def test_in_framed_mode_the_timeout_is_a_frame(fresh_target: FreshTarget) -> None:
    with fresh_target(idle=IDLE_SECONDS, why="needs a short idle timeout") as t:
        idle = _idle_seconds(t)
        waiter = _after_ping(t, "framed mode, idle after one reply", framed=True)
        # Timing is CH-TIMEOUT-1's: wait generously, judge only the form.
        waiter.probe.expect_error("TIMEOUT", why="the idle timeout in framed mode is a frame", timeout=idle + 3)
        waiter.probe.expect_end(timeout=1.5, allow_reset=True, why="nothing follows the TIMEOUT frame")


# ---- CH-TIMEOUT-8, -9: TLS handshakes ----------------------------------------------------------------


@requirement("CH-TIMEOUT-8")
def test_an_unfinished_implicit_tls_handshake_is_closed_by_the_timer(fresh_target: FreshTarget) -> None:
    with fresh_target(idle=IDLE_SECONDS, why="needs a short idle timeout") as t:
        idle = _idle_seconds(t)
        hello = _client_hello(t)

        def silent() -> Waiter:
            before = time.monotonic()
            probe = t.connect_tls_port_plain("TLS port, no ClientHello")
            return Waiter(probe, "TLS port, no ClientHello", "accept", lower_ref=before, upper_ref=time.monotonic())

        def half() -> Waiter:
            before = time.monotonic()
            probe = t.connect_tls_port_plain("TLS port, half a ClientHello")
            after = time.monotonic()
            probe.send(hello[: len(hello) // 2])
            return Waiter(probe, "TLS port, half a ClientHello", "accept", lower_ref=before, upper_ref=after)

        _run(t, [silent, half], lambda w: _closed_without_message(w, idle), idle + WINDOW + 0.1)


@requirement("CH-TIMEOUT-9")
def test_an_unfinished_starttls_handshake_is_closed_by_the_timer(fresh_target: FreshTarget) -> None:
    with fresh_target(idle=IDLE_SECONDS, why="needs a short idle timeout") as t:
        idle = _idle_seconds(t)
        probe = t.connect("STARTTLS, then no handshake")
        before = time.monotonic()
        probe.ask(b"STARTTLS", b"+OK", why="STARTTLS on the plain port")
        waiter = Waiter(probe, "STARTTLS, then no handshake", "the +OK", lower_ref=before, upper_ref=time.monotonic())
        _await_first_bytes([waiter], waiter.upper_ref + idle + WINDOW + 0.1)
        _closed_without_message(waiter, idle)


# ---- CH-TIMEOUT-10 ---------------------------------------------------------------------------------


@requirement("CH-TIMEOUT-10")
def test_an_idle_timeout_of_0_disables_the_timer(fresh_target: FreshTarget) -> None:
    with fresh_target(idle=0, why="needs the idle timeout disabled") as t:
        declared = t.declared.pairs.get("idle_timeout_ms")
        if declared != "0":
            raise Violation(
                f"started with the idle timeout disabled ({{idle}}=0), the server declares idle_timeout_ms={declared}",
                expected="idle_timeout_ms=0 in INFO",
                actual=f"idle_timeout_ms={declared}",
            )
        probes = [t.connect("a connection that never sends anything")]
        if _side_by_side(t, 2):
            after_reply = t.connect("a connection idle after one reply")
            after_reply.ask(b"PING", b"+PONG", why="the reply before the idle wait")
            probes.append(after_reply)
        silent_until(
            probes,
            time.monotonic() + DISABLED_WATCH,
            why="with the timer disabled, an idle connection gets no TIMEOUT",
        )
        for probe in probes:
            probe.ask(b"PING", b"+PONG", why=f"still open after {DISABLED_WATCH:g} s idle")
