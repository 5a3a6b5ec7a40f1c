"""One run of the client: connect, optionally upgrade, send the requests,
read the replies in order, and decide the exit status (PROTOCOL.md section 17).

All socket I/O is non-blocking and waits in ``select`` with a deadline, so no
timeout depends on SO_RCVTIMEO or on what the kernel does by itself. Sending
and receiving are interleaved in one loop, so a long pipeline never deadlocks
against a server that answers while the client is still writing.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import connect as connecting
from . import tls as tls_layer
from .replies import FrameReader, LineReader, Reply, encode_frame, encode_line
from .status import ClientFailure, Exit, show

URGENT_BYTE = b"!"  # its value carries no meaning (section 14)
MIN_ABORT_DELAY_MS = 100  # CH-CLIENT-21: never earlier after the SLEEP
MAX_SLEEP_MS = 60000
CHUNK = 65536


@dataclass(frozen=True)
class Options:
    host: str
    port: int
    requests: tuple[bytes, ...]
    tls: bool = False
    starttls: bool = False
    ca: str | None = None
    server_name: str | None = None
    framed: bool = False
    abort_after_ms: int | None = None
    connect_timeout: float = 2.0
    deadline: float = 10.0
    read_timeout: float = 5.0
    happy_eyeballs: bool = False
    verbose: bool = False


@dataclass(frozen=True)
class Request:
    payload: bytes

    @property
    def is_sleep(self) -> bool:
        return self.payload.partition(b" ")[0].upper() == b"SLEEP"

    @property
    def sleep_ms(self) -> int:
        """How long the SLEEP asked for (0 for anything the server refuses at once)."""
        command, space, argument = self.payload.partition(b" ")
        if command.upper() != b"SLEEP" or not space or not argument.isdigit() or len(argument) > 9:
            return 0
        value = int(argument)
        return value if value <= MAX_SLEEP_MS else 0


@dataclass
class Channel:
    """A connected non-blocking socket (plain or TLS) and its receive buffer."""

    sock: socket.socket
    raw: socket.socket  # the TCP socket beneath, for urgent data (== sock when plain)
    inbuf: bytearray = field(default_factory=bytearray)
    eof: str = ""  # why the stream ended, once it has
    write_failed: bool = False
    _read_wants_write: bool = False

    def close(self) -> None:
        self.sock.close()
        if self.raw is not self.sock:
            self.raw.close()

    def wait(self, want_write: bool, timeout: float) -> tuple[bool, bool]:
        """(readable, writable) within ``timeout`` seconds."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True, False
        want_write = want_write or self._read_wants_write
        readable, writable, _ = select.select([self.sock], [self.sock] if want_write else [], [], max(0.0, timeout))
        if writable and self._read_wants_write:
            return True, bool(writable)
        return bool(readable), bool(writable)

    def read(self) -> bool:
        """Take whatever has arrived; True if any payload byte came."""
        self._read_wants_write = False
        got = False
        while not self.eof:
            try:
                data = self.sock.recv(CHUNK)
            except (BlockingIOError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                self._read_wants_write = True
                break
            except ssl.SSLError as exc:
                raise ClientFailure(Exit.PROTOCOL, f"TLS error after the handshake: {exc.reason or exc}") from None
            except OSError as exc:  # ECONNRESET and friends: the connection ended
                self.eof = f"connection reset ({exc.strerror or exc})"
                break
            if not data:
                self.eof = "connection closed"
                break
            self.inbuf += data
            got = True
        return got

    def write(self, data: memoryview) -> int:
        """Send what the socket takes now; 0 if it takes nothing."""
        try:
            return self.sock.send(data[:CHUNK])
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return 0
        except ssl.SSLError as exc:
            raise ClientFailure(Exit.PROTOCOL, f"TLS error after the handshake: {exc.reason or exc}") from None
        except OSError:
            # EPIPE or ECONNRESET: the server stopped reading. Whatever it
            # sent before closing (a final message, say) is still read.
            self.write_failed = True
            return 0

    def send_urgent(self) -> bool:
        """One byte of TCP urgent data on the raw socket (below TLS, if any)."""
        try:
            return self.raw.send(URGENT_BYTE, socket.MSG_OOB) == 1
        except BlockingIOError:
            return False
        except OSError:
            self.write_failed = True
            return False


Emit = Callable[[Reply], None]


def exchange(
    channel: Channel,
    requests: list[Request],
    *,
    framed: bool,
    read_timeout: float,
    abort_after_ms: int | None,
    emit: Emit,
) -> list[Reply]:
    """Pipeline ``requests`` and read one reply each, in order.

    The read timeout runs from the last byte that moved either way; while a
    SLEEP's reply is awaited it is extended by the time the SLEEP asked for.
    Raises ClientFailure for a timeout (5) or a truncated or malformed reply (7).
    A final message (a final -ERR, or +BYE) ends the exchange early when the server then closes.
    """
    encode = encode_frame if framed else encode_line
    reader = FrameReader() if framed else LineReader()
    wire = [encode(request.payload) for request in requests]
    outgoing = memoryview(b"".join(wire))
    ends: list[int] = []
    for chunk in wire:
        ends.append((ends[-1] if ends else 0) + len(chunk))
    sent = 0
    sent_at: list[float | None] = [None] * len(requests)  # when each request's last byte went out
    fully_sent = 0  # how many requests have gone out completely
    replies: list[Reply] = []
    final = False
    last_progress = head_since = time.monotonic()
    urgent_sent = False  # for the request at the head of the queue

    while len(replies) < len(requests):
        reply = reader.take(channel.inbuf)
        if reply is not None:
            replies.append(reply)
            emit(reply)
            final = final or reply.is_final
            head_since = time.monotonic()
            urgent_sent = False
            continue
        if channel.eof:
            if final:
                return replies  # the close that follows a final message
            where = (
                f"in the middle of a reply ({len(channel.inbuf)} bytes of it: {show(channel.inbuf)})"
                if channel.inbuf
                else f"before the reply to request {len(replies) + 1} of {len(requests)}"
            )
            raise ClientFailure(Exit.PROTOCOL, f"{channel.eof} {where}")

        head = requests[len(replies)]
        now = time.monotonic()
        extension = head.sleep_ms / 1000
        read_deadline = last_progress + read_timeout + extension
        wake = read_deadline
        head_sent = sent_at[len(replies)]
        if abort_after_ms is not None and head.is_sleep and not urgent_sent and head_sent is not None:
            # Only the request at the head can be running on the server, and it
            # started no earlier than the previous reply: one urgent byte per
            # SLEEP, never two outstanding (CH-CLIENT-21).
            urgent_at = max(head_sent, head_since) + max(abort_after_ms, MIN_ABORT_DELAY_MS) / 1000
            if now >= urgent_at:
                if channel.send_urgent() or channel.write_failed:
                    urgent_sent = True
                    continue
                urgent_at = now + 0.01  # the send buffer is full: try again shortly
            wake = min(wake, urgent_at)
        if now >= read_deadline:
            waited = f"{read_timeout:g} s" + (f" (+ {head.sleep_ms} ms for the SLEEP)" if extension else "")
            raise ClientFailure(Exit.TIMEOUT, f"no reply byte within {waited} for request {len(replies) + 1}")

        want_write = sent < len(outgoing) and not channel.write_failed
        readable, writable = channel.wait(want_write, wake - now)
        if readable and channel.read():
            last_progress = time.monotonic()
        if writable and want_write:
            count = channel.write(outgoing[sent:])
            if count:
                sent += count
                last_progress = time.monotonic()
                while fully_sent < len(ends) and ends[fully_sent] <= sent:
                    sent_at[fully_sent] = last_progress
                    fully_sent += 1
    return replies


class Runner:
    def __init__(self, options: Options, prog: str, out: Callable[[bytes], None], err: Callable[[str], None]):
        self.options = options
        self.prog = prog
        self.out = out
        self.err = err
        self.any_error = False

    def log(self, message: str) -> None:
        if self.options.verbose:
            self.err(f"{self.prog}: {message}")

    def emit(self, reply: Reply) -> None:
        self.any_error = self.any_error or reply.is_error
        self.out(reply.payload + b"\n")

    def run(self) -> Exit:
        options = self.options
        context = None
        if options.tls or options.starttls:
            try:
                context = tls_layer.client_context(options.ca)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ClientFailure(Exit.USAGE, f"cannot load the CA file {options.ca}: {exc}") from None
        start = time.monotonic()
        deadline = start + options.deadline
        addresses = connecting.resolve(options.host, options.port, deadline)
        self.log("resolved " + ", ".join(str(address) for address in addresses))
        sock = connecting.connect(
            addresses,
            attempt_timeout=options.connect_timeout,
            deadline=deadline,
            stagger=0.25 if options.happy_eyeballs else None,
            log=self.log,
        )
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        channel = Channel(sock, sock)
        try:
            if options.tls:
                assert context is not None
                channel = self._upgrade(channel, context)
            if options.starttls:
                assert context is not None
                if not self._switch(channel, b"STARTTLS"):
                    return Exit.ERROR_REPLY
                if channel.inbuf:
                    raise ClientFailure(Exit.PROTOCOL, f"bytes after the +OK to STARTTLS: {show(channel.inbuf)}")
                channel = self._upgrade(channel, context)
            if options.framed and not self._switch(channel, b"FRAMED"):
                return Exit.ERROR_REPLY
            exchange(
                channel,
                [Request(payload) for payload in options.requests],
                framed=options.framed,
                read_timeout=options.read_timeout,
                abort_after_ms=options.abort_after_ms,
                emit=self.emit,
            )
        finally:
            channel.close()
        return Exit.ERROR_REPLY if self.any_error else Exit.OK

    def _upgrade(self, channel: Channel, context: ssl.SSLContext) -> Channel:
        raw = channel.sock.dup()  # urgent data goes below TLS, on the TCP socket itself
        try:
            # An IPv6 literal's zone (fe80::1%eth0) is no part of its identity.
            name = self.options.server_name or self.options.host.partition("%")[0]
            tls = tls_layer.handshake(channel.sock, context, name, self.options.read_timeout)
        except BaseException:
            raw.close()
            raise
        cipher = tls.cipher()
        self.log(f"{tls.version()} with {cipher[0] if cipher else '?'}, certificate verified for {name}")
        return Channel(tls, raw)

    def _switch(self, channel: Channel, command: bytes) -> bool:
        """Send the client's own FRAMED or STARTTLS and wait for its +OK (a line).

        The +OK is not printed: it answers no request of the user's. An -ERR
        reply (BUSY, say) is printed and ends the run with status 1; any other
        reply is a protocol error, and no handshake is started (CH-CLIENT-19).
        """
        replies: list[Reply] = []
        exchange(
            channel,
            [Request(command)],
            framed=False,
            read_timeout=self.options.read_timeout,
            abort_after_ms=None,
            emit=replies.append,
        )
        reply = replies[0]
        if reply.payload == b"+OK":
            return True
        if reply.is_error:
            self.emit(reply)
            return False
        raise ClientFailure(Exit.PROTOCOL, f"unexpected reply to {command.decode()}: {show(reply.payload)}")
