"""Mutant CloudHash/1 clients: the reference client with one realistic bug each.

Each mutant monkeypatches the reference client in-process (``apply()``), before
its main runs, and then runs as the reference client with the same flags:

    python3 -m tests.client_mutants NAME [client flags...] HOST PORT COMMAND [ARGS...]
    python3 -m tests.client_mutants --list

``requirements`` names the client requirements (CH-CLIENT-n of PROTOCOL.md
section 17) that the bug breaks for certain: a conformance check for each of
them must fail the mutant. Apart from its bug a mutant behaves exactly like the
reference client, so it should fail nothing else.

A patch is kept as small as the bug: where a real client would get one line
wrong, the mutant replaces one function or method with a copy that has that
line wrong, or wraps it. Nothing here runs unless ``apply()`` is called, and it
must only be called in the process that is about to become the client.

Standard library only, and nothing imported but ``reference_client`` and the
catalogues' shared command line (``tests.mutant_catalogue``): the mutants also
run in minimal containers with only python3 and the project directory mounted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_ID = re.compile(r"CH-CLIENT-[1-9][0-9]*\Z")
_SPEC = Path(__file__).resolve().parents[2] / "PROTOCOL.md"


def _spec_ids() -> frozenset[str] | None:
    """The CH-CLIENT IDs of PROTOCOL.md's headings, or None without the file."""
    try:
        text = _SPEC.read_text(encoding="utf-8")
    except OSError:
        return None
    return frozenset(re.findall(r"^### (CH-CLIENT-\d+) ", text, re.MULTILINE))


_KNOWN_IDS = _spec_ids()

# Longer than any run: "no timeout" (select() takes a finite number).
_NEVER = 1e9


@dataclass(frozen=True)
class ClientMutant:
    name: str
    description: str
    requirements: tuple[str, ...]
    apply: Callable[[], None]


CLIENT_MUTANTS: dict[str, ClientMutant] = {}


