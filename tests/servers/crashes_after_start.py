"""A server that starts properly, serves PING and INFO for about two seconds, and
then dies with status 3 after a traceback on stderr (the suite must say so,
rather than report every later check as "connection refused").

    python tests/servers/crashes_after_start.py --port 4481
"""

from __future__ import annotations

import os
import sys
import threading

from line_server_basics import announce, listen, options

LIFETIME = 2.0
TRACEBACK = 'Traceback (most recent call last):\n  File "server.py", line 42, in handle\nRuntimeError: boom\n'

if __name__ == "__main__":
    server = listen(options().port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    announce(server)
    threading.Event().wait(LIFETIME)
    sys.stderr.write(TRACEBACK)
    sys.stderr.flush()
    os._exit(3)  # at once, as a crash would: no cleanup, connections cut
