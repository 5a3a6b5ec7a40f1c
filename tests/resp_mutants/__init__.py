"""Mutant RESP2 servers: the student server (tests/servers/resp_student.py)
with one bug each, a bug that Redis clones really have.

    python -m tests.resp_mutants NAME --port 6380 [--timeout 1 --maxclients 4 ...]
    python -m tests.resp_mutants --list

``requirements`` names the PROTOCOL-RESP2.md requirements the bug breaks for
certain: the sensitivity test (tests/test_resp_profile.py) runs each mutant
with --only those IDs and requires every one of them to fail. A patch is as
small as the bug: it replaces one function or method of the student server
with a copy that has that line wrong. Nothing runs unless ``apply()`` is
called, in the process that is about to become the server.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.servers import resp_student as student


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    requirements: tuple[str, ...]
    apply: Callable[[], None]


MUTANTS: dict[str, Mutant] = {}


def _mutant(name: str, *requirements: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Register the decorated patch; its docstring is the description."""

    def register(apply: Callable[[], None]) -> Callable[[], None]:
        if name in MUTANTS or not requirements:
            raise ValueError(f"mutant {name}: a duplicate, or no requirement")
        MUTANTS[name] = Mutant(name, " ".join((apply.__doc__ or "").split()), requirements, apply)
        return apply

    return register


# ---- framing -------------------------------------------------------------------------------


@_mutant("bulk-length-in-characters", "R2-FRAME-5")
def _bulk_length_in_characters() -> None:
    """Counts a bulk string's length in characters of the decoded text, not in bytes: any argument with
    UTF-8 beyond ASCII takes bytes of what follows."""

    def take_bulk(buffer: bytearray, start: int, length: int) -> tuple[bytes, int] | None:
        text = bytes(buffer[start:]).decode("utf-8", "replace")
        if len(text) < length + 2:
            return None
        word = text[:length].encode("utf-8", "surrogateescape")
        return word, start + len(word) + 2

    student.take_bulk = take_bulk


@_mutant("crlf-ends-bulk", "R2-FRAME-5")
def _crlf_ends_bulk() -> None:
    """Reads a bulk string up to the next CR LF instead of by its length: a value holding CR LF is cut
    there, and the rest is taken for the next request."""

    def take_bulk(buffer: bytearray, start: int, length: int) -> tuple[bytes, int] | None:
        end = buffer.find(b"\r\n", start)
        if end < 0:
            return None
        return bytes(buffer[start:end]), end + 2

    student.take_bulk = take_bulk


@_mutant("first-command-per-read", "R2-FRAME-4")
def _first_command_per_read() -> None:
    """Parses only the first command of each recv(): the rest of the chunk, pipelined requests
    included, is dropped."""

    def answer_all(self: student.Connection) -> None:
        try:
            words = student.parse_request(self.buffer)
        except student.ProtocolError as error:
            self.protocol_error(str(error))
            return
        if words:
            self.send(self.execute(words))
        if words is not None:
            self.buffer.clear()

    student.Connection.answer_all = answer_all  # type: ignore[method-assign]


@_mutant("no-inline", "R2-FRAME-2")
def _no_inline() -> None:
    """Knows only multibulk arrays: an inline command is answered as a protocol error."""

    def parse_inline(buffer: bytearray) -> list[bytes] | None:
        raise student.ProtocolError("expected '*'")

    student.parse_inline = parse_inline


@_mutant("fin-drops-replies", "R2-FRAME-6")
def _fin_drops_replies() -> None:
    """Closes at once when the client has shut down its side, without answering the requests that
    arrived with the FIN ("nobody is listening any more")."""
    original = student.Connection.answer_all

    def answer_all(self: student.Connection) -> None:
        try:
            gone = self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, OSError):
            gone = False
        if gone:
            self.closing = True
            return
        original(self)

    student.Connection.answer_all = answer_all  # type: ignore[method-assign]


# ---- errors --------------------------------------------------------------------------------


@_mutant("unknown-command-closes", "R2-ERR-1")
def _unknown_command_closes() -> None:
    """Answers an unknown command and then closes the connection, as if it were a protocol error."""
    original = student.Connection.execute

    def execute(self: student.Connection, words: list[bytes]) -> bytes:
        if words[0].upper() not in student.ARITY:
            self.closing = True
        return original(self, words)

    student.Connection.execute = execute  # type: ignore[method-assign]


@_mutant("arity-unchecked", "R2-ERR-2")
def _arity_unchecked() -> None:
    """Never checks the number of arguments: GET without a key fails inside the server (IndexError),
    which takes the connection down."""

    def execute(self: student.Connection, words: list[bytes]) -> bytes:
        name = words[0].upper()
        if name not in student.COMMANDS:
            return b"-ERR unknown command '" + words[0] + b"'\r\n"
        try:
            return student.COMMANDS[name](self, words)
        except IndexError:
            self.closing = True
            return b""

    student.Connection.execute = execute  # type: ignore[method-assign]


@_mutant("lax-integers", "R2-ERR-3")
def _lax_integers() -> None:
    """Takes INCR's value with Python's int(), which accepts spaces around the digits, '+5' and
    '1_000': values that are no integer to Redis are incremented."""

    def as_integer(value: bytes) -> int | None:
        try:
            return int(value)
        except ValueError:
            return None

    student.as_integer = as_integer


