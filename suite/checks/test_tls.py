"""CH-TLS: implicit TLS and STARTTLS (PROTOCOL.md section 15); CH-TLS-1 and
CH-TLS-2 are written against the run's Dialect, and judge R2-TLS-1 and
R2-TLS-2 under --profile resp2 (PROTOCOL-RESP2.md, section 10).

Each request's reply is read before the next request is sent, except where
the bytes sent together are what is judged (CH-TLS-5), so that a server
which cannot pipeline fails CH-FRAME-17/18 and not these."""

from __future__ import annotations

import contextlib
import ssl
import warnings

from suite.api import HarnessError, Probe, Violation, fresh_key, not_applicable, requirement
from suite.profiles.dialects import Dialect
from suite.targets.base import Target


def _pinned_context(target: Target, version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that offers exactly one TLS version."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are deprecated: that is the point
        context = target.trust.context()
        if version < ssl.TLSVersion.TLSv1_2:
            # OpenSSL 3 refuses to offer the old versions at its default security level.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = version
        context.maximum_version = version
    return context


@requirement("CH-TLS-1", "R2-TLS-1")
def test_tls_1_2_and_1_3_handshakes_are_accepted_and_speak_the_protocol(target: Target, dialect: Dialect) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        try:
            c = target.connect_tls(f"TLS {version.name}", context=_pinned_context(target, version))
        except ssl.SSLError as error:
            raise Violation(
                f"a client offering only {version.name} could not complete a handshake on the TLS port",
                expected=f"a {version.name} handshake",
                actual=str(error),
            ) from None
        with c:
            dialect.ask(c, dialect.ping(), why=f"PING inside {version.name}")
            if target.declared.has("framed"):
                c.switch_to_framed()
                c.ask(b"ECHO in\r\nside", b"$in\r\nside", why="framed mode inside TLS")


@requirement("CH-TLS-2", "R2-TLS-2")
def test_tls_1_0_and_1_1_handshakes_are_refused(target: Target, dialect: Dialect) -> None:
    for version in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
        context = _pinned_context(target, version)
        try:
            c = target.connect_tls(f"TLS {version.name}", context=context)
        except ssl.SSLError as error:
            if error.reason in ("NO_PROTOCOLS_AVAILABLE", "UNSUPPORTED_PROTOCOL") and "alert" not in str(error):
                raise HarnessError(f"this machine's OpenSSL cannot offer {version.name}: {error}") from None
            continue  # refused, as required
        except (ConnectionError, TimeoutError):
            continue  # closed during the handshake: refused too
        with c:
            raise c.violation(
                f"the server completed a {version.name} handshake",
                expected="a handshake failure",
                actual=f"negotiated {c.wire.sock.version()}",  # type: ignore[attr-defined]
            )
    with target.connect_tls("after the refusals") as c:
        dialect.ask(c, dialect.ping(), why="the server keeps serving TLS clients")


@requirement("CH-TLS-3")
def test_plaintext_on_the_tls_port_is_never_answered_and_harms_nothing(target: Target) -> None:
    for garbage in (b"PING\r\n", b"\x16\x03\x01\x00\x05hello", bytes(range(256))):
        with target.connect_tls_port_plain() as c:
            with contextlib.suppress(OSError):
                c.send(garbage)
            c.wire.wait_for_end(timeout=5)
            received = c.wire.transcript.received()
            if b"+PONG" in received or b"-ERR" in received or c.wire.ending.name == "TIMEOUT":
                raise c.violation(
                    "plaintext on the TLS port must fail the handshake and be closed, never answered",
                    expected="a TLS alert or nothing, then the close",
                    actual=received or c.wire.ending.value,
                )
    with target.connect("plain port afterwards") as plain:
        plain.ask(b"PING", b"+PONG", why="the plain port still serves")
    with target.connect_tls("TLS port afterwards") as tls:
        tls.ask(b"PING", b"+PONG", why="the TLS port still serves")


@requirement("CH-TLS-4")
def test_starttls_answers_ok_then_upgrades_to_line_mode_inside_tls(target: Target) -> None:
    with target.connect() as c:
        c.ask(b"PING", b"+PONG", why="a request before STARTTLS")
        c.ask(b"STARTTLS", b"+OK", why="STARTTLS in plaintext line mode")
        _upgrade(c, target)
        c.ask(b"PING", b"+PONG", why="line mode inside TLS after STARTTLS")
        version = c.wire.sock.version()  # type: ignore[attr-defined]
        if version not in ("TLSv1.2", "TLSv1.3"):
            raise c.violation("STARTTLS negotiated an old TLS version", expected="TLSv1.2 or later", actual=version)


@requirement("CH-TLS-5")
def test_bytes_sent_with_starttls_are_discarded(target: Target) -> None:
    injected = fresh_key("injected")
    with target.connect() as c:
        # Sent together on purpose: the plaintext that arrives with STARTTLS is what is judged.
        c.send(b"STARTTLS\r\nSET " + injected + b" 1\r\nPING\r\n")
        c.expect_line(b"+OK\r\n")
        pending = c.wire.pending()
        if pending:
            raise c.violation(
                "the server answered plaintext that followed STARTTLS", expected="nothing after +OK", actual=pending
            )
        _upgrade(c, target)
        c.ask(b"GET " + injected, b"_", why="the SET sent in plaintext with STARTTLS must never run (CVE-2011-0411)")


@requirement("CH-TLS-6")
def test_starttls_inside_tls_gets_state(target: Target) -> None:
    with target.connect() as c:
        c.ask(b"STARTTLS", b"+OK", why="STARTTLS in plaintext line mode")
        _upgrade(c, target)
        c.ask_error(b"STARTTLS", "STATE", why="STARTTLS after STARTTLS")
        c.ask(b"PING", b"+PONG", why="the connection stays usable inside TLS")
    if target.declared.has("tls"):
        with target.connect_tls() as t:
            t.ask_error(b"STARTTLS", "STATE", why="STARTTLS on the implicit-TLS port")
            t.ask(b"PING", b"+PONG", why="the connection stays usable after the STATE")


@requirement("CH-TLS-7")
def test_starttls_in_framed_mode_gets_state_and_stays_framed(target: Target) -> None:
    with target.connect() as c:
        c.switch_to_framed()
        c.ask_error(b"STARTTLS", "STATE", why="STARTTLS in framed mode")
        c.ask(b"PING", b"+PONG", why="still framed, still plaintext")


@requirement("CH-TLS-8")
def test_starttls_without_a_certificate_gets_state(target: Target) -> None:
    if target.declared.has("starttls"):
        not_applicable("the target declares starttls (a certificate is configured)")
    with target.connect() as c:
        c.ask_error(b"STARTTLS", "STATE", why="STARTTLS with no certificate configured")
        c.ask(b"PING", b"+PONG", why="the connection stays in plaintext line mode")


def _upgrade(c: Probe, target: Target) -> None:
    try:
        c.wire.start_tls(target.trust.context(minimum=ssl.TLSVersion.TLSv1_2), target.trust.hostname, c.timeout)
    except (ssl.SSLError, OSError) as error:
        raise c.violation(
            "the TLS handshake after STARTTLS +OK failed", expected="a TLS 1.2+ handshake", actual=str(error)
        ) from None
