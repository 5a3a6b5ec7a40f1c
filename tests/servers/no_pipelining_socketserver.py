"""A CloudHash/1 server as a student would write it with socketserver.

It has two bugs on purpose, for tests/test_isolated_checks.py:

- it answers only the first request of each recv() chunk (no pipelining):
  whatever else the chunk held is thrown away;
- INCR takes the stored value with int(), so "+1", " 1" and "1_0" count as
  integers.

Everything else it does reasonably: line mode with CRLF or LF, the command
table and check order of PROTOCOL.md sections 6 and 7, framed mode, TOOLONG
and a drained close after final messages. It takes --port P and ignores
every other flag it does not know.
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import struct
import sys
import threading
import time

MAX_LINE = 8192
MAX_FRAME = 1 << 20
MAX_KEY = 250
INFO = (
    b"$proto=cloudhash/1 arch=student concurrency=64 max_connections=64 overflow=queue "
    b"idle_timeout_ms=0 max_line=8192 max_frame=1048576 features=framed"
)

store: dict[bytes, bytes] = {}
lock = threading.Lock()


class Reply(Exception):
    """An error reply."""


def key_ok(key: bytes) -> bool:
    return 0 < len(key) <= MAX_KEY and not any(b in key for b in b" \r\n\x00")


def execute(payload: bytes, framed: bool) -> tuple[bytes, str]:
    """The reply body, and what happens next: "", "framed" or "close"."""
    if not payload:
        return b"-ERR SYNTAX empty request", ""
    name, sp, rest = payload.partition(b" ")
    command = name.upper() if name.isascii() else name
    no_args = {b"PING": b"+PONG", b"INFO": INFO, b"QUIT": b"+BYE", b"FRAMED": b"+OK", b"STARTTLS": b""}
    if command in no_args:
        if sp:
            return b"-ERR SYNTAX no arguments", ""
        if command == b"FRAMED":
            return (b"-ERR STATE already framed", "") if framed else (b"+OK", "framed")
        if command == b"STARTTLS":
            return b"-ERR STATE no TLS here", ""
        return no_args[command], "close" if command == b"QUIT" else ""
    if command == b"ECHO":
        return (b"$" + rest, "") if sp else (b"-ERR SYNTAX arity", "")
    if command == b"SET":
        key, sp2, value = rest.partition(b" ")
        if not sp or not sp2 or not key_ok(key):
            return b"-ERR SYNTAX bad SET", ""
        with lock:
            store[key] = value
        return b"+OK", ""
    if command not in (b"GET", b"DEL", b"INCR", b"SLEEP"):
        return b"-ERR UNKNOWN what", ""
    args = rest.split(b" ")
    if not sp or len(args) != 1 or not args[0]:
        return b"-ERR SYNTAX arity", ""
    arg = args[0]
    if command == b"SLEEP":
        if not arg.isdigit():
            return b"-ERR SYNTAX digits", ""
        if int(arg) > 60000:
            return b"-ERR RANGE too long", ""
        time.sleep(int(arg) / 1000)
        return b"+OK", ""
    if not key_ok(arg):
        return b"-ERR SYNTAX bad key", ""
    with lock:
        if command == b"GET":
            value = store.get(arg)
            if value is None:
                return b"_", ""
            if b"\n" in value and not framed:
                return b"-ERR STATE has LF", ""
            return b"$" + value, ""
        if command == b"DEL":
            return (b":1" if store.pop(arg, None) is not None else b":0"), ""
        try:
            number = int(store.get(arg, b"0"))  # the bug: int() takes "+1", " 1", "1_0"
        except ValueError:
            return b"-ERR TYPE not an integer", ""
        if not -(2**63) <= number < 2**63:
            return b"-ERR TYPE out of range", ""
        if number + 1 >= 2**63:
            return b"-ERR RANGE overflow", ""
        store[arg] = b"%d" % (number + 1)
        return b":%d" % (number + 1), ""


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        framed = False
        pending = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return
            data = pending + chunk
            pending = b""
            # The bug: one request per chunk; the rest of the chunk is dropped.
            if framed:
                if len(data) < 4:
                    pending = data
                    continue
                (size,) = struct.unpack(">I", data[:4])
                if size > MAX_FRAME:
                    self.final(sock, struct.pack(">I", 18) + b"-ERR TOOLONG frame")
                    return
                if len(data) < 4 + size:
                    pending = data
                    continue
                payload = data[4 : 4 + size]
            else:
                while data.startswith((b"\n", b"\r\n")):  # empty lines are no requests
                    data = data[data.index(b"\n") + 1 :]
                end = data.find(b"\n")
                if end < 0:
                    if len(data) >= MAX_LINE:
                        self.final(sock, b"-ERR TOOLONG line\r\n")
                        return
                    pending = data
                    continue
                if end + 1 > MAX_LINE:
                    self.final(sock, b"-ERR TOOLONG line\r\n")
                    return
                payload = data[:end]
                if payload.endswith(b"\r"):
                    payload = payload[:-1]
            reply, then = execute(payload, framed)
            sock.sendall(struct.pack(">I", len(reply)) + reply if framed else reply + b"\r\n")
            if then == "framed":
                framed = True
            elif then == "close":
                self.drain_and_close(sock)
                return

    def final(self, sock: socket.socket, message: bytes) -> None:
        sock.sendall(message)
        self.drain_and_close(sock)

    def drain_and_close(self, sock: socket.socket) -> None:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 0.5
        sock.settimeout(0.05)
        while time.monotonic() < deadline:
            try:
                if not sock.recv(65536):
                    break
            except TimeoutError:
                continue
            except OSError:
                break


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    options, _ = parser.parse_known_args()  # other flags are not supported, and ignored
    with Server(("127.0.0.1", options.port), Handler) as server:
        host, port = server.server_address[:2]
        print(f"READY cloudhash/1 {host} {port}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
