"""CH-LIFE: the READY line and graceful shutdown (PROTOCOL.md section 16).

These checks need the server process: they start their own instance and send
it the shutdown signal. A target the suite did not start (--address) cannot be
judged (UNSUPPORTED). Where a check watches several connections through one
shutdown, they share one instance when it serves that many at once
(max_connections); otherwise each gets an instance of its own, since a
connection still in the listen backlog is never served.

Timing references: a lower bound (the 4 s deadline, "not before") is measured
from just before the signal is sent, an upper bound from just after, so that
scheduling on a loaded machine can never fail a conforming server.

Each request's reply is read before the next request is sent, so that a
server which cannot pipeline fails CH-FRAME-17/18 and not these; CH-LIFE-7
and CH-LIFE-8 pipeline behind a SLEEP because several requests received and
unanswered at the signal are what they judge.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from suite.api import FreshTarget, Measure, Violation, fresh_key, not_applicable, requirement, waits
from suite.checks import protocol
from suite.checks.connections import what_is_left, why_the_signal_may_be_lost
from suite.probe import Probe, silent_until
from suite.targets.base import Target
from suite.targets.factory import TargetPool
from suite.targets.process import Endpoint, ServerHandle, TargetNotReady
from suite.wire import Ending, Wire, frame

# Each check waits out a timer on an instance of its own: a worker runs it beside its next checks.
pytestmark = waits

# ready-line = %s"READY" SP %s"cloudhash/1" SP host SP port [ SP %s"tls=" port ] LF
READY_LINE = re.compile(rb"\AREADY cloudhash/1 ([^ \r\n]+) ([0-9]{1,5})(?: tls=([0-9]{1,5}))?\n\Z")
READY_WITHIN = 10.0  # seconds from exec to READY before the suite gives up
SERVED_WITHIN = 1.0  # the first request after READY must be answered promptly (loopback, loaded machine)
SETTLE = 0.1  # pause after sending requests so that they have arrived before the signal
GRACE = 4.0  # the deadline after the signal
EXIT_WITHIN = 5.0  # CH-LIFE-9
EXIT_MARGIN = 0.5  # scheduling and process teardown on a loaded machine
REFUSED_AFTER = 0.5  # CH-LIFE-4
AT_ONCE = 0.5  # CH-LIFE-6
AT_ONCE_MARGIN = 0.15  # scheduling on a loaded 2-core machine
GRANULARITY = 0.02  # clock granularity allowed on lower bounds
# Section 9: the close comes within CLOSE_WITHIN (600 ms) of the final message; the margin is
# for scheduling on a loaded machine.
CLOSE_WITHIN = protocol.CLOSE_WITHIN + protocol.LOADED_MACHINE_MARGIN
TLS_ALERT = 0x15  # a TLS alert record may precede the close of a handshake; any other byte would be a message


def _process(t: Target) -> ServerHandle:
    if t.process is None:
        not_applicable("the suite did not start this target (--address), so it cannot watch or signal its process")
    assert t.process is not None
    return t.process


def _signal(t: Target, signum: int = signal.SIGTERM) -> tuple[float, float]:
    """Send the shutdown signal to the process the suite started; (just before, just after)."""
    process = _process(t)
    before = time.monotonic()
    process.send_signal(signum)
    return before, time.monotonic()


def _wait_exit(t: Target, timeout: float) -> int | None:
    """The exit status, or None if the process is still running after ``timeout``."""
    return _process(t).wait(timeout)


def _all_stdout(process: ServerHandle) -> bytes:
    """Everything the process printed: READY (however the suite picked it up) and the rest."""
    return (process.ready_line or b"") + process.collect_stdout()


def _ping(c: Probe) -> None:
    c.ask(b"PING", b"+PONG", why="the connection is served")


def _framed_ping(c: Probe) -> None:
    c.switch_to_framed()
    _ping(c)


@dataclass
class Scenario:
    """One connection through a shutdown: how it is set up before the signal,
    and what it must see after (given the moments just before/after the signal)."""

    what: str
    prepare: Callable[[Probe], None]
    judge: Callable[[Probe, float, float], None]
    needs: str | None = None  # a feature the scenario needs
    tls_port: bool = False  # connect to the implicit-TLS port (in plaintext) instead of the plain port


@dataclass
class Run:
    scenarios: list[Scenario] = field(default_factory=list)

    def through_shutdown(self, fresh_target: FreshTarget, why: str) -> None:
        """All scenarios on one instance when it serves them all at once, else one instance each."""
        with fresh_target(why=why) as t:
            scenarios = [s for s in self.scenarios if s.needs is None or t.declared.has(s.needs)]
            if t.declared.number("max_connections") >= len(scenarios):
                self._once(t, scenarios)
                return
            self._once(t, scenarios[:1])
        for scenario in scenarios[1:]:
            with fresh_target(why=why) as t:
                self._once(t, [scenario])

    @staticmethod
    def _once(t: Target, scenarios: list[Scenario]) -> None:
        probes = []
        for scenario in scenarios:
            probe = t.connect_tls_port_plain(scenario.what) if scenario.tls_port else t.connect(scenario.what)
            scenario.prepare(probe)
            probes.append(probe)
        probes[0].quiet_for(SETTLE)  # let every request arrive before the signal
        before, after = _signal(t)
        for scenario, probe in zip(scenarios, probes, strict=True):
            scenario.judge(probe, before, after)


# ---- CH-LIFE-1, -2, -3: the READY line and stdout ----------------------------------------------------


@contextlib.contextmanager
def _own_start(pool: TargetPool, name: str) -> Iterator[tuple[Any, Endpoint]]:
    """Start the target as the suite does, but hand it over the moment its READY line is read
    (the suite's own start connects for INFO first, and cannot tell a late listener from a
    harness problem)."""
    if not pool.specs[name].controllable:
        not_applicable("the suite did not start this target (--address), so it cannot read its standard output")
    try:
        with pool.launched(name) as (process, endpoint):
            yield process, endpoint
    except TargetNotReady as error:
        raise Violation(
            "the server printed no READY line",
            expected="READY cloudhash/1 <host> <port>[ tls=<port>] and LF on standard output",
            actual=str(error),
        ) from None


@requirement("CH-LIFE-1")
def test_the_ready_line_names_a_port_that_is_served_at_once(sockspec_pool: TargetPool, target_name: str) -> None:
    with _own_start(sockspec_pool, target_name) as (process, endpoint):
        line = process.ready_line or b""
        match = READY_LINE.match(line)
        if match is None:
            raise Violation(
                "the READY line does not match the ready-line grammar (section 16)",
                expected="READY cloudhash/1 <host> <port>[ tls=<port>] followed by LF alone",
                actual=line,
            )
        # The port must be served from the moment the line is printed: connect at once.
        # A wildcard address (0.0.0.0, ::) is reached through any address of the host.
        host, port = match.group(1).decode(), int(match.group(2))
        if host in ("0.0.0.0", "::"):
            host = endpoint.host
        try:
            wire = Wire.connect(host, port, timeout=SERVED_WITHIN)
        except OSError as error:
            raise Violation(
                f"the READY line names {host} {port}, but connecting there right after it failed: {error}",
                expected="a listening port, served from the moment READY is printed",
                actual=line,
            ) from None
        with Probe(wire, label="right after READY", timeout=SERVED_WITHIN) as c:
            c.ask(b"PING", b"+PONG", why="a request sent right after READY is served at once")
            c.request(b"INFO")
            info = c.expect_prefix(b"$", why="INFO")
        problems = []
        try:
            ipaddress.ip_address(host)
        except ValueError:
            problems.append(f"host {host!r} is not a numeric address")
        for group in (2, 3):
            if match.group(group) is not None and not 0 < int(match.group(group)) < 65536:
                problems.append(f"port {match.group(group).decode()} is out of range")
        pairs = dict(pair.partition("=")[::2] for pair in info[1:-2].decode("ascii", "replace").split(" "))
        if match.group(3) is not None and "tls" not in pairs.get("features", "").split(","):
            problems.append("it has a tls= part, but the server declares no implicit-TLS port (feature tls)")
        more = process.collect_stdout()
        if b"READY" in more:
            problems.append(f"a second READY line followed: {more!r}")
        if problems:
            raise Violation(
                "the READY line is not right: " + "; ".join(problems), expected="one valid READY line", actual=line
            )


@requirement("CH-LIFE-2")
def test_the_ready_line_names_the_tls_port(target: Target) -> None:
    process = _process(target)
    line = _all_stdout(process).partition(b"\n")[0] + b"\n"
    # The exact form of the line is CH-LIFE-1's business; here only its tls= part is judged.
    match = re.match(rb"READY cloudhash/1 (\S+) ([0-9]+)(?: tls=([0-9]+))?\s*\Z", line)
    if match is None or match.group(3) is None:
        raise Violation(
            "with an implicit-TLS port configured, the READY line must end with tls=<port>",
            expected="READY cloudhash/1 <host> <port> tls=<port>",
            actual=line,
        )
    host, tls_port = match.group(1).decode(), int(match.group(3))
    if host in ("0.0.0.0", "::"):  # a wildcard address is reached through any address of the host
        host = target.endpoint.host
    try:
        wire = Wire.connect_tls(host, tls_port, target.trust.context(), server_hostname=target.trust.hostname)
    except OSError as error:  # ssl.SSLError is an OSError
        raise Violation(
            f"the READY line names tls={tls_port}, but a TLS handshake there failed: {error}",
            expected="a TLS handshake on the port after tls=",
            actual=line,
        ) from None
    with Probe(wire, label=f"TLS to tls={tls_port}") as c:
        _ping(c)


@requirement("CH-LIFE-3")
def test_standard_output_carries_only_the_ready_line(fresh_target: FreshTarget) -> None:
    with fresh_target(why="shuts the server down") as t:
        process = _process(t)
        key = fresh_key()
        with t.connect("traffic") as c:
            c.ask(b"PING", b"+PONG")
            c.ask(b"SET " + key + b" v", b"+OK")
            c.ask(b"GET " + key, b"$v")
            c.request(b"INFO")
            c.expect_prefix(b"$", why="INFO")
            c.ask_error(b"BOGUS", "UNKNOWN")
            c.ask_error(b"SLEEP abc", "SYNTAX")
            c.ask(b"QUIT", b"+BYE")
        if t.declared.has("tls"):
            with t.connect_tls() as c:
                _ping(c)
        idle = t.connect("idle at the shutdown")
        _ping(idle)
        status = process.terminate(EXIT_WITHIN + EXIT_MARGIN)
        idle.wire.wait_for_end(1.0)
        out = _all_stdout(process)
        first, _, rest = out.partition(b"\n")
        if not first.startswith(b"READY ") or rest:
            raise Violation(
                "standard output carried more than the READY line"
                + ("" if status is not None else " (the server had not exited yet)"),
                expected="the READY line and nothing else",
                actual=out,
            )


# ---- CH-LIFE-4: the listeners ----------------------------------------------------------------------------


def _refused(host: str, port: int) -> str | None:
    """None if a connection attempt is refused; else what happened instead."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return "the connection was accepted (the port is still listening)"
    except ConnectionRefusedError:
        return None
    except OSError as error:
        return f"the attempt failed without a refusal: {error}"


