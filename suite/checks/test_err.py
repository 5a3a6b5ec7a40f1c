"""CH-ERR: error replies, their codes and check order, and how a connection
ends after a final message (PROTOCOL.md sections 5, 7 and 9).

Requests are asked one at a time; only CH-ERR-8 sends more behind a final
message, because what happens to that unread input is its subject."""

from __future__ import annotations

import errno
import select
import socket
import ssl
import time
from collections.abc import Callable

from suite.api import Measure, Probe, Violation, fresh_key, requirement
from suite.checks.protocol import (
    BODY_CAP,
    CLOSE_WITHIN,
    CODES,
    DRAIN_PERIOD,
    INT64_MAX,
    LOADED_MACHINE_MARGIN,
    REPLY_TIMEOUT,
    TOOLONG_WITHIN,
    frame,
    frame_header,
    parse_response,
)
from suite.escape import escape
from suite.targets.base import Target
from suite.wire import Ending, Transcript, WireTimeout

# CH-ERR-9: the server closes at most CLOSE_WITHIN after its shutdown (section 9).
# The client sees the final message a little before that shutdown and the close a
# little after it (the next chunk it sends is answered with RST), so the check
# allows CLOSE_WITHIN plus the suite's margin for a loaded machine.
CHUNK_EVERY = 0.01
# Input behind a final message: far more than one read of a server takes, so
# that most of it is still unread when the server answers.
UNREAD = 512 * 1024
TOP = b"%d" % INT64_MAX


def tls_probe(target: Target) -> Probe | None:
    """A connection on the implicit-TLS port, when there is one and it works;
    the TLS checks judge the handshake itself."""
    if not target.declared.has("tls") or target.endpoint.tls_port is None:
        return None
    try:
        return target.connect_tls()
    except (OSError, ssl.SSLError):
        return None


def key_of(length: int, byte: bytes = b"z") -> bytes:
    key = fresh_key("len")
    return (key + byte * length)[:length] if length >= len(key) else key[-length:]


def expect_errors(c: Probe, cases: list[tuple[bytes, str]], end: bytes = b"\r\n") -> None:
    """Send each request on its own (line mode: payload + ``end``; framed: one
    frame) and expect its code; then a PING must get +PONG. One request at a
    time, so that a server that mishandles pipelining fails CH-FRAME-17, not these."""
    for payload, code in cases:
        if c.framed or end == b"\r\n":
            c.request(payload)
        else:
            c.send(payload + end)
        c.expect_error(code, why=f"the request {escape(payload)!r}", timeout=REPLY_TIMEOUT)
    c.ask(b"PING", b"+PONG", why="the request after them all", timeout=REPLY_TIMEOUT)


# ---- CH-ERR-1 -----------------------------------------------------------------------


