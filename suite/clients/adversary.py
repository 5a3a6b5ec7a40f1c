"""The servers the suite plays for a client under test.

An Adversary listens on one port (on every address given, so that a name
with an A and an AAAA record reaches it either way), and hands each accepted
connection to a script: answer, answer one byte per segment, never answer,
close in the middle of a reply, send garbage. It works out the client's mode
by itself, the way a CloudHash/1 server would meet it: a TLS ClientHello
(implicit TLS), a STARTTLS line, a FRAMED line, or plain requests. Every
byte both ways goes into a transcript, with what the TLS handshake saw (SNI,
version, or why it failed), for the explanation of a failure.

Every operation has a deadline; the thread never outlives the scenario.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..wire import Transcript

TITLE = "Wire transcript (seconds since the client connected; TX: the suite's server, RX: the client):"
MAX_REQUEST = 1 << 16
FRAME_HEADER = struct.Struct("!I")
SEGMENT_GAP = 0.003  # between one-byte segments, so that each leaves on its own


class ClientGone(Exception):
    """The client closed or reset the connection, or went silent past the deadline."""


@dataclass
class Exchange:
    """One connection, as the suite's server saw it."""

    peer: str
    transcript: Transcript = field(default_factory=lambda: Transcript(title=TITLE))
    mode: str = "plain"  # plain, tls or starttls
    framed: bool = False
    sni: str | None = None
    tls_version: str | None = None
    handshake_error: str | None = None
    requests: list[bytes] = field(default_factory=list)
    request_at: float | None = None  # monotonic time the last request was complete
    closed_at: float | None = None  # monotonic time the client's FIN or RST arrived
    urgent_at: list[float] = field(default_factory=list)  # monotonic times of urgent bytes
    replied_at: float | None = None  # monotonic time the last reply was sent
    problems: list[str] = field(default_factory=list)  # protocol breaches the server noticed
    error: str = ""  # the script's own failure (a harness problem)

    def note(self, text: str) -> None:
        self.transcript.add("--", text.encode())


