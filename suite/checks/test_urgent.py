"""CH-URGENT: TCP urgent data (PROTOCOL.md section 14).

The urgent byte is sent with MSG_OOB on the TCP socket (beneath TLS where
there is TLS). TCP keeps one urgent byte: a second one sent before the server
has read past the first mark can push the first into the normal stream. So a
check sends its next urgent byte only after a reply proves the server has read
past the previous one, and pauses ~20 ms around each urgent byte so that the
bytes before, the urgent byte and the bytes after leave as separate segments.
"""

from __future__ import annotations

import time

from suite.api import Measure, Unsupported, fresh_key, requirement
from suite.probe import Probe, silent_until
from suite.targets.base import Target
from suite.wire import frame

URGENT = b"X"
GAP = 0.02  # seconds on either side of the urgent byte
SETTLE = 0.1  # "a client that wants an abort waits at least 100 ms after sending the SLEEP"
ABORT_WITHIN = 0.200  # CH-URGENT-3
ABORT_MARGIN = 0.150  # scheduling on a loaded 2-core machine (other checks run in parallel), loopback delivery


def _send_around_urgent(c: Probe, before: bytes, after: bytes) -> None:
    c.send(before)
    c.quiet_for(GAP)
    c.send_urgent(URGENT)
    c.quiet_for(GAP)
    c.send(after)


def _to_framed(c: Probe) -> None:
    c.send(b"FRAMED\r\n")
    c.expect_line(b"+OK\r\n", why="FRAMED switches to framed mode")
    c.framed = True


def _abort_latency(c: Probe, request: bytes) -> float:
    """Send a long SLEEP, then the urgent byte; the seconds until -ERR ABORTED."""
    c.send(request)
    silent_until(c, time.monotonic() + SETTLE, why="the SLEEP 5000 is running")
    sent = time.monotonic()
    c.send_urgent(URGENT)
    c.expect_error("ABORTED", why="an urgent byte arrived during the SLEEP", timeout=1.5)
    return time.monotonic() - sent


def _judge_latency(c: Probe, latency: float, measure: Measure, what: str) -> None:
    measure(f"abort latency ({what})", round(latency * 1000, 1), "ms", "urgent byte sent to -ERR ABORTED received")
    # 200 ms is the server's bound; 150 ms more for scheduling and delivery on a loaded machine.
    if latency > ABORT_WITHIN + ABORT_MARGIN:
        raise c.violation(
            f"{what}: -ERR ABORTED came {latency * 1000:.0f} ms after the urgent byte "
            f"(allowed: 200 ms, plus {ABORT_MARGIN * 1000:.0f} ms for scheduling)",
            expected="-ERR ABORTED within 200 ms",
            actual=f"after {latency * 1000:.0f} ms",
        )


@requirement("CH-URGENT-1")
def test_the_urgent_byte_never_becomes_request_data(target: Target) -> None:
    key = fresh_key()
    with target.connect("line mode") as c:
        _send_around_urgent(c, b"EC", b"HO hi\r\n")
        c.expect_line(b"$hi\r\n", why='"EC", urgent X, "HO hi": the urgent byte is not part of the request')
        _send_around_urgent(c, b"SET " + key + b" a", b"b\r\n")
        c.send(b"GET " + key + b"\r\n")
        c.expect_line(b"+OK\r\n", why="SET with an urgent byte inside its value")
        c.expect_line(b"$ab\r\n", why="the urgent byte is not part of the stored value")
    if target.declared.has("framed"):
        framed_key = fresh_key()
        with target.connect("framed mode") as c:
            _to_framed(c)
            _send_around_urgent(c, frame(b"ECHO hi")[:6], b"HO hi")
            c.expect_frame(b"$hi", why="the urgent byte inside a frame is not part of it")
            _send_around_urgent(c, frame(b"SET " + framed_key + b" ab")[:-1], b"b")
            c.expect_frame(b"+OK", why="SET with an urgent byte inside its value")
            c.send_frame(b"GET " + framed_key)
            c.expect_frame(b"$ab", why="the urgent byte is not part of the stored value")
    if target.declared.has("tls"):
        with target.connect_tls("implicit TLS") as c:
            c.send(b"PING\r\n")
            c.expect_line(b"+PONG\r\n", why="a round trip first, so that session tickets are out of the way")
            _send_around_urgent(c, b"EC", b"HO hi\r\n")
            c.expect_line(b"$hi\r\n", why="on a TLS connection the urgent byte is not part of the request either")


