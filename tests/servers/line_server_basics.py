"""What the small misbehaving servers share, as a student would write it once and
import it: a threaded TCP server that answers PING, INFO and QUIT one line at a
time, and -ERR UNKNOWN (or what the script says) to anything else. Each script misbehaves in one way of its
own and is otherwise correct for what it serves.

Standard library only.
"""

from __future__ import annotations

import argparse
import socketserver
import sys
from collections.abc import Callable

INFO = (
    b"$proto=cloudhash/1 arch=student concurrency=16 max_connections=16 overflow=queue "
    b"idle_timeout_ms=0 max_line=8192 max_frame=1048576 features="
)


def options(*extra_flags: str) -> argparse.Namespace:
    """--port, and any other flag ignored (as a student's server would)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    for flag in extra_flags:
        parser.add_argument(flag)
    known, _ = parser.parse_known_args()
    return known


UNKNOWN = b"-ERR UNKNOWN command"


def listen(
    port: int,
    info_reply: bytes = INFO,
    *,
    other: Callable[[bytes], bytes | None] = lambda command: UNKNOWN,
    host: str = "127.0.0.1",
) -> socketserver.ThreadingTCPServer:
    """Bound and listening on ``host`` (not yet serving): port 0 lets the OS choose.
    ``other`` answers every command but PING, INFO and QUIT (its reply without
    CRLF; None: no reply at all)."""

    class Connection(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            try:
                self.serve_lines()
            except ConnectionError:  # the client reset the connection: nothing left to answer
                pass

        def serve_lines(self) -> None:
            while line := self.rfile.readline(8194):
                command = line.rstrip(b"\r\n")
                name = command.upper()  # command names are case-insensitive (CH-CMD-1)
                if name == b"PING":
                    self.wfile.write(b"+PONG\r\n")
                elif name == b"INFO":
                    self.wfile.write(info_reply + b"\r\n")
                elif name == b"QUIT":
                    self.wfile.write(b"+BYE\r\n")
                    return
                elif (reply := other(command)) is not None:
                    self.wfile.write(reply + b"\r\n")

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    return socketserver.ThreadingTCPServer((host, port), Connection)


def announce(server: socketserver.ThreadingTCPServer, tls_port: int | None = None) -> None:
    port = server.server_address[1]
    tls = f" tls={tls_port}" if tls_port else ""
    sys.stdout.write(f"READY cloudhash/1 127.0.0.1 {port}{tls}\n")
    sys.stdout.flush()