def _mutant(name: str, requirements: tuple[str, ...]) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Register the decorated patch; its docstring is the description."""

    def register(apply: Callable[[], None]) -> Callable[[], None]:
        if name in CLIENT_MUTANTS:
            raise ValueError(f"duplicate client mutant {name}")
        bad = [i for i in requirements if not _ID.match(i) or (_KNOWN_IDS is not None and i not in _KNOWN_IDS)]
        if bad or not requirements:
            raise ValueError(f"{name}: bad requirements {requirements} (not in PROTOCOL.md: {bad})")
        description = " ".join((apply.__doc__ or "").split())
        CLIENT_MUTANTS[name] = ClientMutant(name, description, requirements, apply)
        return apply

    return register


# ---- resolving and connecting (CH-CLIENT-1 to CH-CLIENT-6) ------------------------------


@_mutant("ipv4-only", ("CH-CLIENT-1",))
def _ipv4_only() -> None:
    """Resolves with AF_INET instead of AF_UNSPEC: AAAA records are never asked for, so a name with only
    AAAA records fails with exit 3, and IPv6 addresses are never tried."""
    import socket

    # The client calls getaddrinfo in one place only (connect.resolve).
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, family: int = 0, *rest: Any, **kwargs: Any) -> Any:
        return real(host, port, socket.AF_INET, *rest, **kwargs)

    socket.getaddrinfo = getaddrinfo


@_mutant("first-address-only", ("CH-CLIENT-1", "CH-CLIENT-2"))
def _first_address_only() -> None:
    """Tries only the first address the resolver returns: when that attempt fails (refused, unreachable,
    timed out), it exits 4 although other addresses remain (of the same family or of the other one)."""
    from reference_client import connect as connecting

    reference = connecting.connect

    def connect(addresses: list[connecting.Address], **kwargs: Any) -> Any:
        return reference(addresses[:1], **kwargs)

    connecting.connect = connect


@_mutant("blocking-connect", ("CH-CLIENT-3",))
def _blocking_connect() -> None:
    """No per-attempt connect timeout: each address gets a blocking connect bounded only by the overall
    deadline (the remaining time), so a silent first address holds the client until the kernel gives up
    or the deadline expires instead of for the attempt timeout. Addresses are still tried in order, one
    at a time (a blocking connect cannot race, so --happy-eyeballs is ignored)."""
    from reference_client import connect as connecting

    reference = connecting.connect

    def connect(addresses: list[connecting.Address], **kwargs: Any) -> Any:
        return reference(addresses, **{**kwargs, "attempt_timeout": float("inf"), "stagger": None})

    connecting.connect = connect


@_mutant("no-overall-deadline", ("CH-CLIENT-4",))
def _no_overall_deadline() -> None:
    """Each connection attempt has its timeout, but connecting has no overall deadline: with many silent
    addresses the timeouts add up, and the client keeps trying after the deadline has passed."""
    from reference_client import connect as connecting

    reference = connecting.connect

    def connect(addresses: list[connecting.Address], **kwargs: Any) -> Any:
        return reference(addresses, **{**kwargs, "deadline": float("inf")})

    connecting.connect = connect


def _report_failure_as(function: str, wrong: str, instead: str) -> None:
    """Wraps ``reference_client.connect.<function>`` so that a failure with exit status ``instead``
    is reported with ``wrong``: the right failure, the wrong code."""
    from reference_client import connect as connecting
    from reference_client.status import ClientFailure, Exit

    reference = getattr(connecting, function)

    def misreported(*args: Any, **kwargs: Any) -> Any:
        try:
            return reference(*args, **kwargs)
        except ClientFailure as failure:
            if failure.status != Exit[instead]:
                raise
            raise ClientFailure(Exit[wrong], failure.message) from None

    setattr(connecting, function, misreported)


@_mutant("dns-failure-is-connect-failure", ("CH-CLIENT-5",))
def _dns_failure_is_connect_failure() -> None:
    """Reports a failed resolution (NXDOMAIN, no address, resolver error) as a connect failure: exit 4
    instead of 3."""
    _report_failure_as("resolve", wrong="CONNECT", instead="DNS")


@_mutant("temporary-dns-failure-is-connect-failure", ("CH-CLIENT-5",))
def _temporary_dns_failure_is_connect_failure() -> None:
    """Takes a temporary resolver failure (EAI_AGAIN: the DNS server answered SERVFAIL, or not at all) for a
    network problem: exit 4 instead of 3. NXDOMAIN and a name without addresses still exit 3."""
    import socket

    from reference_client import connect as connecting
    from reference_client.status import ClientFailure, Exit

    real = socket.getaddrinfo
    temporary: list[BaseException] = []

    def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        try:
            return real(*args, **kwargs)
        except socket.gaierror as error:
            if error.errno == socket.EAI_AGAIN:
                temporary.append(error)
            raise

    socket.getaddrinfo = getaddrinfo
    reference = connecting.resolve

    def resolve(*args: Any, **kwargs: Any) -> Any:
        try:
            return reference(*args, **kwargs)
        except ClientFailure as failure:
            if failure.status != Exit.DNS or not temporary:
                raise
            raise ClientFailure(Exit.CONNECT, failure.message) from None

    connecting.resolve = resolve


@_mutant("refused-is-a-timeout", ("CH-CLIENT-6",))
def _refused_is_a_timeout() -> None:
    """Reports that no address could be connected (refused, unreachable, timed out) as a timeout:
    exit 5 instead of 4."""
    _report_failure_as("connect", wrong="TIMEOUT", instead="CONNECT")


# ---- replies (CH-CLIENT-7 to CH-CLIENT-12) -----------------------------------------------


@_mutant("error-reply-is-success", ("CH-CLIENT-12",))
def _error_reply_is_success() -> None:
    """Prints an -ERR reply like any other and forgets it was one: exit 0 instead of 1."""
    from reference_client import session

    def emit(self: session.Runner, reply: Any) -> None:
        self.out(reply.payload + b"\n")

    session.Runner.emit = emit  # type: ignore[method-assign]


@_mutant("replies-keep-their-crlf", ("CH-CLIENT-11",))
def _replies_keep_their_crlf() -> None:
    """Ends each printed reply with the CRLF of the wire instead of a LF."""
    from reference_client import session

    def emit(self: session.Runner, reply: Any) -> None:
        self.any_error = self.any_error or reply.is_error
        self.out(reply.payload + b"\r\n")

    session.Runner.emit = emit  # type: ignore[method-assign]


@_mutant("no-read-timeout", ("CH-CLIENT-7",))
def _no_read_timeout() -> None:
    """Waits for reply bytes without any read timeout: a server that accepts and never answers holds the
    client for ever (it still exits when the server closes, and still sends its urgent byte on time)."""
    from reference_client import session

    reference = session.exchange

    def exchange(channel: session.Channel, requests: list[session.Request], **kwargs: Any) -> Any:
        return reference(channel, requests, **{**kwargs, "read_timeout": _NEVER})

    session.exchange = exchange


@_mutant("truncated-reply-is-success", ("CH-CLIENT-9",))
def _truncated_reply_is_success() -> None:
    """Takes the end of the connection for the end of the replies: when it ends in the middle of a reply,
    or before every request has its reply, the client prints what it has (the partial reply, or an empty
    line) and exits 0 instead of 7."""
    from reference_client import session
    from reference_client.replies import Reply
    from reference_client.status import ClientFailure, Exit

    reference = session.exchange

    def exchange(channel: session.Channel, requests: list[session.Request], **kwargs: Any) -> Any:
        try:
            return reference(channel, requests, **kwargs)
        except ClientFailure as failure:
            # Only the truncation: its message starts with why the stream ended.
            if failure.status != Exit.PROTOCOL or not channel.eof or not failure.message.startswith(channel.eof):
                raise
            kwargs["emit"](Reply(bytes(channel.inbuf).removesuffix(b"\r"), "status"))
            return []

    session.exchange = exchange


@_mutant("accepts-malformed-reply", ("CH-CLIENT-10",))
def _accepts_malformed_reply() -> None:
    """Does not check replies against the grammar of section 5: any CRLF-terminated line (or frame
    payload) is a reply, so "hello\\r\\n" prints hello and exits 0 (an -ERR reply still exits 1)."""
    from reference_client import replies
    from reference_client.status import ClientFailure

    reference = replies.parse_response

    def parse_response(payload: bytes) -> replies.Reply:
        try:
            return reference(payload)
        except ClientFailure:
            return replies.Reply(payload, "status")

    replies.parse_response = parse_response
    replies._VIABLE_LINE = re.compile(rb"")  # no refusal before the LF either


@_mutant("bare-lf-ends-a-reply", ("CH-CLIENT-10",))
def _bare_lf_ends_a_reply() -> None:
    """Ends a reply line at its LF whether or not a CR comes before it (readline().rstrip()): "+PONG\\n"
    is taken for a reply instead of a malformed one."""
    from reference_client import replies

    reference = replies.LineReader.take

    def take(self: replies.LineReader, buffer: bytearray) -> Any:
        end = buffer.find(b"\n")
        if end >= 0 and (end == 0 or buffer[end - 1] != 0x0D):
            buffer[end:end] = b"\r"  # as if the CR had come
        return reference(self, buffer)

    replies.LineReader.take = take  # type: ignore[method-assign]


@_mutant("frames-read-as-lines-too", ("CH-CLIENT-10",))
def _frames_read_as_lines_too() -> None:
    """A lenient framed reader: a reply that starts like a line-mode response (+, -, :, $ or _) is read as a
    CRLF line instead of as a frame header, so a server that answers in lines after FRAMED is believed."""
    from reference_client import replies

    reference = replies.FrameReader.take
    lines = replies.LineReader()

    def take(self: replies.FrameReader, buffer: bytearray) -> Any:
        if buffer[:1] and bytes(buffer[:1]) in b"+-:$_":
            return lines.take(buffer)
        return reference(self, buffer)

    replies.FrameReader.take = take  # type: ignore[method-assign]


@_mutant("final-error-with-pending-is-truncation", ("CH-CLIENT-12",))
def _final_error_with_pending_is_truncation() -> None:
    """Excuses the server's close after a final -ERR (BUSY, SHUTDOWN...) only when every request has its
    reply: a final -ERR to the first of two pipelined requests, then the close, exits 7 instead of 1."""
    from reference_client import replies

    replies.Reply.is_final = property(lambda self: self.payload == b"+BYE")  # type: ignore[method-assign,assignment]


@_mutant("bye-close-is-truncation", ("CH-CLIENT-9",))
def _bye_close_is_truncation() -> None:
    """Counts only a final -ERR as a final message, not +BYE: QUIT and PING pipelined, +BYE and the server's
    close exit 7 (a truncation) instead of 0."""
    from reference_client import replies

    replies.Reply.is_final = property(lambda self: self.is_final_error)  # type: ignore[method-assign,assignment]


@_mutant("prints-switch-ok", ("CH-CLIENT-11",))
def _prints_switch_ok() -> None:
    """Prints the +OK that answers its own FRAMED or STARTTLS as if it were a reply to a request of the
    user's: a framed PING prints "+OK" and "+PONG" on two lines instead of "+PONG"."""
    from reference_client import session

    reference = session.Runner._switch

    def switch(self: session.Runner, channel: session.Channel, command: bytes) -> bool:
        switched = reference(self, channel, command)
        if switched:
            self.out(b"+OK\n")
        return switched

    session.Runner._switch = switch  # type: ignore[method-assign]


