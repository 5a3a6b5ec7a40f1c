"""A server that never gets going: it sleeps forever, never listens and never
prints READY (the suite must give up once, within its readiness timeout).

    python tests/servers/never_ready.py --port 4481
"""

from __future__ import annotations

import threading

from line_server_basics import options

if __name__ == "__main__":
    options()
    threading.Event().wait()  # forever, until the suite kills it