@requirement("CH-LIFE-4")
def test_the_listeners_close_at_once_on_the_signal(fresh_target: FreshTarget) -> None:
    with fresh_target(why="shuts the server down") as t, t.connect("holds a SLEEP through the signal") as c:
        c.request(b"SLEEP 1500")
        c.quiet_for(SETTLE)
        _, after = _signal(t)
        # Keep the server busy (and alive) for the 500 ms the listeners are given, and the
        # margin a loaded machine needs to run the server's handler at all.
        attempt_at = after + REFUSED_AFTER + protocol.LOADED_MACHINE_MARGIN
        c.quiet_for(attempt_at - time.monotonic())
        if (left := attempt_at - time.monotonic()) > 0:
            _wait_exit(t, left)  # something arrived early: wait the rest on the process
        ports = [("plain", t.endpoint.port)]
        if t.endpoint.tls_port is not None:
            ports.append(("TLS", t.endpoint.tls_port))
        for kind, port in ports:
            tried_after = time.monotonic() - after  # when the attempt began, not when it gave up
            problem = _refused(t.endpoint.host, port)
            if problem is not None:
                raise Violation(
                    f"a connection to the {kind} port {tried_after * 1000:.0f} ms after SIGTERM was not refused: "
                    f"{problem}",
                    expected="connection refused",
                    actual=problem,
                    transcripts=[c.wire.transcript],
                )