@_mutant("ignores-unknown-flags", ("CH-CLIENT-13",))
def _ignores_unknown_flags() -> None:
    """Parses its flags with parse_known_args and drops what it does not know: a misspelt or unknown flag
    is ignored and the client connects, instead of exiting 2. Bad ports and missing arguments still exit 2."""
    from reference_client import cli

    def parse_args(self: Any, args: Any = None, namespace: Any = None) -> Any:
        known, _unknown = self.parse_known_args(args, namespace)
        return known

    cli._Parser.parse_args = parse_args  # type: ignore[assignment]


# ---- TLS (CH-CLIENT-14 to CH-CLIENT-18) ------------------------------------------------------


@_mutant("trusts-any-certificate", ("CH-CLIENT-14", "CH-CLIENT-15", "CH-CLIENT-16"))
def _trusts_any_certificate() -> None:
    """Verifies nothing (verify_mode CERT_NONE, no host name check): a certificate from an untrusted CA,
    an expired one, or one for another name is accepted."""
    import ssl

    from reference_client import tls

    reference = tls.client_context

    def client_context(ca: str | None) -> ssl.SSLContext:
        context = reference(ca)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    tls.client_context = client_context


@_mutant("no-hostname-check", ("CH-CLIENT-16",))
def _no_hostname_check() -> None:
    """Verifies the certificate chain and its validity but not the host name (check_hostname off): a
    certificate for another name from a trusted CA is accepted. SNI is still sent."""
    import ssl

    from reference_client import tls

    reference = tls.client_context

    def client_context(ca: str | None) -> ssl.SSLContext:
        context = reference(ca)
        context.check_hostname = False
        return context

    tls.client_context = client_context


