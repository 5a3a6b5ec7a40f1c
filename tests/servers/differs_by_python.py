"""A server whose behaviour depends on the Python it runs on, as a server that
leans on a runtime's changing details does: under Python 3.12 or later it
answers an unknown command with -ERR UNKNOWN, as the spec says; before 3.12
with -ERR NOPE (CH-CMD-1 judges that). `sockspec matrix` must put that difference between images
first.

    python tests/servers/differs_by_python.py --port 4481 --host 0.0.0.0
"""

from __future__ import annotations

import socketserver
import sys

from line_server_basics import INFO, announce, options

UNKNOWN = b"-ERR UNKNOWN unknown command\r\n" if sys.version_info >= (3, 12) else b"-ERR NOPE unknown command\r\n"


class Connection(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        try:
            while line := self.rfile.readline(8194):
                command = line.rstrip(b"\r\n").upper()
                if command == b"PING":
                    self.wfile.write(b"+PONG\r\n")
                elif command == b"INFO":
                    self.wfile.write(INFO + b"\r\n")
                elif command == b"QUIT":
                    self.wfile.write(b"+BYE\r\n")
                    return
                elif command:
                    self.wfile.write(UNKNOWN)
        except ConnectionError:
            pass


def main() -> None:
    flags = options("--host")
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    server = socketserver.ThreadingTCPServer((flags.host or "127.0.0.1", flags.port), Connection)
    announce(server)
    server.serve_forever()


if __name__ == "__main__":
    main()
