"""CH-CLIENT-7 to CH-CLIENT-13: how a client reads replies and reports them
(PROTOCOL.md section 17). The suite plays the server; the client is judged
by its exit status, its output, its timing, and what it sent.

Scenarios with several requests need a template that takes several ({cmd}
as a flag's value, see suite.clients.spec.with_requests). With one that
cannot, those checks are UNSUPPORTED as not applicable, with the reason: a
client run with one request per process never has a later request
unanswered, and its other checks still decide its level."""

from __future__ import annotations

from typing import Any

from suite.api import Measure, not_applicable, requirement
from suite.clients.adversary import Script, Session, answer
from suite.clients.spec import with_requests
from suite.clients.under_test import ClientUnderTest, Scenario, fresh_token

READ_TIMEOUT = 5.0  # the client default of section 17
READ_TOLERANCE = 0.5  # CH-CLIENT-7
PROMPT = 2.0  # "at once": well inside the read timeout, with room for a loaded machine
SWITCHES = ("framed", "starttls")  # the modes a client enters with a request of its own


def several(client: ClientUnderTest, script: Script, requests: list[str], **options: Any) -> Scenario:
    """A scenario whose client is given several requests, in order."""
    template = client.spec.template(options.get("feature"))
    assert template is not None
    try:
        with_requests(template, requests)
    except ValueError as error:
        not_applicable(f"this check passes {len(requests)} requests in one run: {error}")
    return client.scenario(script, cmd=requests[0], edit=lambda t: with_requests(t, requests), **options)


def replies(*answers: bytes, then_close: bool = False) -> Script:
    """Read one request per answer and answer it; then, with ``then_close``,
    close (the later requests, if any, go unanswered); then wait for the client."""

    def script(session: Session) -> None:
        for reply in answers:
            session.request()
            session.reply(reply)
        if then_close:
            session.close()
        session.wait_for_close(READ_TIMEOUT + 3)

    return script


def raw(data: bytes, *, then_close: bool = False) -> Script:
    """Read one request and send ``data`` as it is, in the client's mode."""

    def script(session: Session) -> None:
        session.request()
        session.send(data)
        if then_close:
            session.close()
        session.wait_for_close(READ_TIMEOUT + 3)

    return script


@requirement("CH-CLIENT-11")
def test_well_formed_replies_are_printed_and_the_client_exits_0(client: ClientUnderTest) -> None:
    token = fresh_token()
    for cmd, reply in ((f"ECHO {token}", f"${token}"), ("PING", "+PONG")):
        s = client.scenario(answer(reply.encode()), cmd=cmd)
        s.expect_status(0, f"a well-formed reply {reply!r} to {cmd!r} means success")
        s.expect_request(cmd.encode())
        s.expect_stdout(f"{reply}\n".encode(), "the reply, without its CRLF, and a LF on standard output")


@requirement("CH-CLIENT-11")
def test_several_replies_are_printed_in_order(client: ClientUnderTest) -> None:
    token = fresh_token()
    s = several(client, replies(f"${token}".encode(), b"+PONG"), [f"ECHO {token}", "PING"])
    s.expect_status(0, "two requests, two well-formed replies, no error")
    s.expect_stdout(f"${token}\n+PONG\n".encode(), "one line per reply, in the order of the requests")


@requirement("CH-CLIENT-11")
def test_the_ok_to_a_mode_switch_of_the_clients_own_is_not_printed(client: ClientUnderTest) -> None:
    token = fresh_token()
    for feature in SWITCHES:
        if client.spec.template(feature) is None:
            continue  # a client without this mode sends no such switch
        s = client.scenario(answer(f"${token}".encode()), cmd=f"ECHO {token}", feature=feature, limit=5.0)
        s.expect_status(0, f"a {feature} exchange with a well-formed reply")
        s.expect_stdout(
            f"${token}\n".encode(),
            f"only the reply to the user's request: the +OK to the client's own {feature.upper()} is not printed",
        )


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


@requirement("CH-CLIENT-12")
def test_an_error_among_several_replies_exits_1_and_all_are_printed(client: ClientUnderTest) -> None:
    s = several(client, replies(b"-ERR UNKNOWN no such command", b"+PONG"), ["NOPE now", "PING"])
    s.expect_status(1, "one of the two replies is an -ERR")
    s.expect_stdout(b"-ERR UNKNOWN no such command\n+PONG\n", "both replies, in order, the error included")