def collect_replies(c: Probe, requests: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Send the requests one at a time and return (request, reply) pairs; then
    an ECHO sentinel, so that any extra reply (say, a second line because an
    error text held an LF) is collected too. A missing reply is not judged here."""
    pairs: list[tuple[bytes, bytes]] = []
    for request in requests:
        c.request(request)
        reply = c.next_reply(REPLY_TIMEOUT)
        if reply is None:
            return pairs
        pairs.append((request, reply))
    sentinel = fresh_key("sentinel")
    c.request(b"ECHO " + sentinel)
    expected = b"$" + sentinel + (b"" if c.framed else b"\r\n")
    while (reply := c.next_reply(REPLY_TIMEOUT)) is not None and reply != expected:
        pairs.append((b"(none: an extra reply)", reply))
    return pairs


@requirement("CH-ERR-1")
def test_every_error_reply_has_the_fixed_form(target: Target) -> None:
    max_line = target.declared.number("max_line")
    text, top, lf = fresh_key("text"), fresh_key("max"), fresh_key("lf")
    problems: list[tuple[str, bytes, bytes]] = []  # (mode, request, reply)
    transcripts: list[Transcript] = []

    def judge_line(request: bytes, reply: bytes) -> None:
        if parse_response(reply, framed=False) is None:
            problems.append(("line", request, reply))

    def judge_frame(request: bytes, reply: bytes) -> None:
        if parse_response(reply, framed=True) is None:
            problems.append(("framed", request, reply))

    bad = [
        b"BOGUS x",
        b" PING",
        b"\xff",
        b"PING\r",
        b"PING extra",
        b"PING ",
        b"GET",
        b"GET a b",
        b"GET  a",
        b"GET " + key_of(251),
        b"GET a\x00b",
        b"GET a\rb",
        b"SET",
        b"SET  v",
        b"ECHO",
        b"SLEEP abc",
        b"SLEEP -1",
        b"SLEEP 99999",
        b"SLEEP 1 2",
        b"INCR " + text,
        b"INCR " + top,
    ]
    if target.declared.has("framed"):
        bad.append(b"GET " + lf)  # STATE
    if not target.declared.has("starttls"):
        bad.append(b"STARTTLS")  # STATE
    with target.connect("line mode") as c:
        transcripts.append(c.wire.transcript)
        for setup in (b"SET " + text + b" abc", b"SET " + top + b" " + TOP):
            c.ask(setup, b"+OK")
        # Requests that a broken server might take as a mode change or a close come last.
        for request, reply in collect_replies(c, [*bad, b"FRAMED x", b"STARTTLS now", b"QUIT now"]):
            judge_line(request, reply)
    with target.connect("an oversized line") as c:
        transcripts.append(c.wire.transcript)
        c.send(b"ECHO " + b"x" * max_line + b"\r\n")
        toolong = c.wire.read_line(TOOLONG_WITHIN)
        if toolong is not None:
            judge_line(b"ECHO " + b"x" * max_line, toolong)
    if target.declared.has("framed"):
        with target.connect("framed mode") as c:
            transcripts.append(c.wire.transcript)
            c.switch_to_framed()
            c.ask(b"SET " + lf + b" a\nb", b"+OK", timeout=REPLY_TIMEOUT)
            framed_bad = [
                b"BOGUS x",
                b"",
                b"FRAMED",
                b"FRAMED x",
                b"PING\r\n",
                b"GET a\nb",
                b"GET a b",
                b"INCR " + text,
                b"SLEEP 99999",
            ]
            for request, reply in collect_replies(c, framed_bad):
                judge_frame(request, reply)
            c.send(frame_header(target.declared.number("max_frame") + 1))
            payload = c.wire.read_frame(TOOLONG_WITHIN)
            if payload is not None:
                judge_frame(b"(a header above max_frame)", payload)
    if problems:
        mode, request, reply = problems[0]
        raise Violation(
            f"{len(problems)} replies are neither a success reply nor '-ERR' SP CODE [SP text] with one of the "
            f"ten codes; the first, in {mode} mode, answers {escape(request)!r}",
            expected=("-ERR CODE[ text]\\r\\n" if mode == "line" else "a frame -ERR CODE[ text]")
            + f" (CODE one of {' '.join(CODES)})",
            actual=reply,
            transcripts=transcripts,
        )


# ---- CH-ERR-2 to CH-ERR-6 -------------------------------------------------------------

UNKNOWN_LINES = [
    b"BOGUS x",
    b"FLY me",
    b"BOGUS",
    b"BOGUS  ",
    b"BOGUS \x00",
    b"XYZZY " + b"a" * 300,
    b" PING",  # an empty command
    b" ",
    b"  GET k",
    b"PINGX",
    b"PIN",
    b"ECHOX hi",
    b"GETS k",
    b"SETX k v",
    b"PING\x00",
    b"\x00PING",
    b"PI\tNG",
    b"\tPING",
    b"P\xc4\xb0NG",
    b"\xffGET k",
    b"\xe9cho x",
    b"PING\r",  # sent as "PING\r\r\n": the command is "PING\r"
    b"\r",  # sent as "\r\r\n"
    b"ECHO\r x",
    b"QUITX",
    b"FRAMEDX",
    b"STARTTLSX",
]


@requirement("CH-ERR-2")
def test_an_unknown_command_gets_unknown(target: Target) -> None:
    with target.connect("line mode") as c:
        expect_errors(c, [(p, "UNKNOWN") for p in UNKNOWN_LINES])
        expect_errors(c, [(b"BOGUS x", "UNKNOWN"), (b" PING", "UNKNOWN")], end=b"\n")
    if target.declared.has("framed"):
        with target.connect("framed mode") as c:
            c.switch_to_framed()
            cases = [p for p in UNKNOWN_LINES if b"\r" not in p] + [b"PING\r\n", b"ping\n", b"GET\x00 k", b" "]
            expect_errors(c, [(p, "UNKNOWN") for p in cases])
    probe = tls_probe(target)
    if probe is not None:
        with probe as c:
            expect_errors(c, [(b"BOGUS x", "UNKNOWN"), (b" PING", "UNKNOWN"), (b"\xff", "UNKNOWN")])


@requirement("CH-ERR-3")
def test_wrong_arity_gets_syntax(target: Target) -> None:
    key = fresh_key()
    arity = [
        b"PING ",
        b"PING x",
        b"INFO ",
        b"INFO x",
        b"ECHO",
        b"SET",
        b"SET " + key,
        b"GET",
        b"GET a b",
        b"DEL",
        b"DEL a b",
        b"INCR",
        b"INCR a b",
        b"SLEEP",
        b"SLEEP 1 2",
        b"STARTTLS now",
        b"STARTTLS ",
    ]
    if target.declared.has("framed"):
        # Without framed mode, FRAMED may be answered with any -ERR (CH-CMD-15).
        arity += [b"FRAMED x", b"FRAMED "]  # after them the connection must still be in line mode
    with target.connect("line mode") as c:
        expect_errors(c, [(p, "SYNTAX") for p in arity])
    with target.connect("QUIT with an argument") as c:
        expect_errors(c, [(b"QUIT now", "SYNTAX"), (b"QUIT ", "SYNTAX")])
    if target.declared.has("framed"):
        with target.connect("framed mode") as c:
            c.switch_to_framed()
            expect_errors(c, [(p, "SYNTAX") for p in (b"PING ", b"ECHO", b"SET " + key, b"GET a b", b"QUIT x")])


@requirement("CH-ERR-4")
def test_an_empty_argument_gets_syntax(target: Target) -> None:
    empty = [
        b"GET  a",
        b"GET a ",
        b"GET ",
        b"SET  v",
        b"SET ",
        b"SLEEP ",
        b"SLEEP  5",
        b"SLEEP 5 ",
        b"DEL  k",
        b"DEL k ",
        b"INCR  k",
        b"INCR k ",
    ]
    with target.connect("line mode") as c:
        expect_errors(c, [(p, "SYNTAX") for p in empty])
    if target.declared.has("framed"):
        with target.connect("framed mode") as c:
            c.switch_to_framed()
            expect_errors(c, [(p, "SYNTAX") for p in (b"GET  a", b"GET a ", b"SET  v", b"SLEEP ")])


@requirement("CH-ERR-5")
def test_an_invalid_key_gets_syntax_and_touches_nothing(target: Target) -> None:
    long_key, base = key_of(251), fresh_key("base")
    ok_key = key_of(250, b"\xff")
    bad_keys = [long_key, base + b"\x00x", base + b"\rx", base + b"\r"]
    with target.connect("line mode") as c:
        cases = []
        for key in bad_keys:
            cases += [(b"SET " + key + b" v", "SYNTAX"), (b"GET " + key, "SYNTAX")]
            cases += [(b"DEL " + key, "SYNTAX"), (b"INCR " + key, "SYNTAX")]
        cases += [(b"SET  v", "SYNTAX"), (b"DEL ", "SYNTAX"), (b"INCR ", "SYNTAX")]  # the empty key
        expect_errors(c, cases)
        # Nothing may be stored under a truncated key (250 bytes, or up to the NUL or CR).
        for request, reply in (
            (b"GET " + long_key[:250], b"_"),  # nothing stored under a truncated key
            (b"GET " + base, b"_"),
            (b"SET " + ok_key + b" v", b"+OK"),  # 250 bytes, some above 0x7F: valid
            (b"GET " + ok_key, b"$v"),
            (b"DEL " + ok_key, b":1"),
            (b"INCR " + ok_key, b":1"),
        ):
            c.ask(request, reply, why=f"the request {escape(request)!r}")
    if target.declared.has("framed"):
        with target.connect("framed mode") as c:
            c.switch_to_framed()
            cases = []
            for key in (base + b"\nx", base + b"\n", base + b"\x00", base + b"\rx", long_key):
                cases += [(b"SET " + key + b" v", "SYNTAX"), (b"GET " + key, "SYNTAX")]
                cases += [(b"DEL " + key, "SYNTAX"), (b"INCR " + key, "SYNTAX")]
            expect_errors(c, cases)
            c.ask(b"GET " + base, b"_", "nothing stored under the part before the LF or NUL", REPLY_TIMEOUT)


@requirement("CH-ERR-6")
def test_the_first_failing_check_decides_the_code(target: Target) -> None:
    text = fresh_key("text")
    with target.connect("line mode") as c:
        c.ask(b"SET " + text + b" abc", b"+OK")
        expect_errors(
            c,
            [
                (b"BOGUS x", "UNKNOWN"),
                (b" PING", "UNKNOWN"),
                (b"BOGUS  ", "UNKNOWN"),  # unknown before an empty argument
                (b"BOGUS " + key_of(251), "UNKNOWN"),  # unknown before a bad key
                (b"SLEEP abc", "SYNTAX"),
                (b"SLEEP 99999", "RANGE"),
                (b"SLEEP -99999", "SYNTAX"),  # not digits, before range
                (b"SLEEP 99999 1", "SYNTAX"),  # arity before range
                (b"SLEEP 99999 ", "SYNTAX"),
                (b"INCR " + text + b" x", "SYNTAX"),  # arity before TYPE
                (b"INCR " + text + b" ", "SYNTAX"),
                (b"STARTTLS now", "SYNTAX"),  # syntax before any state
            ],
        )
    if target.declared.has("framed"):
        lf = fresh_key("lf")
        with target.connect("framed mode") as c:
            c.switch_to_framed()
            c.ask(b"SET " + lf + b" a\nb", b"+OK", timeout=REPLY_TIMEOUT)
            c.ask(b"SET " + text + b" abc", b"+OK", timeout=REPLY_TIMEOUT)
            expect_errors(
                c,
                [
                    (b"FRAMED x", "SYNTAX"),  # syntax before the state (already framed)
                    (b"FRAMED ", "SYNTAX"),
                    (b"STARTTLS now", "SYNTAX"),
                    (b"BOGUS  ", "UNKNOWN"),
                    (b"SLEEP 99999", "RANGE"),
                    (b"INCR " + text + b" x", "SYNTAX"),
                ],
            )
        with target.connect("line mode, a value with LF") as c:
            expect_errors(c, [(b"GET " + lf + b" x", "SYNTAX"), (b"GET " + lf + b" ", "SYNTAX")])
    probe = tls_probe(target)
    if probe is not None:
        with probe as c:
            expect_errors(c, [(b"STARTTLS now", "SYNTAX"), (b"BOGUS  ", "UNKNOWN")])


# ---- CH-ERR-7 -------------------------------------------------------------------------


def answered_after_error(c: Probe, bad: bytes, good: bytes, reply: bytes) -> bool:
    """Send ``bad``; once its error reply is in, ``good`` must get ``reply``.
    False when ``bad`` got a reply that is no error: the checks for the codes
    judge that, and there is no error here to judge."""
    c.request(bad)
    got = c.next_reply(REPLY_TIMEOUT)
    if got is None:
        if c.wire.ending is Ending.OPEN:
            return False  # no reply at all: not this requirement's business
        raise c.violation(
            f"the server closed the connection instead of answering {escape(bad)!r} with an error",
            expected="-ERR CODE ..., and the connection stays open",
            actual=c.wire.pending() or c.wire.ending.value,
        )
    if not got.startswith(b"-ERR"):
        return False
    c.ask(good, reply, why=f"the request after the error reply {escape(got)!r} to {escape(bad)!r}")
    return True


def may_change_mode(request: bytes) -> bool:
    return request.split(b" ")[0].upper() in (b"FRAMED", b"STARTTLS")


@requirement("CH-ERR-7")
def test_the_connection_stays_usable_and_the_store_unchanged_after_an_error(target: Target) -> None:
    # (bad request, the next request, its reply), with {k} a fresh key holding "abc" and
    # {n} one holding 2^63 - 1 (a key of its own per step, so a step that a broken
    # server accepts cannot spoil the next); each sent once the previous reply is in.
    steps = [
        (b"INCR {k}", b"GET {k}", b"$abc"),  # TYPE
        (b"INCR {n}", b"GET {n}", b"$" + TOP),  # RANGE
        (b"SET {k}", b"GET {k}", b"$abc"),  # SYNTAX (arity)
        (b"SET {k}\x00x v", b"GET {k}", b"$abc"),  # SYNTAX (key)
        (b"DEL {k} x", b"GET {k}", b"$abc"),
        (b"DEL {k} ", b"GET {k}", b"$abc"),
        (b"INCR {k}x ", b"GET {k}x", b"_"),
        (b"SET " + key_of(251) + b" v", b"PING", b"+PONG"),
        (b"BOGUS {k}", b"GET {k}", b"$abc"),  # UNKNOWN
        (b" SET {k} x", b"GET {k}", b"$abc"),
        (b"SLEEP 99999", b"PING", b"+PONG"),
        (b"SLEEP x", b"PING", b"+PONG"),
        (b"FRAMED x", b"PING", b"+PONG"),  # still line mode
        (b"STARTTLS now", b"PING", b"+PONG"),
    ]
    with target.connect("line mode") as c:
        for bad, good, reply in steps:
            k, n = prepared_keys(c)
            if not answered_after_error(c, fill(bad, k, n), fill(good, k, n), reply) and may_change_mode(bad):
                break
    if not target.declared.has("framed"):
        return
    lf = fresh_key("lf")
    framed_steps = [
        (b"", b"GET {k}", b"$abc"),  # SYNTAX: a zero-length frame
        (b"BOGUS", b"PING", b"+PONG"),
        (b"INCR {k}", b"GET {k}", b"$abc"),
        (b"SET {k}\n v", b"GET {k}", b"$abc"),
        (b"FRAMED", b"PING", b"+PONG"),  # STATE; still framed
        (b"STARTTLS now", b"GET " + lf, b"$a\nb"),
    ]
    with target.connect("framed mode") as c:
        c.switch_to_framed()
        c.ask(b"SET " + lf + b" a\nb", b"+OK", timeout=REPLY_TIMEOUT)
        for bad, good, reply in framed_steps:
            k, n = prepared_keys(c)
            if not answered_after_error(c, fill(bad, k, n), fill(good, k, n), reply) and may_change_mode(bad):
                break
    with target.connect("line mode after STATE") as c:
        answered_after_error(c, b"GET " + lf, b"PING", b"+PONG")  # still line mode


def prepared_keys(c: Probe) -> tuple[bytes, bytes]:
    k, n = fresh_key("abc"), fresh_key("max")
    for request in (b"SET " + k + b" abc", b"SET " + n + b" " + TOP):
        c.ask(request, b"+OK", timeout=REPLY_TIMEOUT)
    return k, n


def fill(template: bytes, k: bytes, n: bytes) -> bytes:
    return template.replace(b"{k}", k).replace(b"{n}", n)


# ---- CH-ERR-8 and CH-ERR-9 --------------------------------------------------------------


def reset_within(c: Probe, seconds: float) -> bool:
    """Whether an RST reaches the connection within ``seconds``, without
    reading: POLLERR/POLLHUP only (a FIN alone raises neither)."""
    if c.wire.ending is Ending.RST:
        return True
    poller = select.poll()
    poller.register(c.wire.sock.fileno(), 0)  # POLLERR and POLLHUP are always reported
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if poller.poll(left * 1000):
            return True
    return c.wire.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) in (errno.ECONNRESET, errno.EPIPE)


def final_message_then_fin(c: Probe, data: bytes, read: Callable[[], object], what: str, watch: float) -> None:
    """Send ``data`` (a request that ends the connection, and much more) in one
    send; read the final message; then a FIN must follow, and no RST."""
    try:
        c.wire.send(data, c.timeout)
    except (OSError, WireTimeout) as error:
        summary = (
            f"the server reset the connection while the client was still sending ({error})"
            if isinstance(error, OSError)
            else f"the server stopped reading for {c.timeout:g} s but kept the connection open"
        )
        raise c.violation(
            f"{summary}: after {what} it must shut down its write side and drain the input",
            expected=f"{what}, FIN, and the rest of the input read and discarded",
            actual=c.wire.pending() or c.wire.ending.value,
        ) from None
    read()
    c.expect_end(why=f"after {what} the client must read a clean end of stream, although it sent unread bytes")
    if reset_within(c, watch):
        c.wire.transcript.add("--", b"connection reset (RST) after the FIN")
        raise c.violation(
            f"after {what} and its FIN the server reset the connection: it closed with unread input "
            "instead of draining it (an RST can destroy the final message before the client reads it)",
            expected="FIN, and no RST while the client sends nothing more",
            actual="FIN followed by RST",
            ending=Ending.RST,
        )


@requirement("CH-ERR-8")
def test_bye_is_followed_by_fin_although_requests_were_pipelined_after_quit(target: Target) -> None:
    with target.connect() as c:
        started = time.monotonic()
        final_message_then_fin(
            c,
            b"QUIT\r\n" + b"PING\r\n" * (UNREAD // 6),
            lambda: c.expect_line(b"+BYE\r\n", timeout=REPLY_TIMEOUT),
            "+BYE",
            # Watch past the latest close section 9 allows: a server that stops
            # reading after +BYE resets the connection when it finally closes.
            watch=max(0.05, CLOSE_WITHIN + 0.1 - (time.monotonic() - started)),
        )


@requirement("CH-ERR-8")
def test_toolong_is_followed_by_fin_although_the_line_goes_on(target: Target) -> None:
    max_line = target.declared.number("max_line")
    with target.connect() as c:
        final_message_then_fin(
            c,
            b"ECHO " + b"x" * (max_line + UNREAD) + b"\r\nPING\r\n",
            lambda: c.expect_error("TOOLONG", timeout=TOOLONG_WITHIN),
            "-ERR TOOLONG for an oversized line",
            watch=0.15,
        )


@requirement("CH-ERR-8")
def test_framed_final_messages_are_followed_by_fin(target: Target) -> None:
    if not target.declared.has("framed"):
        return  # the line-mode checks above judge CH-ERR-8
    max_frame = target.declared.number("max_frame")
    with target.connect("an oversized frame with its body") as c:
        c.switch_to_framed()
        final_message_then_fin(
            c,
            # The whole oversized frame and more: TOOLONG however the server decides.
            frame_header(max_frame + 1) + b"\x00" * (min(max_frame + 1, BODY_CAP) + UNREAD),
            lambda: c.expect_error("TOOLONG", timeout=TOOLONG_WITHIN),
            "the TOOLONG frame",
            watch=0.15,
        )
    with target.connect("framed QUIT with frames after it") as c:
        c.switch_to_framed()
        final_message_then_fin(
            c,
            frame(b"QUIT") + frame(b"PING") * (UNREAD // 8),
            lambda: c.expect_frame(b"+BYE", timeout=REPLY_TIMEOUT),
            "the +BYE frame",
            watch=0.15,
        )


def time_until_closed(c: Probe, since: float, limit: float, chunk: bytes) -> float | None:
    """Keep sending ``chunk`` every CHUNK_EVERY until the connection ends (a
    send fails, or an RST arrives: the server's closed socket answers data with
    RST). Returns the seconds since ``since``, or None if still open at ``limit``."""
    sock = c.wire.sock
    poller = select.poll()
    poller.register(sock.fileno(), 0)  # POLLERR and POLLHUP only; the FIN alone raises neither
    sent = 0
    try:
        while time.monotonic() - since < limit:
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                pass  # the server is not reading; keep trying
            except OSError:
                return time.monotonic() - since
            if poller.poll(CHUNK_EVERY * 1000):
                return time.monotonic() - since
        return None
    finally:
        c.wire.transcript.add("TX", f"(kept sending: {sent} bytes in chunks of {len(chunk)})".encode())


def closes_in_time(c: Probe, what: str, chunk: bytes, measure: Measure) -> None:
    since = time.monotonic()
    limit = CLOSE_WITHIN + LOADED_MACHINE_MARGIN
    elapsed = time_until_closed(c, since, limit, chunk)
    if elapsed is None:
        raise c.violation(
            f"the connection was still open {limit:.2f} s after {what}, while the client kept sending "
            f"(the server must close its socket within {CLOSE_WITHIN * 1000:.0f} ms of its shutdown: "
            f"a drain of {DRAIN_PERIOD * 1000:.0f} ms and the close right after it)",
            expected=f"the connection ends within {CLOSE_WITHIN:.2f} s (+{LOADED_MACHINE_MARGIN:.2f} s margin)",
            actual="still open",
        )
    measure(f"closed after {what}", round(elapsed * 1000), "ms", "the client kept sending")


@requirement("CH-ERR-9")
def test_the_socket_closes_soon_after_bye_although_the_client_keeps_sending(target: Target, measure: Measure) -> None:
    with target.connect() as c:
        c.ask(b"QUIT", b"+BYE", timeout=REPLY_TIMEOUT)
        closes_in_time(c, "+BYE", b"PING\r\n" * 10, measure)


@requirement("CH-ERR-9")
def test_the_socket_closes_soon_after_toolong_although_the_line_goes_on(target: Target, measure: Measure) -> None:
    max_line = target.declared.number("max_line")
    with target.connect() as c:
        c.send(b"ECHO " + b"x" * max_line + b"\r\n")  # with its LF: TOOLONG however the server decides
        c.expect_error("TOOLONG", timeout=TOOLONG_WITHIN)
        closes_in_time(c, "-ERR TOOLONG", b"x" * 64, measure)
