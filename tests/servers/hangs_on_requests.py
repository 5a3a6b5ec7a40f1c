"""A server that hangs: it answers PING, INFO and QUIT, so it starts and is
checked, but never answers any other request, and it ignores SIGTERM, so a
run that wants it gone must kill it. A batch gives it its time budget and
stops it there, without touching any other target.

    python tests/servers/hangs_on_requests.py --port 4481
"""

from __future__ import annotations

import signal
import socketserver

from line_server_basics import INFO, announce, options


class Connection(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        try:
            while line := self.rfile.readline(8194):
                command = line.rstrip(b"\r\n")
                if command == b"PING":
                    self.wfile.write(b"+PONG\r\n")
                elif command == b"INFO":
                    self.wfile.write(INFO + b"\r\n")
                elif command == b"QUIT":
                    self.wfile.write(b"+BYE\r\n")
                    return
                # anything else: read on, answer nothing
        except ConnectionError:
            pass


def main() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", options().port), Connection)
    announce(server)
    server.serve_forever()


if __name__ == "__main__":
    main()