@_mutant("no-sni", ("CH-CLIENT-17",))
def _no_sni() -> None:
    """Sends no server_name extension (wraps the socket without a server_hostname), but still verifies the
    chain and checks the certificate against HOST by hand (subjectAltName, exit 6 on a mismatch): only a
    server that picks its certificate by SNI notices."""
    import ssl

    from reference_client import tls
    from reference_client.status import ClientFailure, Exit

    reference = tls.handshake

    class WithoutSni:
        """The client's context, wrapping sockets without a server_hostname: no SNI."""

        def __init__(self, context: ssl.SSLContext) -> None:
            self.context = context

        def wrap_socket(self, sock: Any, server_hostname: str | None = None, **kwargs: Any) -> ssl.SSLSocket:
            return self.context.wrap_socket(sock, server_hostname=None, **kwargs)

    def handshake(sock: Any, context: ssl.SSLContext, server_name: str, timeout: float) -> ssl.SSLSocket:
        context.check_hostname = False  # Python checks only a name it is also given to send
        conn = reference(sock, WithoutSni(context), server_name, timeout)  # type: ignore[arg-type]
        if not _certificate_matches(conn.getpeercert() or {}, server_name, context.hostname_checks_common_name):
            conn.close()
            raise ClientFailure(
                Exit.TLS,
                f"certificate verification failed: Hostname mismatch, certificate is not valid for '{server_name}'.",
            )
        return conn

    tls.handshake = handshake


def _certificate_matches(cert: dict[str, Any], name: str, common_name: bool) -> bool:
    """What OpenSSL checks for Python: an IP address against the IP SANs; a DNS name against the DNS SANs
    (a whole leftmost label may be a wildcard), or against the CN when there is no DNS SAN."""
    import ipaddress

    def ip(text: str) -> Any:
        try:
            return ipaddress.ip_address(text.strip())
        except ValueError:
            return None

    sans = cert.get("subjectAltName", ())
    address = ip(name)
    if address is not None:
        return any(kind == "IP Address" and ip(value) == address for kind, value in sans)
    patterns = [value for kind, value in sans if kind == "DNS"]
    if not patterns and common_name:
        patterns = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    wanted = name.lower().rstrip(".")
    for pattern in (p.lower().rstrip(".") for p in patterns):
        if pattern == wanted:
            return True
        label, dot, rest = wanted.partition(".")
        if pattern.startswith("*.") and pattern.count(".") >= 2 and label and dot and rest == pattern[2:]:
            return True
    return False


