"""CH-CLIENT-7 to CH-CLIENT-13: how a client reads replies and reports them
(PROTOCOL.md section 17). The suite plays the server; the client is judged
by its exit status, its output, its timing, and what it sent."""

from __future__ import annotations

from suite.api import Measure, requirement
from suite.clients.adversary import Session, answer
from suite.clients.under_test import ClientUnderTest, fresh_token

READ_TIMEOUT = 5.0  # the client default of section 17
READ_TOLERANCE = 0.5  # CH-CLIENT-7
PROMPT = 2.0  # "at once": well inside the read timeout, with room for a loaded machine


@requirement("CH-CLIENT-11")
def test_well_formed_replies_are_printed_and_the_client_exits_0(client: ClientUnderTest) -> None:
    token = fresh_token()
    for cmd, reply in ((f"ECHO {token}", f"${token}"), ("PING", "+PONG")):
        s = client.scenario(answer(reply.encode()), cmd=cmd)
        s.expect_status(0, f"a well-formed reply {reply!r} to {cmd!r} means success")
        s.expect_request(cmd.encode())
        s.expect_stdout(f"{reply}\n".encode(), "the reply, without its CRLF, and a LF on standard output")


@requirement("CH-CLIENT-12")
def test_an_error_reply_exits_1_and_is_printed(client: ClientUnderTest) -> None:
    s = client.scenario(answer(b"-ERR UNKNOWN no such command"), cmd="NOPE now")
    s.expect_status(1, "an -ERR reply is a well-formed exchange that reports an error")
    s.expect_stdout(b"-ERR UNKNOWN no such command\n", "the error reply is printed like any reply")


@requirement("CH-CLIENT-12")
def test_busy_followed_by_a_close_exits_1_not_7(client: ClientUnderTest) -> None:
    def busy(session: Session) -> None:
        session.request()
        session.reply(b"-ERR BUSY too many connections")
        session.close()
        session.wait_for_close(READ_TIMEOUT)

    s = client.scenario(busy, cmd=f"ECHO {fresh_token()}")
    s.expect_status(1, "a final -ERR BUSY and the server's close are an error reply, not a truncated one")


@requirement("CH-CLIENT-7")
def test_a_server_that_never_answers_meets_the_read_timeout(client: ClientUnderTest, measure: Measure) -> None:
    def silent(session: Session) -> None:
        session.request()
        session.wait_for_close(READ_TIMEOUT + 3 * READ_TOLERANCE)

    s = client.scenario(silent, cmd=f"ECHO {fresh_token()}", limit=READ_TIMEOUT + 2)
    exchange = s.only_exchange()
    if exchange.closed_at is None or exchange.request_at is None:
        raise s.violation(
            "the client kept waiting for a reply that never came",
            expected=f"a close {READ_TIMEOUT:g} s ± {READ_TOLERANCE:g} s after the request, and exit status 5",
            actual=s.run.outcome(),
        )
    waited = exchange.closed_at - exchange.request_at
    measure("request to the client's close", round(waited, 3), "s", "seen by the suite's server")
    if abs(waited - READ_TIMEOUT) > READ_TOLERANCE:
        raise s.violation(
            "the client's read timeout is not the declared 5 s",
            expected=f"{READ_TIMEOUT:g} s ± {READ_TOLERANCE:g} s from the request to the client's close",
            actual=f"{waited:.2f} s",
        )
    s.expect_status(5, "a read timeout exits with the timeout status")


@requirement("CH-CLIENT-8")
def test_a_reply_arriving_one_byte_per_segment_is_reassembled(client: ClientUnderTest) -> None:
    token = fresh_token()
    s = client.scenario(answer(f"${token}".encode(), segment=1), cmd=f"ECHO {token}")
    s.expect_status(0, "a reply split into one-byte segments is still one reply")
    s.expect_stdout(f"${token}\n".encode(), "the reassembled reply")


def _cut_short(after: bytes, *, reset: bool = False):  # type: ignore[no-untyped-def]
    def script(session: Session) -> None:
        session.request()
        if after:
            session.send(after)
        if reset:
            session.reset()
            return
        session.close()
        session.wait_for_close(READ_TIMEOUT + 3)

    return script


@requirement("CH-CLIENT-9")
def test_a_reply_cut_by_a_close_is_a_protocol_error_at_once(client: ClientUnderTest) -> None:
    token = fresh_token()
    cases = (
        ("a FIN in the middle of the reply", _cut_short(f"${token}"[:6].encode())),
        ("a FIN before the CRLF", _cut_short(f"${token}\r".encode())),
        ("a FIN before any reply", _cut_short(b"")),
        ("a RST in the middle of the reply", _cut_short(f"${token}"[:6].encode(), reset=True)),
    )
    for what, script in cases:
        s = client.scenario(script, cmd=f"ECHO {token}", limit=PROMPT + 1)
        s.expect_status(7, f"{what} leaves the reply incomplete: a protocol error")
        s.expect_within(PROMPT, f"{what} must be reported at once, not after the read timeout")


@requirement("CH-CLIENT-10")
def test_bytes_that_are_no_reply_are_a_protocol_error(client: ClientUnderTest) -> None:
    for garbage in (b"hello", b"+YES", b":007"):
        s = client.scenario(answer(garbage), cmd="PING", limit=PROMPT + 1)
        s.expect_status(7, f"{garbage.decode()!r} is not a response of section 5")


@requirement("CH-CLIENT-13")
def test_a_bad_command_line_exits_2_without_connecting(client: ClientUnderTest) -> None:
    for port in ("not-a-port", "70000"):
        s = client.scenario(answer(b"+PONG"), cmd="PING", port=port, limit=PROMPT + 1)
        s.expect_status(2, f"port {port!r} is a usage error")
        if s.exchanges:
            raise s.violation("a usage error must not connect", expected="no connection", actual="a connection")
        if not s.run.stderr.strip():
            raise s.violation("a usage error says why on standard error", expected="a message", actual="nothing")