# ---- CH-LIFE-5, -6, -7: idle and busy connections ----------------------------------------------------------


def _idle_line(c: Probe) -> None:
    _ping(c)


def _sleep_500(c: Probe) -> None:
    c.request(b"SLEEP 500")


def _starttls_then_nothing(c: Probe) -> None:
    c.ask(b"STARTTLS", b"+OK", why="STARTTLS on the plain port")


def _no_handshake(c: Probe) -> None:
    """A connection to the implicit-TLS port that never starts its handshake."""


def _shutdown_when_idle(c: Probe, before: float, after: float) -> None:
    c.expect_error("SHUTDOWN", why="an idle connection at the signal", timeout=after + GRACE + 0.5 - time.monotonic())
    c.expect_end(timeout=CLOSE_WITHIN, why="exactly one SHUTDOWN, then the close of section 9")


def _shutdown_after_reply(c: Probe, before: float, after: float) -> None:
    # The SLEEP's own reply is CH-LIFE-7's business: +OK is expected, SHUTDOWN in its place is tolerated here.
    first = c.line("the reply to the SLEEP 500", timeout=after + GRACE + 0.5 - time.monotonic())
    if first.startswith(b"-ERR SHUTDOWN"):
        c.expect_end(timeout=CLOSE_WITHIN, why="after SHUTDOWN, nothing but the close")
        return
    if first != b"+OK\r\n":
        raise c.violation("expected the reply to the SLEEP 500", expected=b"+OK\r\n", actual=first)
    c.expect_error(
        "SHUTDOWN", why="the connection became idle before the deadline", timeout=after + GRACE + 0.5 - time.monotonic()
    )
    c.expect_end(timeout=CLOSE_WITHIN, why="exactly one SHUTDOWN, then the close of section 9")


