"""CH-LIFE-7 from the server's side: requests the kernel already holds when the
stop comes were received before the signal, even if the process had not yet
been scheduled to read them (a busy machine, a process-per-connection child just
forked). Seen in CI: process-per-connection in a bookworm container answered a
SLEEP 1000, sent 0.1 s before SIGTERM, with SHUTDOWN.

A real socket pair and the runtime's Session: the request is written, and the
stop begins before the session has read anything.
"""

from __future__ import annotations

import select
import socket

from reference_servers.core import DictStore, ServerConnection, ServerInfo
from reference_servers.runtime.session import Session
from tests.client_support import read_line


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """(the server's side, the peer's side) of a real loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname(), timeout=5.0)  # every read has this deadline
        listener.settimeout(5.0)
        server_side, _ = listener.accept()
    return server_side, peer


def _wait_until_held(sock: socket.socket) -> None:
    """Until the bytes sent are in ``sock``'s receive queue (loopback: at once)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    assert poller.poll(5000), "the request never reached the server's socket"


def test_a_request_the_kernel_holds_at_the_stop_is_answered_normally() -> None:
    server_side, peer = _tcp_pair()
    with server_side, peer:
        info = ServerInfo("evented", 64, 64, "busy", idle_timeout_ms=60_000)
        session = Session(server_side, ServerConnection(info, DictStore(), 0.0), 0.0)
        peer.sendall(b"PING\r\n")  # in the kernel's buffer; the session has not read it
        _wait_until_held(server_side)
        session.begin_shutdown(0.0)
        session.on_writable(0.0)
        # The PING's reply comes first (then the one SHUTDOWN an idle connection gets, CH-LIFE-5).
        assert read_line(peer) == b"+PONG\r\n", "received before the stop: answered, not SHUTDOWN"


def test_a_request_sent_after_the_stop_gets_shutdown() -> None:
    server_side, peer = _tcp_pair()
    with server_side, peer:
        info = ServerInfo("evented", 64, 64, "busy", idle_timeout_ms=60_000)
        session = Session(server_side, ServerConnection(info, DictStore(), 0.0), 0.0)
        session.begin_shutdown(0.0)
        peer.sendall(b"PING\r\n")
        session.on_readable(0.0)
        session.on_writable(0.0)
        assert read_line(peer).startswith(b"-ERR SHUTDOWN"), "after the stop: SHUTDOWN"
