"""A server whose replies are HTML: PING, INFO and QUIT are answered as the spec
says, and anything else with a script tag and an attribute that would run
script. The HTML report must show these bytes as text, never as markup.

    python tests/servers/replies_with_markup.py --port 4481
"""

from __future__ import annotations

import socketserver

from line_server_basics import INFO, announce, options

MARKUP = b"<script>alert(1)</script><img src=x onerror=\"alert('&amp;')\">"


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
                else:
                    self.wfile.write(MARKUP + b"\r\n")
        except ConnectionError:  # the client reset the connection: nothing left to answer
            pass


if __name__ == "__main__":
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", options().port), Connection)
    announce(server)
    server.serve_forever()
