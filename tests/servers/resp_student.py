"""A Redis-compatible server written as a student would write it from the
RESP specification and PROTOCOL-RESP2.md: the correct server of the RESP2
profile's self-test. tests/resp_mutants/ are named variants of it, each with
one bug that Redis clones really have.

    python tests/servers/resp_student.py --port 6380 [--tls-port 6381 --cert C --key K]
        [--timeout SECONDS] [--maxclients N]

Standard library only. One thread per connection, each with a blocking read
(a socket timeout is the idle timeout), one lock around the store. It speaks
PING, ECHO, SET, GET, DEL, INCR, LPUSH, BLPOP, INFO and QUIT, in multibulk and
inline form. The parts a mutant replaces are small named functions and
methods: ``take_bulk``, ``parse_inline``, ``Connection.serve``, and so on.
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable

MAX_INLINE = 64 * 1024  # Redis's PROTO_INLINE_MAX_SIZE
MAX_BULK = 512 * 1024 * 1024
MAX_MULTIBULK = 1024 * 1024
HANDSHAKE_TIMEOUT = 5.0
INTEGER = re.compile(rb"-?(0|[1-9][0-9]*)")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ProtocolError(Exception):
    """The stream cannot be read on: answer -ERR Protocol error and close."""


# ---- the request parser -----------------------------------------------------------------


def parse_request(buffer: bytearray) -> list[bytes] | None:
    """Take one request off the front of ``buffer``: its words ([] for an empty
    line or array), or None when more bytes are needed."""
    if buffer[:1] == b"*":
        return parse_multibulk(buffer)
    return parse_inline(buffer)


def parse_inline(buffer: bytearray) -> list[bytes] | None:
    end = buffer.find(b"\n")
    if end < 0:
        if len(buffer) > MAX_INLINE:
            raise ProtocolError("too big inline request")
        return None
    line = bytes(buffer[:end]).removesuffix(b"\r")
    del buffer[: end + 1]
    return line.split()


def _number(text: bytes, what: str) -> int:
    if not re.fullmatch(rb"-?[0-9]+", text):
        raise ProtocolError(f"invalid {what}")
    return int(text)


def parse_multibulk(buffer: bytearray) -> list[bytes] | None:
    end = buffer.find(b"\r\n")
    if end < 0:
        if len(buffer) > MAX_INLINE:
            raise ProtocolError("too big mbulk count string")
        return None
    count = _number(bytes(buffer[1:end]), "multibulk length")
    if count > MAX_MULTIBULK:
        raise ProtocolError("invalid multibulk length")
    position = end + 2
    words: list[bytes] = []
    for _ in range(max(count, 0)):
        if position >= len(buffer):
            return None
        if buffer[position : position + 1] != b"$":
            raise ProtocolError(f"expected '$', got '{chr(buffer[position])}'")
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        length = _number(bytes(buffer[position + 1 : line_end]), "bulk length")
        if not 0 <= length <= MAX_BULK:
            raise ProtocolError("invalid bulk length")
        taken = take_bulk(buffer, line_end + 2, length)
        if taken is None:
            return None
        word, position = taken
        words.append(word)
    del buffer[:position]
    return words


def take_bulk(buffer: bytearray, start: int, length: int) -> tuple[bytes, int] | None:
    """The ``length`` bytes of a bulk string at ``start`` and the offset after its CR LF."""
    if len(buffer) < start + length + 2:
        return None
    if buffer[start + length : start + length + 2] != b"\r\n":
        raise ProtocolError("expected CR LF after a bulk string")
    return bytes(buffer[start : start + length]), start + length + 2


# ---- the store --------------------------------------------------------------------------


class Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.values: dict[bytes, bytes] = {}
        self.lists: dict[bytes, list[bytes]] = {}

    def incr(self, key: bytes) -> bytes:
        with self.lock:
            return incr_value(self.values, key)

    def blpop(self, key: bytes, seconds: float) -> bytes:
        deadline = time.monotonic() + seconds if seconds > 0 else None
        with self.changed:
            while not self.lists.get(key):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return b"*-1\r\n"
                self.changed.wait(left)
            value = self.lists[key].pop(0)
        return b"*2\r\n" + bulk(key) + bulk(value)


def incr_value(values: dict[bytes, bytes], key: bytes) -> bytes:
    current = values.get(key, b"0")
    number = as_integer(current)
    if number is None:
        return b"-ERR value is not an integer or out of range\r\n"
    if number >= INT64_MAX:
        return b"-ERR increment or decrement would overflow\r\n"
    values[key] = b"%d" % (number + 1)
    return b":%d\r\n" % (number + 1)


def as_integer(value: bytes) -> int | None:
    if not INTEGER.fullmatch(value):
        return None
    number = int(value)
    return number if INT64_MIN <= number <= INT64_MAX else None


def bulk(data: bytes | None) -> bytes:
    return b"$-1\r\n" if data is None else b"$%d\r\n%s\r\n" % (len(data), data)


# ---- one connection ---------------------------------------------------------------------

ARITY = {b"PING": 1, b"ECHO": 2, b"SET": 3, b"GET": 2, b"DEL": 2, b"INCR": 2, b"LPUSH": 3, b"BLPOP": 3}
ARITY.update({b"INFO": 1, b"QUIT": 1})


class Connection:
    def __init__(self, server: Server, sock: socket.socket) -> None:
        self.server = server
        self.store = server.store
        self.sock = sock
        self.buffer = bytearray()
        self.closing = False

    def serve(self) -> None:
        """Read, answer every whole request, repeat; the socket timeout is the idle timeout."""
        self.sock.settimeout(self.server.timeout or None)
        while not self.closing:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, OSError):
                return  # idle too long, or reset: closed without a word, as Redis does
            if not data:
                return  # the client's FIN: every request before it has been answered
            self.buffer += data
            self.answer_all()

    def answer_all(self) -> None:
        while not self.closing:
            try:
                words = parse_request(self.buffer)
            except ProtocolError as error:
                self.protocol_error(str(error))
                return
            if words is None:
                return
            if words:
                self.send(self.execute(words))

    def protocol_error(self, text: str) -> None:
        self.send(b"-ERR Protocol error: " + text.encode() + b"\r\n")
        self.closing = True

    def send(self, reply: bytes) -> None:
        try:
            self.sock.sendall(reply)
        except OSError:
            self.closing = True

    def execute(self, words: list[bytes]) -> bytes:
        name = words[0].upper()
        if name not in ARITY:
            args = " ".join(f"'{w.decode('latin-1')[:128]}'" for w in words[1:])
            command = words[0].decode("latin-1")[:128]
            return f"-ERR unknown command '{command}', with args beginning with: {args}\r\n".encode()
        if len(words) != ARITY[name]:
            return f"-ERR wrong number of arguments for '{name.decode().lower()}' command\r\n".encode()
        return COMMANDS[name](self, words)


def _ping(c: Connection, words: list[bytes]) -> bytes:
    return b"+PONG\r\n"


def _echo(c: Connection, words: list[bytes]) -> bytes:
    return bulk(words[1])


def _set(c: Connection, words: list[bytes]) -> bytes:
    with c.store.lock:
        c.store.values[words[1]] = words[2]
    return b"+OK\r\n"


def _get(c: Connection, words: list[bytes]) -> bytes:
    with c.store.lock:
        return bulk(c.store.values.get(words[1]))


def _del(c: Connection, words: list[bytes]) -> bytes:
    with c.store.lock:
        found = c.store.values.pop(words[1], None) is not None
        found = c.store.lists.pop(words[1], None) is not None or found
    return b":1\r\n" if found else b":0\r\n"


def _incr(c: Connection, words: list[bytes]) -> bytes:
    return c.store.incr(words[1])


def _lpush(c: Connection, words: list[bytes]) -> bytes:
    with c.store.changed:
        items = c.store.lists.setdefault(words[1], [])
        items.insert(0, words[2])
        c.store.changed.notify_all()
        return b":%d\r\n" % len(items)


def _blpop(c: Connection, words: list[bytes]) -> bytes:
    try:
        seconds = float(words[2])
    except ValueError:
        return b"-ERR timeout is not a float or out of range\r\n"
    return c.store.blpop(words[1], seconds)


def _info(c: Connection, words: list[bytes]) -> bytes:
    text = f"# Server\r\nredis_version:7.0.0-student\r\n\r\n# Clients\r\nmaxclients:{c.server.maxclients}\r\n"
    return bulk(text.encode())


def _quit(c: Connection, words: list[bytes]) -> bytes:
    c.closing = True
    return b"+OK\r\n"


COMMANDS: dict[bytes, Callable[[Connection, list[bytes]], bytes]] = {
    b"PING": _ping,
    b"ECHO": _echo,
    b"SET": _set,
    b"GET": _get,
    b"DEL": _del,
    b"INCR": _incr,
    b"LPUSH": _lpush,
    b"BLPOP": _blpop,
    b"INFO": _info,
    b"QUIT": _quit,
}


# ---- the server -------------------------------------------------------------------------


class Server:
    def __init__(self, options: argparse.Namespace) -> None:
        self.timeout = options.timeout
        self.maxclients = options.maxclients
        self.store = Store()
        self.clients = 0
        self.clients_lock = threading.Lock()
        self.stopping = threading.Event()
        self.listeners = [listen(options.port)]
        self.tls: ssl.SSLContext | None = None
        if options.tls_port:
            self.tls = tls_context(options.cert, options.key)
            self.listeners.append(listen(options.tls_port))

    def run(self) -> None:
        """Accept until SIGTERM: each connection gets a thread of its own."""
        for listener in self.listeners:
            listener.settimeout(0.1)  # so that the loop sees the stop flag
        while not self.stopping.is_set():
            for listener in self.listeners:
                try:
                    sock, _ = listener.accept()
                except (TimeoutError, OSError):
                    continue
                is_tls = self.tls is not None and listener is self.listeners[-1]
                self.start(sock, is_tls)
        for listener in self.listeners:
            listener.close()

    def start(self, sock: socket.socket, is_tls: bool) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(target=self.handle, args=(sock, is_tls), daemon=True)
        thread.start()

    def admit(self) -> bool:
        with self.clients_lock:
            if self.clients >= self.maxclients:
                return False
            self.clients += 1
            return True

    def handle(self, sock: socket.socket, is_tls: bool) -> None:
        admitted = False
        try:
            if is_tls:
                assert self.tls is not None
                sock.settimeout(HANDSHAKE_TIMEOUT)
                sock = self.tls.wrap_socket(sock, server_side=True)
            admitted = self.admit()
            if not admitted:
                sock.sendall(b"-ERR max number of clients reached\r\n")
                return
            Connection(self, sock).serve()
        except (OSError, ssl.SSLError):
            pass
        finally:
            if admitted:
                with self.clients_lock:
                    self.clients -= 1
            sock.close()


def listen(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    return listener


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-port", type=int, default=0)
    parser.add_argument("--cert", default="")
    parser.add_argument("--key", default="")
    parser.add_argument("--timeout", type=int, default=0, help="close clients idle this many seconds (0: never)")
    parser.add_argument("--maxclients", type=int, default=10000)
    options = parser.parse_args(argv)
    server = Server(options)
    install_signal_handlers(server)
    server.run()
    return 0


def install_signal_handlers(server: Server) -> None:
    def stop(signum: int, frame: object) -> None:
        server.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


if __name__ == "__main__":
    sys.exit(main())