@_mutant("accepts-tls-1-1", ("CH-CLIENT-18",))
def _accepts_tls_1_1() -> None:
    """Allows TLS 1.0 and 1.1 (minimum_version TLSv1, and OpenSSL's security level 0, without which
    OpenSSL 3 refuses TLS 1.1 anyway): a server limited to TLS 1.1 gets a completed handshake."""
    import ssl
    import warnings

    from reference_client import tls

    reference = tls.client_context

    def client_context(ca: str | None) -> ssl.SSLContext:
        context = reference(ca)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        return context

    tls.client_context = client_context


# ---- framed mode and urgent data (CH-CLIENT-20, CH-CLIENT-21) --------------------------------


@_mutant("starttls-without-waiting", ("CH-CLIENT-19",))
def _starttls_without_waiting() -> None:
    """Sends STARTTLS and starts the TLS handshake at once, without waiting for the server's +OK (the
    pipelining of CVE-2011-0411): the ClientHello reaches a server that still reads plaintext, and the
    +OK is then read as TLS."""
    from reference_client import session

    reference = session.Runner._switch

    def switch(self: session.Runner, channel: session.Channel, command: bytes) -> bool:
        if command != b"STARTTLS":
            return reference(self, channel, command)
        channel.sock.sendall(command + b"\r\n")
        return True

    session.Runner._switch = switch  # type: ignore[method-assign]


@_mutant("little-endian-frames", ("CH-CLIENT-20",))
def _little_endian_frames() -> None:
    """Sends each frame's 4-byte length little-endian (the book's native pack('I') on x86); replies are
    still read big-endian. A conforming server reads a huge length and answers TOOLONG."""
    import struct

    from reference_client import session

    def encode_frame(payload: bytes) -> bytes:
        return struct.pack("<I", len(payload)) + payload

    session.encode_frame = encode_frame


@_mutant("repeats-urgent-byte", ("CH-CLIENT-21",))
def _repeats_urgent_byte() -> None:
    """Inverts the success test of the urgent send, so a sent urgent byte looks like a full send buffer:
    the client "retries" every 10 ms and sends a stream of urgent bytes while the SLEEP's reply is
    pending, instead of one."""
    import socket

    from reference_client import session

    def send_urgent(self: session.Channel) -> bool:
        try:
            return self.raw.send(session.URGENT_BYTE, socket.MSG_OOB) != 1
        except BlockingIOError:
            return False
        except OSError:
            self.write_failed = True
            return False

    session.Channel.send_urgent = send_urgent  # type: ignore[method-assign]


@_mutant("urgent-on-the-way-out", ("CH-CLIENT-21",))
def _urgent_on_the_way_out() -> None:
    """Sends one more urgent byte when its last request is a SLEEP, once the reply has arrived and just
    before closing ("so that the server surely stops sleeping"): an urgent byte while no SLEEP is pending,
    the second for a SLEEP its first urgent byte aborted already."""
    from reference_client import session

    reference = session.exchange

    def exchange(channel: session.Channel, requests: list[session.Request], **kwargs: Any) -> Any:
        answered = reference(channel, requests, **kwargs)
        if kwargs.get("abort_after_ms") is not None and requests and requests[-1].is_sleep:
            channel.send_urgent()
        return answered

    session.exchange = exchange


@_mutant("plaintext-after-refused-starttls", ("CH-CLIENT-19",))
def _plaintext_after_refused_starttls() -> None:
    """When STARTTLS is refused with -ERR, prints the error and carries on in plaintext (a STRIPTLS
    downgrade): its requests go out unencrypted, where nothing more should be sent."""
    from reference_client import session

    reference_switch = session.Runner._switch
    reference_upgrade = session.Runner._upgrade
    refused: list[bytes] = []

    def switch(self: session.Runner, channel: session.Channel, command: bytes) -> bool:
        if reference_switch(self, channel, command):
            return True
        if command != b"STARTTLS":
            return False
        refused.append(command)
        return True  # as if upgraded

    def upgrade(self: session.Runner, channel: session.Channel, context: Any) -> session.Channel:
        return channel if refused else reference_upgrade(self, channel, context)

    session.Runner._switch = switch  # type: ignore[method-assign]
    session.Runner._upgrade = upgrade  # type: ignore[method-assign]