def _closed_without_a_message(c: Probe, before: float, after: float) -> None:
    """A TLS handshake not completed at the signal cannot carry -ERR SHUTDOWN: only the close
    (a TLS alert record may precede it), no later than the deadline."""
    ending = c.wire.wait_for_end(after + GRACE + 0.5 - time.monotonic())
    got = c.wire.pending()
    if got and got[0] != TLS_ALERT:
        raise c.violation(
            "a connection whose TLS handshake had not completed got bytes that are not a TLS alert at the "
            "shutdown; it cannot carry a message and must be closed without one",
            expected="no bytes (or a TLS alert record), then the close",
            actual=got,
        )
    if ending not in (Ending.FIN, Ending.RST):
        raise c.violation(
            "a connection whose TLS handshake had not completed was not closed by the deadline (4 s after the signal)",
            expected="FIN or RST",
            actual=ending.value,
        )


@requirement("CH-LIFE-5")
def test_idle_connections_get_one_shutdown_then_fin(fresh_target: FreshTarget) -> None:
    Run(
        [
            Scenario("idle in line mode", _idle_line, _shutdown_when_idle),
            Scenario("idle in framed mode", _framed_ping, _shutdown_when_idle, needs="framed"),
            Scenario("busy with SLEEP 500 at the signal", _sleep_500, _shutdown_after_reply),
            Scenario(
                "TLS port, handshake not begun", _no_handshake, _closed_without_a_message, needs="tls", tls_port=True
            ),
            Scenario(
                "STARTTLS +OK, handshake not begun", _starttls_then_nothing, _closed_without_a_message, needs="starttls"
            ),
        ]
    ).through_shutdown(fresh_target, "shuts the server down")


@requirement("CH-LIFE-6")
def test_idle_connections_get_their_shutdown_within_500_ms(fresh_target: FreshTarget, measure: Measure) -> None:
    def at_signal(c: Probe, before: float, after: float) -> None:
        c.expect_error("SHUTDOWN", timeout=after + GRACE + 0.5 - time.monotonic())
        delay = time.monotonic() - before
        measure("SHUTDOWN after the signal (idle connection)", round(delay * 1000, 1), "ms")
        # 500 ms is the server's bound; 150 ms more for scheduling on a loaded machine.
        if delay > AT_ONCE + AT_ONCE_MARGIN:
            raise c.violation(
                f"an idle connection got SHUTDOWN {delay * 1000:.0f} ms after the signal",
                expected="-ERR SHUTDOWN within 500 ms of the signal",
                actual=f"after {delay * 1000:.0f} ms",
            )

    def after_reply(c: Probe, before: float, after: float) -> None:
        first = c.line("the reply to the SLEEP 500", timeout=after + GRACE - time.monotonic())
        if first.startswith(b"-ERR SHUTDOWN"):
            return  # the SLEEP got SHUTDOWN instead of +OK: CH-LIFE-7's business; nothing became idle
        if first != b"+OK\r\n":
            raise c.violation("expected the reply to the SLEEP 500", expected=b"+OK\r\n", actual=first)
        replied = time.monotonic()
        c.expect_error("SHUTDOWN", timeout=after + GRACE + 0.5 - time.monotonic())
        delay = time.monotonic() - replied
        measure("SHUTDOWN after the last reply (connection that became idle)", round(delay * 1000, 1), "ms")
        if delay > AT_ONCE + AT_ONCE_MARGIN:
            raise c.violation(
                f"a connection that became idle got SHUTDOWN {delay * 1000:.0f} ms after its last reply",
                expected="-ERR SHUTDOWN within 500 ms of the last reply",
                actual=f"after {delay * 1000:.0f} ms",
            )

    Run(
        [
            Scenario("idle at the signal", _idle_line, at_signal),
            Scenario("busy with SLEEP 500 at the signal", _sleep_500, after_reply),
        ]
    ).through_shutdown(fresh_target, "shuts the server down")


