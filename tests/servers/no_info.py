"""A server that never learned INFO: it answers PING and QUIT, and -ERR UNKNOWN to
INFO as to anything else it does not know. The suite must report the unanswered
INFO itself, not only that values are missing from it.

    python tests/servers/no_info.py --port 4481
"""

from __future__ import annotations

from line_server_basics import announce, listen, options

if __name__ == "__main__":
    server = listen(options().port, info_reply=b"-ERR UNKNOWN command")
    announce(server)
    server.serve_forever()