@requirement("CH-CLIENT-12")
def test_a_final_error_exits_1_even_with_later_requests_unanswered(client: ClientUnderTest) -> None:
    script = replies(b"-ERR SHUTDOWN the server is going away", then_close=True)
    s = several(client, script, [f"ECHO {fresh_token()}", "PING"], limit=PROMPT + 1)
    s.expect_status(1, "a final -ERR SHUTDOWN then the close: the PING's missing reply is no truncation")
    s.expect_stdout(b"-ERR SHUTDOWN the server is going away\n", "the final message is printed")


@requirement("CH-CLIENT-12")
def test_a_refused_starttls_exits_1_and_prints_the_error(client: ClientUnderTest) -> None:
    if client.spec.template("starttls") is None:
        return  # a client without STARTTLS is never refused one
    refusal = b"-ERR UNKNOWN STARTTLS is not offered here"
    s = client.scenario(answer(b"+PONG"), cmd="PING", feature="starttls", starttls_refusal=refusal, limit=3.0)
    s.expect_status(1, "the -ERR answering the client's STARTTLS is an error reply")
    # Its first line: whatever the client sent after the refusal is CH-CLIENT-19's to judge.
    if not s.run.stdout.startswith(refusal + b"\n"):
        raise s.violation("the -ERR to STARTTLS is printed like any error reply", expected=refusal, actual=s.run.stdout)


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


@requirement("CH-CLIENT-9")
def test_a_close_before_the_second_reply_is_a_protocol_error(client: ClientUnderTest) -> None:
    s = several(client, replies(b"+PONG", then_close=True), ["PING", "PING"], limit=PROMPT + 1)
    s.expect_status(7, "the server closed before the second request's reply")
    s.expect_within(PROMPT, "a truncation must be reported at once, not after the read timeout")


@requirement("CH-CLIENT-9")
def test_the_close_after_bye_is_no_truncation(client: ClientUnderTest) -> None:
    s = several(client, replies(b"+BYE", then_close=True), ["QUIT", "PING"], limit=PROMPT + 1)
    if s.run.status == 7:
        raise s.violation(
            "+BYE is a final message: the close after it is expected, and the PING after QUIT goes unanswered",
            expected="not the protocol-error status (0: no -ERR came)",
            actual=s.run.outcome(),
        )


@requirement("CH-CLIENT-10")
def test_bytes_that_are_no_reply_are_a_protocol_error(client: ClientUnderTest) -> None:
    for garbage in (b"hello", b"+YES", b":007"):
        s = client.scenario(answer(garbage), cmd="PING", limit=PROMPT + 1)
        s.expect_status(7, f"{garbage.decode()!r} is not a response of section 5")
    s = client.scenario(raw(b"+PONG\n"), cmd="PING", limit=PROMPT + 1)
    s.expect_status(7, "a reply line ends in CRLF: '+PONG' and a bare LF is malformed")


@requirement("CH-CLIENT-10")
def test_a_line_where_a_frame_was_expected_is_a_protocol_error(client: ClientUnderTest) -> None:
    if client.spec.template("framed") is None:
        return  # a client without framed mode never expects a frame
    # The close after it: a client reading the line as a huge frame header sees it cut short (7 too).
    s = client.scenario(raw(b"+PONG\r\n", then_close=True), cmd="PING", feature="framed", limit=PROMPT + 1)
    s.expect_status(7, "after FRAMED's +OK every reply is a frame: a CRLF line is malformed")


@requirement("CH-CLIENT-13")
def test_a_bad_command_line_exits_2_without_connecting(client: ClientUnderTest) -> None:
    for port in ("not-a-port", "70000"):
        s = client.scenario(answer(b"+PONG"), cmd="PING", port=port, limit=PROMPT + 1)
        s.expect_status(2, f"port {port!r} is a usage error")
        if s.exchanges:
            raise s.violation("a usage error must not connect", expected="no connection", actual="a connection")
        if not s.run.stderr.strip():
            raise s.violation("a usage error says why on standard error", expected="a message", actual="nothing")
