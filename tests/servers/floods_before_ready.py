"""A server that prints 32 MiB of progress dots without a newline before its READY
line (the suite must still find READY well inside its timeout, and must not keep
all of it), then serves PING, INFO and QUIT correctly.

    python tests/servers/floods_before_ready.py --port 4481
"""

from __future__ import annotations

import sys

from line_server_basics import announce, listen, options

FLOOD = 32 * 1024 * 1024

if __name__ == "__main__":
    server = listen(options().port)
    dots = b"." * (1024 * 1024)
    for _ in range(FLOOD // len(dots)):
        sys.stdout.buffer.write(dots)
    sys.stdout.buffer.write(b"\n")
    announce(server)
    server.serve_forever()
