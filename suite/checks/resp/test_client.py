"""R2-CLIENT: a RESP client, such as redis-cli, against the suite's own
servers (PROTOCOL-RESP2.md, section 12): a command and its reply, a refused
and a dead address, a silent server, and TLS verification.

The suite's server here is the Adversary of the CloudHash/1 client checks,
running RESP scripts: it reads a request as a multibulk array or an inline
line, and answers in RESP. Every scenario runs the client on this machine,
against loopback; the dead address is a listener whose backlog is full, so
that the kernel drops the client's SYN and its connect waits, as for an
address that never answers.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from suite.api import Measure, requirement
from suite.clients.adversary import Script, Session
from suite.clients.under_test import ClientUnderTest, Scenario, fresh_token
from suite.profiles import resp

PROMPT = 2.0  # R2-CLIENT-2
GIVE_UP = 10.0  # R2-CLIENT-3 and -4
MARGIN = 1.0  # the client's start-up on a loaded machine


def read_request(session: Session) -> list[bytes]:
    """The client's next RESP request, recorded as its words joined by spaces."""
    while True:
        parsed = resp.parse_request(bytes(session.buffer))
        if parsed is not None:
            words, size = parsed
            del session.buffer[:size]
            if words:
                session.exchange.requests.append(b" ".join(words))
                return words
            continue
        session.more()


def answering(reply: bytes) -> Script:
    """Read one request, send ``reply`` (a whole RESP reply), then wait for the client to go."""

    def script(session: Session) -> None:
        read_request(session)
        session.send(reply)
        session.wait_for_close(session.adversary.linger)

    return script


def silent(session: Session) -> None:
    """Read the request and never answer."""
    read_request(session)
    session.wait_for_close(session.adversary.linger)


def _fails(s: Scenario, within: float, why: str) -> None:
    if s.run.error:
        s.expect_status(0, why)  # a harness error: the client could not be started
    if s.run.status is None or s.run.status == 0 or s.run.elapsed > within:
        raise s.violation(why, expected=f"a non-zero exit status within {within:g} s", actual=s.run.outcome())


@contextlib.contextmanager
def dead_port() -> Iterator[int]:
    """A port on loopback whose SYNs go unanswered: a listener with a backlog of
    one, already filled, that never accepts."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        yield listener.getsockname()[1]
    finally:
        filler.close()
        listener.close()


def refused_port() -> int:
    """A port nothing listens on (bound for a moment to find it, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@requirement("R2-CLIENT-1")
def test_a_command_is_sent_as_a_resp_request_and_its_reply_printed(client: ClientUnderTest) -> None:
    token = fresh_token()
    s = client.scenario(answering(resp.bulk(token.encode())), cmd=f"ECHO {token}", tls=None)
    s.expect_status(0, "the server answered the command")
    s.expect_request(f"ECHO {token}".encode())
    if token.encode() not in s.run.stdout:
        raise s.violation("the reply was not printed", expected=token.encode(), actual=s.run.stdout)


@requirement("R2-CLIENT-2")
def test_a_refused_address_fails_within_2_s(client: ClientUnderTest, measure: Measure) -> None:
    s = client.scenario(
        answering(b"+PONG\r\n"), cmd="PING", tls=None, host="127.0.0.1", port=refused_port(), limit=PROMPT + MARGIN
    )
    measure("exit after a refused connect", round(s.run.elapsed, 3), "s")
    _fails(s, PROMPT + MARGIN, "nothing listens on the port: the connection is refused")
    if not s.run.stderr.strip() and not s.run.stdout.strip():
        raise s.violation("the client said nothing about the refused connection", expected="why", actual="nothing")


@requirement("R2-CLIENT-3")
def test_a_dead_address_is_given_up_within_10_s(client: ClientUnderTest, measure: Measure) -> None:
    with dead_port() as port:
        s = client.scenario(
            answering(b"+PONG\r\n"), cmd="PING", tls=None, host="127.0.0.1", port=port, limit=GIVE_UP + MARGIN
        )
    measure("exit after an unanswered connect", round(s.run.elapsed, 3), "s", s.run.outcome())
    _fails(s, GIVE_UP + MARGIN, "the address never answers the client's SYN")


@requirement("R2-CLIENT-4")
def test_a_silent_server_is_given_up_within_10_s(client: ClientUnderTest, measure: Measure) -> None:
    s = client.scenario(silent, cmd="PING", tls=None, limit=GIVE_UP + MARGIN)
    measure("exit after a server that never answers", round(s.run.elapsed, 3), "s", s.run.outcome())
    _fails(s, GIVE_UP + MARGIN, "the server accepted and read the request, and never answered")


def _refuses_certificate(client: ClientUnderTest, kind: str, why: str) -> None:
    good = client.scenario(answering(b"+PONG\r\n"), cmd="PING", feature="tls", tls="good", limit=GIVE_UP)
    if good.run.status != 0:
        raise good.violation(
            "the client does not complete even a good chain (the CA it was given, the name it dialled), so its "
            "refusal of a bad one shows nothing",
            expected="exit status 0 with the good chain",
            actual=good.run.outcome(),
        )
    s = client.scenario(answering(b"+PONG\r\n"), cmd="PING", feature="tls", tls=kind, limit=GIVE_UP)
    s.expect_no_request(f"{why}: no command may be sent")
    _fails(s, GIVE_UP, why)


@requirement("R2-CLIENT-5")
def test_a_certificate_from_an_untrusted_ca_is_refused(client: ClientUnderTest) -> None:
    _refuses_certificate(client, "untrusted", "the server's certificate is signed by a CA the client was not given")


@requirement("R2-CLIENT-6")
def test_a_certificate_for_another_name_is_refused(client: ClientUnderTest) -> None:
    _refuses_certificate(client, "wrong-name", "the server's certificate names another host than the one dialled")