class Session:
    """The script's handle on one connection."""

    def __init__(self, sock: socket.socket, exchange: Exchange, adversary: Adversary) -> None:
        self.sock = sock  # an SSLSocket once TLS is up; the descriptor stays the TCP socket's
        self.exchange = exchange
        self.adversary = adversary
        self.buffer = bytearray()

    # ---- reading ---------------------------------------------------------------

    def _left(self) -> float:
        return self.adversary.deadline - time.monotonic()

    def _receive(self, limit: float | None = None) -> bytes:
        """Some bytes (b"" on the client's FIN); ClientGone on reset or deadline."""
        timeout = self._left() if limit is None else min(limit, self._left())
        if timeout <= 0:
            raise ClientGone("the scenario's deadline passed")
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            timeout = 0.001
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            raise ClientGone("the client sent nothing before the deadline") from None
        except (ConnectionError, ssl.SSLError, OSError) as error:
            self.exchange.closed_at = time.monotonic()
            self.exchange.note(f"the client's side ended: {error}")
            raise ClientGone(str(error)) from None
        if not data:
            self.exchange.closed_at = time.monotonic()
            self.exchange.note("the client closed its side (FIN)")
            raise ClientGone("FIN")
        self.exchange.transcript.add("RX", data)
        return data

    def more(self) -> None:
        """Read what arrives next into ``buffer``, for a script that parses requests
        itself (another profile's); ClientGone at the client's FIN, reset or the deadline."""
        self.buffer += self._receive()

    def _read_line(self) -> bytes:
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_REQUEST:
                raise ClientGone("a request line longer than 64 KiB")
            self.buffer += self._receive()
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer[:] = rest
        return line.removesuffix(b"\r")

    def _read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self.buffer += self._receive()
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def request(self) -> bytes:
        """The client's next request, in its mode; FRAMED and STARTTLS are
        answered here, as any server answers them."""
        while True:
            if self.exchange.framed:
                header = self._read_exactly(FRAME_HEADER.size)
                (length,) = FRAME_HEADER.unpack(header)
                if length > MAX_REQUEST:
                    little = int.from_bytes(header, "little")
                    hint = f" (read little-endian it would be {little})" if little <= MAX_REQUEST else ""
                    self.exchange.problems.append(f"a frame header of {length} bytes{hint}: {header.hex(' ')}")
                    raise ClientGone("an impossible frame header")
                payload = self._read_exactly(length)
            else:
                payload = self._read_line()
                if not payload:
                    continue  # an empty line is no request
            self.exchange.requests.append(payload)
            self.exchange.request_at = time.monotonic()
            if not self.exchange.framed and payload.upper() == b"FRAMED":
                self.send(b"+OK\r\n")
                self.exchange.framed = True
                continue
            if self.exchange.mode == "plain" and payload.upper() == b"STARTTLS":
                self.adversary.on_starttls(self)
                continue
            return payload

    def wait_for_close(self, limit: float) -> bool:
        """Read (and record) whatever comes until the client closes: True if it
        did within ``limit`` seconds."""
        end = time.monotonic() + limit
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            try:
                self._receive(left)
            except ClientGone:
                return self.exchange.closed_at is not None

    def watch_urgent(self, limit: float) -> None:
        """Watch for urgent bytes for ``limit`` seconds (normal bytes are kept
        for request())."""
        self._watch(limit, read_stream=False)

    def watch_urgent_until_close(self, limit: float) -> None:
        """Watch for urgent bytes, and read (and record) the normal stream, until
        the client closes or ``limit`` seconds pass: what a client sends once it
        has its reply, up to its close."""
        self._watch(limit, read_stream=True)

    def _watch(self, limit: float, *, read_stream: bool) -> None:
        end = time.monotonic() + limit
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLPRI | (select.POLLIN if read_stream else 0))
        while (left := end - time.monotonic()) > 0:
            pending_tls = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
            events = [] if pending_tls else poller.poll(left * 1000)
            flags = events[0][1] if events else 0
            if flags & select.POLLPRI:
                self._take_urgent()
            if read_stream and (pending_tls or flags & (select.POLLIN | select.POLLHUP | select.POLLERR)):
                try:
                    self.buffer += self._receive(min(0.05, max(0.001, end - time.monotonic())))
                except ClientGone:
                    if self.exchange.closed_at is not None:
                        return  # the client closed: nothing can follow
                continue
            if events and not flags & select.POLLPRI:
                return  # hung up or failed (poll reports those unasked): no urgent byte can follow

    def _take_urgent(self) -> None:
        # A plain socket object over the same descriptor: SSLSocket refuses MSG_OOB.
        with socket.socket(fileno=os.dup(self.sock.fileno())) as plain:
            plain.setblocking(False)
            try:
                byte = plain.recv(1, socket.MSG_OOB)
            except (BlockingIOError, OSError):
                return
        self.exchange.urgent_at.append(time.monotonic())
        self.exchange.transcript.add("RX-URGENT", byte)

    # ---- writing ---------------------------------------------------------------

    def send(self, data: bytes, *, segment: int | None = None) -> None:
        pieces = [data[i : i + segment] for i in range(0, len(data), segment)] if segment else [data]
        for index, piece in enumerate(pieces):
            if index:
                threading.Event().wait(SEGMENT_GAP)  # pacing, not synchronisation
            self.sock.settimeout(max(0.001, self._left()))
            try:
                self.sock.sendall(piece)
            except (OSError, ssl.SSLError) as error:
                self.exchange.note(f"sending failed: {error}")
                raise ClientGone(str(error)) from None
            self.exchange.transcript.add("TX", piece)

    def reply(self, payload: bytes, *, segment: int | None = None) -> None:
        """One response, encoded for the client's mode."""
        data = FRAME_HEADER.pack(len(payload)) + payload if self.exchange.framed else payload + b"\r\n"
        self.send(data, segment=segment)
        self.exchange.replied_at = time.monotonic()

    def close(self) -> None:
        """A clean close (FIN), after TLS's close_notify."""
        with contextlib.suppress(OSError, ssl.SSLError):
            if isinstance(self.sock, ssl.SSLSocket):
                self.sock.settimeout(0.5)
                self.sock = self.sock.unwrap()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        self.exchange.note("the suite's server closed its side (FIN)")

    def reset(self) -> None:
        """An abortive close (RST), without TLS's close_notify."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
        self.exchange.note("the suite's server reset the connection (RST)")


Script = Callable[[Session], None]


def answer(reply: bytes, *, segment: int | None = None) -> Script:
    """The ordinary server: one reply to one request, then wait for the client to go."""

    def script(session: Session) -> None:
        session.request()
        session.reply(reply, segment=segment)
        session.wait_for_close(session.adversary.linger)

    return script


class Adversary:
    """``with Adversary(hosts, script, tls=context) as server:`` then run the
    client against ``server.port``; ``server.exchanges`` afterwards."""

    def __init__(
        self,
        hosts: list[str],
        script: Script,
        *,
        tls: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        linger: float = 10.0,
        starttls_pause: float = 0.0,
        starttls_refusal: bytes | None = None,
    ) -> None:
        self.hosts = hosts
        self.script = script
        self.tls = tls
        self.timeout = timeout
        self.linger = linger  # how long the ordinary server waits for the client to leave
        self.starttls_pause = starttls_pause  # pause inside "+OK\r\n" of STARTTLS
        self.starttls_refusal = starttls_refusal  # the answer to STARTTLS instead of +OK
        self.deadline = time.monotonic() + timeout
        self.exchanges: list[Exchange] = []
        self.port = 0
        self._listeners: list[socket.socket] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    # ---- lifecycle -------------------------------------------------------------

    def __enter__(self) -> Adversary:
        self._listen()
        self.deadline = time.monotonic() + self.timeout
        acceptor = threading.Thread(target=self._accept_loop, name="adversary accept", daemon=True)
        acceptor.start()
        self._threads.append(acceptor)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.close()
        with self._lock:
            for sock in self._sockets:  # wakes a script blocked in recv
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=5.0)

    def finished(self, limit: float) -> bool:
        """Wait until every connection's script has ended (True) or ``limit`` passes."""
        end = time.monotonic() + limit
        for thread in list(self._threads[1:]):
            thread.join(max(0.0, end - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads[1:])

    def _listen(self) -> None:
        for _attempt in range(5):
            listeners: list[socket.socket] = []
            try:
                port = 0
                for host in self.hosts:
                    family = socket.AF_INET6 if ":" in host else socket.AF_INET
                    listener = socket.socket(family, socket.SOCK_STREAM)
                    listeners.append(listener)
                    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    listener.bind((host, port))
                    listener.listen(64)
                    port = listener.getsockname()[1]
            except OSError:
                for listener in listeners:
                    listener.close()
                continue  # the port was free on one address and not on another: another port
            self._listeners, self.port = listeners, port
            return
        raise OSError(f"cannot listen on one port on all of {self.hosts}")

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select(self._listeners, [], [], 0.05)
            except (OSError, ValueError):
                return
            for listener in ready:
                try:
                    sock, peer = listener.accept()
                except OSError:
                    continue
                exchange = Exchange(peer=str(peer[0]))
                with self._lock:
                    self.exchanges.append(exchange)
                    self._sockets.append(sock)
                worker = threading.Thread(target=self._serve, args=(sock, exchange), name="adversary", daemon=True)
                self._threads.append(worker)
                worker.start()

    # ---- one connection ----------------------------------------------------------

    def _serve(self, sock: socket.socket, exchange: Exchange) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = Session(sock, exchange, self)
        try:
            if self._starts_with_tls(sock):
                exchange.mode = "tls"
                self._handshake(session)
            self.script(session)
        except ClientGone:
            pass
        except Exception as error:  # the suite's own bug: shown as a harness error
            exchange.error = f"{type(error).__name__}: {error}"
        finally:
            with contextlib.suppress(OSError):
                session.sock.close()
            with contextlib.suppress(OSError):
                sock.close()

    def _starts_with_tls(self, sock: socket.socket) -> bool:
        sock.settimeout(max(0.001, self.deadline - time.monotonic()))
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except OSError:
            return False
        return first == b"\x16"  # a TLS handshake record; no CloudHash/1 request starts so

    def on_starttls(self, session: Session) -> None:
        session.exchange.mode = "starttls"
        if self.starttls_refusal is not None:
            session.send(self.starttls_refusal + b"\r\n")
            # After any answer but +OK the client sends nothing more: no handshake, and
            # no request in plaintext (CH-CLIENT-19). What follows the STARTTLS line may
            # have arrived with it already.
            with contextlib.suppress(ClientGone):
                while not session.buffer:
                    session.buffer += session._receive(self.linger)
            if not session.buffer:
                raise ClientGone("STARTTLS refused, and the client sent nothing more")
            if session.buffer[:1] == b"\x16":
                session.exchange.problems.append("the client started a TLS handshake although STARTTLS was refused")
                raise ClientGone("STARTTLS refused")
            session.exchange.problems.append(
                f"the client sent {bytes(session.buffer[:60])!r} in plaintext although STARTTLS was refused"
            )
            return  # served in plaintext, as a server without TLS would: the breach is recorded, not punished twice
        if self.starttls_pause:
            session.send(b"+O")
            # The client must send nothing until the whole +OK has arrived (CH-CLIENT-19).
            with contextlib.suppress(ClientGone):
                early = session._receive(self.starttls_pause)
                session.exchange.problems.append(f"the client sent {early!r} before the whole +OK had arrived")
                session.buffer[:0] = early
            session.send(b"K\r\n")
        else:
            session.send(b"+OK\r\n")
        if session.buffer and session.buffer[:1] == b"\x16" and not session.exchange.problems:
            session.exchange.problems.append("the client sent its handshake before the +OK had arrived")
        self._handshake(session)

    def _handshake(self, session: Session) -> None:
        exchange = session.exchange
        if self.tls is None:
            exchange.handshake_error = "this scenario serves no TLS"
            exchange.note("the client started TLS where the scenario serves plaintext")
            raise ClientGone("unexpected TLS")
        context = self.tls

        def remember_sni(sslobj: ssl.SSLObject | ssl.SSLSocket, name: str | None, ctx: ssl.SSLContext) -> None:
            exchange.sni = name

        context.sni_callback = remember_sni
        session.sock.settimeout(max(0.001, self.deadline - time.monotonic()))
        try:
            wrapped = context.wrap_socket(session.sock, server_side=True)
        except (ssl.SSLError, OSError) as error:
            exchange.handshake_error = getattr(error, "reason", None) or str(error) or type(error).__name__
            exchange.note(f"TLS handshake failed: {error}")
            raise ClientGone("handshake failed") from None
        exchange.tls_version = wrapped.version()
        exchange.note(f"TLS handshake done: {exchange.tls_version}, SNI {exchange.sni!r}")
        session.sock = wrapped