@requirement("CH-LIFE-7")
def test_requests_received_before_the_signal_are_completed(fresh_target: FreshTarget) -> None:
    def prepare(c: Probe) -> None:
        # Sent together on purpose: a request pipelined behind the SLEEP has been received before the signal too.
        c.send(b"SLEEP 1000\r\nECHO done\r\n")

    def judge(c: Probe, before: float, after: float) -> None:
        c.expect_line(b"+OK\r\n", timeout=GRACE, why="a SLEEP 1000 received before the signal completes")
        c.expect_line(b"$done\r\n", timeout=1.0, why="a request pipelined behind it is executed too")

    Run([Scenario("SLEEP 1000 in flight at the signal", prepare, judge)]).through_shutdown(
        fresh_target, "shuts the server down"
    )


# ---- CH-LIFE-8, -9: the deadline and the exit ------------------------------------------------------------------


@requirement("CH-LIFE-8")
def test_at_the_deadline_each_unanswered_request_gets_shutdown(fresh_target: FreshTarget) -> None:
    with fresh_target(why="shuts the server down") as t:
        # Each connection sends its two requests together on purpose: one SHUTDOWN per unanswered
        # request, in order, is what is judged.
        line = t.connect("line mode: SLEEP 10000 and PING")
        line.send(b"SLEEP 10000\r\nPING\r\n")
        probes = [line]
        if t.declared.has("framed") and t.declared.number("max_connections") >= 2:
            framed = t.connect("framed mode: SLEEP 10000 and PING")
            framed.switch_to_framed()
            framed.send(frame(b"SLEEP 10000") + frame(b"PING"))
            probes.append(framed)
        line.quiet_for(SETTLE)
        before, after = _signal(t)
        silent_until(
            probes,
            before + GRACE - GRANULARITY,
            why="unanswered requests get SHUTDOWN at the deadline, 4 s after the signal, and not before",
        )
        for c in probes:
            c.expect_error(
                "SHUTDOWN", why="the SLEEP 10000, at the deadline", timeout=after + GRACE + 0.5 - time.monotonic()
            )
            c.expect_error("SHUTDOWN", why="the pipelined PING, its own SHUTDOWN", timeout=1.0)
            c.expect_end(timeout=CLOSE_WITHIN, why="one SHUTDOWN per request and no more, then the close")


@requirement("CH-LIFE-9")
def test_the_server_exits_0_within_5_s_whatever_its_connections_do(fresh_target: FreshTarget, measure: Measure) -> None:
    # The deadline path (requests still running at 4 s) takes 4 s to watch; CH-LIFE-8's check
    # watches it. Here: a request in flight, an idle connection, a partial request, a TLS
    # handshake never begun, and framed mode, all at once. (A serial server serves the first;
    # the others wait in its backlog, which the shutdown refuses.)
    with fresh_target(why="shuts the server down") as t:
        busy = t.connect("SLEEP 1000 in flight")
        busy.request(b"SLEEP 1000")
        if t.declared.number("max_connections") >= 4:
            _ping(t.connect("idle"))
            t.connect("half a request").send(b"PIN")
            if t.endpoint.tls_port is not None:
                t.connect_tls_port_plain("TLS port, no handshake")
            if t.declared.has("framed") and t.declared.number("max_connections") >= 5:
                _framed_ping(t.connect("idle in framed mode"))
        busy.quiet_for(SETTLE)
        _judge_exit(t, signal.SIGTERM, measure)


@requirement("CH-LIFE-9")
def test_sigint_also_exits_0_within_5_s(fresh_target: FreshTarget, measure: Measure) -> None:
    with fresh_target(why="shuts the server down") as t, t.connect("idle") as c:
        _ping(c)
        _judge_exit(t, signal.SIGINT, measure)


def _judge_exit(t: Target, signum: int, measure: Measure) -> None:
    name = signal.Signals(signum).name
    before, _ = _signal(t, signum)
    status = _wait_exit(t, before + EXIT_WITHIN + EXIT_MARGIN - time.monotonic())
    took = time.monotonic() - before
    if status is None:
        pid = _process(t).pid
        raise Violation(
            f"the server was still running {took:.2f} s after {name}",
            expected=f"exit status 0 within {EXIT_WITHIN:g} s",
            actual=f"still running: {what_is_left(pid)}",
            context=why_the_signal_may_be_lost(pid, signum),
        )
    measure(f"exit after {name}", round(took * 1000), "ms")
    if status != 0:
        raise Violation(
            f"the server exited with status {status} after {name}", expected="exit status 0", actual=str(status)
        )