@requirement("CH-URGENT-2")
def test_the_bytes_around_an_urgent_byte_stay_intact(target: Target) -> None:
    # Whether the urgent byte itself shows up inline is CH-URGENT-1's business: a reply
    # carrying it is accepted here, since the normal bytes around it are what is judged.
    inline = False
    with target.connect("line mode") as c:
        # (before the urgent byte, after it, the replies, the replies if the byte went inline)
        cases = [
            (b"PING\r\nECHO ab", b"cd\r\nPING\r\n", [b"+PONG\r\n", b"$abcd\r\n", b"+PONG\r\n"], b"$abXcd\r\n"),
            (b"ECHO ", b"x y\r\nPING\r\n", [b"$x y\r\n", b"+PONG\r\n"], b"$Xx y\r\n"),
            (b"ECHO z", b"\r\nPING\r\n", [b"$z\r\n", b"+PONG\r\n"], b"$zX\r\n"),
        ]
        for before, after, replies, with_urgent in cases:
            _send_around_urgent(c, before, after)
            for index, want in enumerate(replies):
                got = c.line(f"reply {index + 1} of {len(replies)}")
                if got == with_urgent:
                    inline = True
                elif got != want:
                    raise c.violation(
                        "the requests around an urgent byte were not answered as sent without it "
                        f"(reply {index + 1} of {len(replies)})",
                        expected=want,
                        actual=got,
                    )
    if target.declared.has("framed") and not inline:
        with target.connect("framed mode") as c:
            _to_framed(c)
            # Urgent byte inside a frame header, then inside a payload, then between frames.
            _send_around_urgent(c, b"\x00\x00", b"\x00\x07ECHO hi" + frame(b"PING"))
            c.expect_frame(b"$hi", why="an urgent byte inside the frame header")
            c.expect_frame(b"+PONG", why="the frame after it")
            _send_around_urgent(c, frame(b"ECHO a\r\nb")[:8], frame(b"ECHO a\r\nb")[8:])
            c.expect_frame(b"$a\r\nb", why="an urgent byte inside the payload")
            _send_around_urgent(c, frame(b"PING"), frame(b"ECHO c"))
            c.expect_frame(b"+PONG", why="the frame before an urgent byte between frames")
            c.expect_frame(b"$c", why="the frame after it")


@requirement("CH-URGENT-3")
def test_an_urgent_byte_aborts_a_sleep_within_200_ms(target: Target, measure: Measure) -> None:
    with target.connect("line mode") as c:
        _judge_latency(c, _abort_latency(c, b"SLEEP 5000\r\n"), measure, "line mode")
    if target.declared.has("framed"):
        with target.connect("framed mode") as c:
            _to_framed(c)
            _judge_latency(c, _abort_latency(c, frame(b"SLEEP 5000")), measure, "framed mode, a frame")


@requirement("CH-URGENT-4")
def test_after_an_abort_the_connection_works_normally(target: Target) -> None:
    with target.connect() as c:
        c.send(b"SLEEP 5000\r\nPING\r\nSLEEP 300\r\n")
        silent_until(c, time.monotonic() + SETTLE, why="the SLEEP 5000 is running")
        urgent_sent = time.monotonic()
        c.send_urgent(URGENT)
        first = c.wire.read_line(1.5)
        if first is None or not first.startswith(b"-ERR ABORTED"):
            raise Unsupported(
                f"the SLEEP was not aborted (got {first!r} within 1.5 s; see CH-URGENT-3), "
                "so what follows an abort cannot be judged"
            )
        c.expect_line(b"+PONG\r\n", timeout=1, why="the request pipelined behind the aborted SLEEP")
        # That SLEEP 300 started after the abort, which came after the urgent byte was sent.
        silent_until(
            c, urgent_sent + 0.29, why="the pipelined SLEEP 300 was waiting, not running: it runs to completion"
        )
        c.expect_line(b"+OK\r\n", timeout=2, why="the pipelined SLEEP 300 completes")
        sent = time.monotonic()
        c.send(b"SLEEP 300\r\n")
        silent_until(c, sent + 0.29, why="a later SLEEP 300 runs to completion")
        c.expect_line(b"+OK\r\n", timeout=2, why="a later SLEEP 300 completes")
        c.send(b"ECHO still here\r\n")
        c.expect_line(b"$still here\r\n")


@requirement("CH-URGENT-5")
def test_an_urgent_byte_with_no_sleep_running_is_ignored(target: Target) -> None:
    with target.connect() as c:
        c.send(b"PING\r\n")
        c.expect_line(b"+PONG\r\n")
        c.send_urgent(URGENT)
        silent_until(c, time.monotonic() + 0.2, why="an urgent byte with no SLEEP running gets no reply and no close")
        sent = time.monotonic()
        c.send(b"SLEEP 300\r\n")
        silent_until(c, sent + 0.29, why="the earlier urgent byte must not abort a later SLEEP")
        c.expect_line(b"+OK\r\n", timeout=2, why="the later SLEEP completes (not ABORTED)")
        c.send(b"PING\r\n")
        c.expect_line(b"+PONG\r\n")


@requirement("CH-URGENT-6")
def test_an_urgent_byte_aborts_a_sleep_on_the_tls_port(target: Target, measure: Measure) -> None:
    with target.connect_tls() as c:
        # A round trip first: TLS 1.3 session tickets arriving after the handshake carry no
        # application data, but would look like an early reply to the silence below.
        c.send(b"PING\r\n")
        c.expect_line(b"+PONG\r\n")
        _judge_latency(c, _abort_latency(c, b"SLEEP 5000\r\n"), measure, "implicit TLS")
        c.send(b"PING\r\n")
        c.expect_line(b"+PONG\r\n", why="the TLS connection stays usable")
