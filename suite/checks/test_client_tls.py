"""CH-CLIENT-14 to CH-CLIENT-19: TLS and STARTTLS in a client (PROTOCOL.md
section 17). The suite's server shows a good chain, or one broken in a single
way; the client must accept the first and refuse each of the others with
status 6, before it sends a request."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from pathlib import Path

from suite.api import HarnessError, Unsupported, requirement
from suite.clients.adversary import answer
from suite.clients.certs import ClientCertificates
from suite.clients.under_test import ClientUnderTest, Scenario, fresh_token

TOKEN = fresh_token()
STARTTLS_PAUSE = 0.3  # inside "+OK\r\n": a client must wait for all of it


def _tls(client: ClientUnderTest, kind: str, *, host: str | None = None, tls_1_1_only: bool = False) -> Scenario:
    s = client.scenario(
        answer(f"${TOKEN}".encode()),
        cmd=f"ECHO {TOKEN}",
        feature="tls",
        tls=kind,
        host=host,
        tls_1_1_only=tls_1_1_only,
        limit=5.0,
    )
    if any(exchange.mode == "plain" for exchange in s.exchanges):
        if client.spec.tls_inferred:
            # Its only template takes {ca}, which is no promise of TLS: no TLS offered, nothing to judge.
            # Not applicable, not unchecked: a client that speaks no TLS has no TLS requirement to meet.
            raise Unsupported(
                "not applicable: the client spoke plaintext, so it offers no TLS"
                " (give --client-cmd-for tls=TEMPLATE to insist on TLS)"
            )
        raise s.violation(
            "the client's TLS command spoke plaintext", expected="a TLS handshake", actual="a plaintext request"
        )
    return s


def _accepted(s: Scenario, why: str) -> None:
    s.expect_status(0, why)
    s.only_exchange()
    s.expect_stdout(f"${TOKEN}\n".encode(), "the reply, over TLS")


def _refused(s: Scenario, why: str) -> None:
    s.expect_status(6, why)
    s.expect_no_request("a client that refuses the server's certificate sends it nothing")


@requirement("CH-CLIENT-14")
def test_a_chain_to_the_trusted_ca_is_accepted_and_one_to_another_ca_is_refused(client: ClientUnderTest) -> None:
    _accepted(_tls(client, "good"), "a valid chain to the CA given with {ca}, for the name dialled")
    _refused(_tls(client, "untrusted"), "the chain ends at a CA the client was not told to trust")


@requirement("CH-CLIENT-15")
def test_an_expired_certificate_is_refused(client: ClientUnderTest) -> None:
    _refused(_tls(client, "expired"), "the certificate expired yesterday (it is otherwise valid)")


@requirement("CH-CLIENT-16")
def test_a_certificate_for_another_name_is_refused(client: ClientUnderTest) -> None:
    _refused(_tls(client, "wrong-name"), "the certificate is for other.sockspec.test, not for the name dialled")


@requirement("CH-CLIENT-16")
def test_an_ip_address_is_checked_against_the_ip_sans(client: ClientUnderTest) -> None:
    ip = client.placement.ip
    _accepted(_tls(client, "good", host=ip), f"the certificate has {ip} as an IP SAN")
    _refused(_tls(client, "wrong-name", host=ip), f"the certificate has no IP SAN for {ip}")


@requirement("CH-CLIENT-17")
def test_the_name_dialled_is_sent_as_sni_and_an_ip_address_is_not(client: ClientUnderTest) -> None:
    name = client.placement.name
    s = _tls(client, "good")
    _accepted(s, "a valid chain")
    if s.only_exchange().sni != name:
        raise s.violation(
            "the client must send the name it dialled as SNI", expected=name, actual=repr(s.only_exchange().sni)
        )
    ip = client.placement.ip
    s = _tls(client, "good", host=ip)
    _accepted(s, "a valid chain with an IP SAN")
    if s.only_exchange().sni is not None:
        raise s.violation(
            "an IP literal is never sent as SNI (RFC 6066)", expected="no SNI", actual=repr(s.only_exchange().sni)
        )


def _can_serve_tls_1_1(certs: ClientCertificates) -> str:
    """Why this machine cannot offer TLS 1.1 as a server ("" when it can): a
    check that cannot offer it cannot catch a client that accepts it."""
    if certs.directory not in _TLS_1_1:
        _TLS_1_1[certs.directory] = _try_tls_1_1(certs)
    return _TLS_1_1[certs.directory]


_TLS_1_1: dict[Path, str] = {}


def _try_tls_1_1(certs: ClientCertificates) -> str:
    server_context = certs.server_context("good", tls_1_1_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client_context = ssl.create_default_context(cafile=str(certs.ca))
        client_context.set_ciphers("DEFAULT:@SECLEVEL=0")
        client_context.minimum_version = ssl.TLSVersion.TLSv1_1
        client_context.maximum_version = ssl.TLSVersion.TLSv1_1
    left, right = socket.socketpair()
    left.settimeout(5)
    right.settimeout(5)
    problems: list[str] = []

    def serve() -> None:
        try:
            with server_context.wrap_socket(left, server_side=True):
                pass
        except (ssl.SSLError, OSError) as error:
            problems.append(f"server: {error}")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        with client_context.wrap_socket(right, server_hostname="localhost") as tls:
            version = tls.version()
    except (ssl.SSLError, OSError) as error:
        return f"{error}; {'; '.join(problems)}"
    finally:
        server.join(5)
        left.close()
    return "" if version == "TLSv1.1" else f"negotiated {version}"


@requirement("CH-CLIENT-18")
def test_a_server_limited_to_tls_1_1_is_refused(client: ClientUnderTest) -> None:
    problem = _can_serve_tls_1_1(client.certs)
    if problem:
        raise HarnessError(f"this machine's OpenSSL cannot serve TLS 1.1, so the check cannot judge: {problem}")
    s = _tls(client, "good", tls_1_1_only=True)
    _refused(s, "the server offers TLS 1.0 and 1.1 only; a client requires TLS 1.2 or later")
    if s.exchanges and s.exchanges[0].tls_version:
        raise s.violation(
            "the client completed a TLS 1.1 handshake", expected="no handshake", actual=s.exchanges[0].tls_version
        )


@requirement("CH-CLIENT-19")
def test_starttls_waits_for_the_whole_ok_before_the_handshake(client: ClientUnderTest) -> None:
    token = fresh_token()
    s = client.scenario(
        answer(f"${token}".encode()),
        cmd=f"ECHO {token}",
        feature="starttls",
        starttls_pause=STARTTLS_PAUSE,
        limit=5.0,
    )
    # Judged on the wire alone: the exit status and the output are CH-CLIENT-11's.
    exchange = s.only_exchange()
    if exchange.problems:
        raise s.violation("the client started before the server's +OK was complete", actual=exchange.problems[0])
    if exchange.mode != "starttls":
        raise s.violation(
            "the client's STARTTLS command did not upgrade with STARTTLS", expected="STARTTLS", actual=exchange.mode
        )
    if exchange.tls_version is None:
        raise s.violation(
            "after the whole +OK the client must start the handshake (the chain is good)",
            expected="a TLS handshake after +OK",
            actual=exchange.handshake_error or "no handshake",
        )
    s.expect_request(f"ECHO {token}".encode())


@requirement("CH-CLIENT-19")
def test_starttls_answered_with_an_error_starts_no_handshake(client: ClientUnderTest) -> None:
    s = client.scenario(
        answer(b"+PONG"),
        cmd="PING",
        feature="starttls",
        starttls_refusal=b"-ERR UNKNOWN STARTTLS is not offered here",
        limit=3.0,
    )
    exchange = s.only_exchange()
    if exchange.problems:
        # Only what the client sent is judged here; its exit status is CH-CLIENT-12's.
        status = "" if s.run.status == 1 else f" (its {s.run.outcome()} is CH-CLIENT-12's to judge)"
        raise s.violation(
            "after a refused STARTTLS the client must send nothing more: no handshake, no plaintext request" + status,
            expected="nothing after the STARTTLS line, then the client's close",
            actual=exchange.problems[0],
        )
