"""A server whose stop handler only sets a flag, which its accept loop reads: the
loop sleeps in accept(), so it sees the flag only when the next client comes. A
student's first graceful stop (its connection threads block the stop signals, as
the guide says). CH-LIFE-9 must fail and point at the accept.

    python tests/servers/stops_at_the_next_client.py --port 4481
"""

from __future__ import annotations

import signal

from line_server_basics import announce, listen, options

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
stopping = False


def ask_to_stop(signum: int, frame: object) -> None:
    global stopping
    stopping = True


if __name__ == "__main__":
    for signum in STOP_SIGNALS:
        signal.signal(signum, ask_to_stop)
    server = listen(options().port)
    announce(server)
    while not stopping:
        connection, address = server.socket.accept()
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        server.process_request(connection, address)  # a thread for the connection
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    server.server_close()
