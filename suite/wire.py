"""The suite's own client side of a connection: every operation has a
deadline, every byte is kept in a transcript, and the way a connection ended
(clean close, reset, or nothing before the deadline) is kept apart."""

from __future__ import annotations

import select
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from enum import Enum


class Ending(Enum):
    OPEN = "open"  # nothing ended it (yet)
    FIN = "clean close (FIN)"
    RST = "reset (RST)"
    TIMEOUT = "no answer before the deadline"


@dataclass(frozen=True)
class Record:
    at: float  # seconds since the connection was opened
    direction: str  # "TX", "TX-URGENT", "RX", "RX-URGENT", or "--" for notes (the report schema lists them)
    data: bytes


@dataclass
class Transcript:
    started: float = field(default_factory=time.monotonic)
    records: list[Record] = field(default_factory=list)
    title: str = "Wire transcript (seconds since connect):"
    label: str = ""  # which connection, as the check named it ("connection 2")

    def add(self, direction: str, data: bytes) -> None:
        self.records.append(Record(time.monotonic() - self.started, direction, data))

    def received(self) -> bytes:
        return b"".join(r.data for r in self.records if r.direction == "RX")


class WireTimeout(Exception):
    pass


class Wire:
    """One TCP (optionally TLS) connection to a target."""

    def __init__(self, sock: socket.socket, transcript: Transcript | None = None) -> None:
        self.sock = sock
        self.transcript = transcript or Transcript()
        self.ending = Ending.OPEN
        self._buffer = bytearray()
        self.sock.setblocking(False)

    # ---- opening -----------------------------------------------------------

    @classmethod
    def connect(cls, host: str, port: int, timeout: float = 5.0, nodelay: bool = True) -> Wire:
        sock = socket.create_connection((host, port), timeout=timeout)
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wire = cls(sock)
        wire.transcript.add("--", f"connected to {host}:{port}".encode())
        return wire

    @classmethod
    def connect_tls(
        cls,
        host: str,
        port: int,
        context: ssl.SSLContext,
        server_hostname: str | None = "localhost",
        timeout: float = 5.0,
    ) -> Wire:
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.settimeout(timeout)
        try:
            tls = context.wrap_socket(raw, server_hostname=server_hostname)
        except BaseException:
            raw.close()
            raise
        wire = cls(tls)
        wire.transcript.add("--", f"TLS {tls.version()} to {host}:{port}".encode())
        return wire

    def start_tls(
        self, context: ssl.SSLContext, server_hostname: str | None = "localhost", timeout: float = 5.0
    ) -> None:
        """Upgrade in place (after STARTTLS's +OK); bytes already buffered stay plaintext."""
        self.sock.setblocking(True)
        self.sock.settimeout(timeout)
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        self.sock.setblocking(False)
        self.transcript.add("--", f"TLS {self.sock.version()} started".encode())

    # ---- sending -----------------------------------------------------------

    def send(self, data: bytes, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            self._wait(select.POLLOUT, deadline)
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                continue
            self.transcript.add("TX", bytes(view[:sent]))
            view = view[sent:]

    def send_urgent(self, byte: bytes = b"!") -> None:
        """One byte of TCP urgent data (MSG_OOB). Only the last byte of an OOB
        send is urgent, so send exactly one."""
        assert len(byte) == 1
        self.transcript.add("TX-URGENT", byte)
        # Urgent data bypasses TLS: send on the TCP socket beneath any wrapper.
        socket.socket.send(self.sock, byte, socket.MSG_OOB)

    def shutdown_write(self) -> None:
        self.transcript.add("--", b"client shut down its write side")
        self.sock.shutdown(socket.SHUT_WR)

    # ---- receiving ---------------------------------------------------------

    def _wait(self, events: int, deadline: float) -> None:
        if isinstance(self.sock, ssl.SSLSocket) and events & select.POLLIN and self.sock.pending():
            return
        poller = select.poll()
        poller.register(self.sock.fileno(), events)
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            raise WireTimeout

    def _fill(self, deadline: float) -> bool:
        """Read what has arrived; False once the peer has ended the connection."""
        if self.ending is not Ending.OPEN:
            return False
        self._wait(select.POLLIN, deadline)
        try:
            chunk = self.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError):
            return True
        except ConnectionResetError:
            self.ending = Ending.RST
            self.transcript.add("--", b"connection reset (RST)")
            return False
        except ssl.SSLError as error:
            self.ending = Ending.RST
            self.transcript.add("--", f"TLS error: {error}".encode())
            return False
        if not chunk:
            self.ending = Ending.FIN
            self.transcript.add("--", b"connection closed (FIN)")
            return False
        self.transcript.add("RX", chunk)
        self._buffer += chunk
        return True

    def receive_available(self, timeout: float = 0.05) -> bytes:
        """Read once what has arrived, keep it buffered (see pending), and
        return it; b"" if nothing came (a TLS record without data, say)."""
        before = len(self._buffer)
        try:
            self._fill(time.monotonic() + timeout)
        except WireTimeout:
            pass
        return bytes(self._buffer[before:])

    def read_exactly(self, size: int, timeout: float = 5.0) -> bytes:
        """``size`` bytes, or fewer if the connection ends or the deadline passes."""
        deadline = time.monotonic() + timeout
        try:
            while len(self._buffer) < size and self._fill(deadline):
                pass
        except WireTimeout:
            pass
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def read_line(self, timeout: float = 5.0, limit: int = 1 << 22) -> bytes | None:
        """One response line including its CRLF; None on end or deadline."""
        deadline = time.monotonic() + timeout
        try:
            while b"\n" not in self._buffer and len(self._buffer) < limit:
                if not self._fill(deadline):
                    break
        except WireTimeout:
            pass
        end = self._buffer.find(b"\n")
        if end < 0:
            return None
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        return line

    def read_lines(self, count: int, timeout: float = 5.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        lines = []
        for _ in range(count):
            line = self.read_line(max(0.0, deadline - time.monotonic()))
            if line is None:
                break
            lines.append(line)
        return lines

    def read_frame(self, timeout: float = 5.0) -> bytes | None:
        """One frame's payload; None on end or deadline."""
        deadline = time.monotonic() + timeout
        header = self.read_exactly(4, timeout)
        if len(header) < 4:
            self._buffer[:0] = header
            return None
        (length,) = FRAME_HEADER.unpack(header)
        body = self.read_exactly(length, max(0.0, deadline - time.monotonic()))
        if len(body) < length:
            self._buffer[:0] = header + body
            return None
        return body

    def wait_for_end(self, timeout: float = 5.0) -> Ending:
        """Read (and keep) everything until the peer ends the connection or the deadline."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
        except WireTimeout:
            return Ending.TIMEOUT
        return self.ending

    def pending(self) -> bytes:
        """Received but not yet consumed by a read_* call."""
        return bytes(self._buffer)

    def unread(self, data: bytes) -> None:
        """Give back bytes a reader took too far: they are pending again, first."""
        self._buffer[:0] = data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Section 8: a frame is a 4-byte unsigned big-endian length, then that many bytes.
FRAME_HEADER = struct.Struct(">I")


def frame_header(length: int) -> bytes:
    """The 4 header bytes announcing ``length`` payload bytes (any N up to 0xFFFFFFFF)."""
    return FRAME_HEADER.pack(length)


def frame(payload: bytes) -> bytes:
    return frame_header(len(payload)) + payload