@_mutant("incr-no-overflow", "R2-ERR-4")
def _incr_no_overflow() -> None:
    """No 64-bit bound on INCR: Python's integers grow, and 9223372036854775807 + 1 is answered."""

    def incr_value(values: dict[bytes, bytes], key: bytes) -> bytes:
        number = student.as_integer(values.get(key, b"0"))
        if number is None:
            return b"-ERR value is not an integer or out of range\r\n"
        values[key] = b"%d" % (number + 1)
        return b":%d\r\n" % (number + 1)

    student.incr_value = incr_value


@_mutant("protocol-error-resyncs", "R2-ERR-5")
def _protocol_error_resyncs() -> None:
    """After a malformed multibulk header, answers the error and skips to the next line instead of
    closing: whatever followed the bad header is executed as if it were requests."""

    def protocol_error(self: student.Connection, text: str) -> None:
        self.send(b"-ERR Protocol error: " + text.encode() + b"\r\n")
        end = self.buffer.find(b"\n")
        del self.buffer[: end + 1 if end >= 0 else len(self.buffer)]
        self.answer_all()

    student.Connection.protocol_error = protocol_error  # type: ignore[method-assign]


@_mutant("unbounded-inline", "R2-ERR-6")
def _unbounded_inline() -> None:
    """No limit on an inline request: a line without LF is buffered for ever."""

    def parse_inline(buffer: bytearray) -> list[bytes] | None:
        end = buffer.find(b"\n")
        if end < 0:
            return None
        line = bytes(buffer[:end]).removesuffix(b"\r")
        del buffer[: end + 1]
        return line.split()

    student.parse_inline = parse_inline


# ---- store ---------------------------------------------------------------------------------


@_mutant("store-per-connection", "R2-STORE-1")
def _store_per_connection() -> None:
    """Each connection gets a store of its own, made in the connection's constructor."""
    original = student.Connection.__init__

    def __init__(self: student.Connection, server: student.Server, sock: socket.socket) -> None:
        original(self, server, sock)
        self.store = student.Store()

    student.Connection.__init__ = __init__  # type: ignore[method-assign]


@_mutant("incr-race", "R2-STORE-3")
def _incr_race() -> None:
    """INCR reads the value under the lock and writes it back under the lock, but lets go in between:
    two connections can read the same value, and an update is lost."""

    def incr(self: student.Store, key: bytes) -> bytes:
        with self.lock:
            current = {key: self.values.get(key, b"0")}
        time.sleep(0.002)  # the rest of a real server's INCR: parsing, checking, allocating
        reply = student.incr_value(current, key)
        with self.lock:
            self.values[key] = current[key]
        return reply

    student.Store.incr = incr  # type: ignore[method-assign]


# ---- timeout, limit, concurrency -----------------------------------------------------------


@_mutant("no-idle-timeout", "R2-TIMEOUT-1")
def _no_idle_timeout() -> None:
    """Parses --timeout and never uses it: idle clients stay for ever."""
    original = student.Server.__init__

    def __init__(self: student.Server, options: argparse.Namespace) -> None:
        original(self, options)
        self.timeout = 0

    student.Server.__init__ = __init__  # type: ignore[method-assign]


@_mutant("no-maxclients", "R2-LIMIT-1")
def _no_maxclients() -> None:
    """Counts its clients but admits every one: maxclients is not enforced."""

    def admit(self: student.Server) -> bool:
        with self.clients_lock:
            self.clients += 1
            return True

    student.Server.admit = admit  # type: ignore[method-assign]


@_mutant("one-connection-at-a-time", "R2-CONC-1", "R2-CONC-2")
def _one_connection_at_a_time() -> None:
    """A blocking read per connection in a single thread: each accepted connection is served to its
    end before the next is accepted."""

    def start(self: student.Server, sock: socket.socket, is_tls: bool) -> None:
        self.handle(sock, is_tls)

    student.Server.start = start  # type: ignore[method-assign]


@_mutant("blpop-holds-the-lock", "R2-CONC-1")
def _blpop_holds_the_lock() -> None:
    """BLPOP waits by sleeping with the store's lock held, so every other command waits with it."""

    def blpop(self: student.Store, key: bytes, seconds: float) -> bytes:
        deadline = time.monotonic() + seconds
        with self.lock:
            while not self.lists.get(key):
                if time.monotonic() >= deadline:
                    return b"*-1\r\n"
                time.sleep(0.01)
            value = self.lists[key].pop(0)
        return b"*2\r\n" + student.bulk(key) + student.bulk(value)

    student.Store.blpop = blpop  # type: ignore[method-assign]


# ---- urgent data, TLS, lifecycle -----------------------------------------------------------


@_mutant("oob-inline", "R2-URGENT-1")
def _oob_inline() -> None:
    """Turns SO_OOBINLINE on for every client ("so that no byte is lost"): an urgent byte lands in
    the middle of the request."""
    original = student.Server.start

    def start(self: student.Server, sock: socket.socket, is_tls: bool) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        original(self, sock, is_tls)

    student.Server.start = start  # type: ignore[method-assign]


@_mutant("tls-1.0-allowed", "R2-TLS-2")
def _tls_1_0_allowed() -> None:
    """Builds its TLS context with TLS 1.0 as the minimum ("for old clients")."""

    def tls_context(cert: str, key: str) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.load_cert_chain(cert, key)
        return context

    student.tls_context = tls_context


@_mutant("sigterm-waits-for-clients", "R2-LIFE-1")
def _sigterm_waits_for_clients() -> None:
    """On SIGTERM stops accepting, then waits for every client to leave before it exits."""
    original = student.Server.run

    def run(self: student.Server) -> None:
        original(self)
        while True:
            with self.clients_lock:
                if self.clients == 0:
                    return
            time.sleep(0.05)

    student.Server.run = run  # type: ignore[method-assign]
