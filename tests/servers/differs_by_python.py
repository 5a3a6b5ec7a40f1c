"""A server whose behaviour depends on the Python it runs on, as a server that
leans on a runtime's changing details does: under Python 3.12 or later it
answers an unknown command with -ERR UNKNOWN, as the spec says; before 3.12
with -ERR NOPE (CH-CMD-1 judges that). `sockspec matrix` must put that
difference between images first.

    python tests/servers/differs_by_python.py --port 4481 --host 0.0.0.0
"""

from __future__ import annotations

import sys

from line_server_basics import announce, listen, options

UNKNOWN = b"-ERR UNKNOWN unknown command" if sys.version_info >= (3, 12) else b"-ERR NOPE unknown command"

if __name__ == "__main__":
    flags = options("--host")
    server = listen(flags.port, other=lambda command: UNKNOWN, host=flags.host or "127.0.0.1")
    announce(server)
    server.serve_forever()
