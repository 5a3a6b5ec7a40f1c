"""A server that hangs: it answers PING, INFO and QUIT, so it starts and is
checked, but never answers any other request, and it ignores SIGTERM, so a
run that wants it gone must kill it. A batch gives it its time budget and
stops it there, without touching any other target.

    python tests/servers/hangs_on_requests.py --port 4481
"""

from __future__ import annotations

import signal

from line_server_basics import announce, listen, options

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    server = listen(options().port, other=lambda command: None)  # read on, answer nothing
    announce(server)
    server.serve_forever()
