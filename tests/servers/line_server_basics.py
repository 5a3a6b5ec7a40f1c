"""What the small misbehaving servers share, as a student would write it once and
import it: a threaded TCP server that answers PING, INFO and QUIT one line at a
time, and -ERR UNKNOWN to anything else. Each script misbehaves in one way of its
own and is otherwise correct for what it serves.

Standard library only.
"""

from __future__ import annotations

import argparse
import socketserver
import sys

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


def listen(port: int, info_reply: bytes = INFO) -> socketserver.ThreadingTCPServer:
    """Bound and listening on 127.0.0.1 (not yet serving): port 0 lets the OS choose."""

    class Connection(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            try:
                self.serve_lines()
            except ConnectionError:  # the client reset the connection: nothing left to answer
                pass

        def serve_lines(self) -> None:
            while line := self.rfile.readline(8194):
                command = line.rstrip(b"\r\n")
                if command == b"PING":
                    self.wfile.write(b"+PONG\r\n")
                elif command == b"INFO":
                    self.wfile.write(info_reply + b"\r\n")
                elif command == b"QUIT":
                    self.wfile.write(b"+BYE\r\n")
                    return
                else:
                    self.wfile.write(b"-ERR UNKNOWN command\r\n")

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    return socketserver.ThreadingTCPServer(("127.0.0.1", port), Connection)


def announce(server: socketserver.ThreadingTCPServer, tls_port: int | None = None) -> None:
    port = server.server_address[1]
    tls = f" tls={tls_port}" if tls_port else ""
    sys.stdout.write(f"READY cloudhash/1 127.0.0.1 {port}{tls}\n")
    sys.stdout.flush()
