"""Listening sockets and the READY line."""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass

from .settings import Settings


@dataclass
class Listener:
    sock: socket.socket
    tls: bool

    def __post_init__(self) -> None:
        # Kept after close: a loop must unwatch the number it watched, even
        # when another thread closed the socket first (on a stop).
        self._fd = self.sock.fileno()

    def fileno(self) -> int:
        return self._fd

    def accept(self) -> socket.socket | None:
        """One pending connection, or None when another worker took it first."""
        try:
            conn, _ = self.sock.accept()
        except OSError:  # taken by another worker, aborted, or the listener was closed by a stop
            return None
        return conn


def open_listeners(settings: Settings, *, per_worker: bool = False) -> list[Listener]:
    """The plain listener, and the TLS one if configured. ``per_worker``: bound
    with SO_REUSEPORT, so that more sets can join the same ports
    (``join_listeners``), after making sure nothing listens there yet."""
    if per_worker:
        for port in (settings.port, settings.tls_port):
            if port:
                _refuse_if_taken(settings.host, port)
    listeners = [Listener(_listen(settings.host, settings.port, settings.backlog, per_worker), tls=False)]
    if settings.tls_port is not None:
        listeners.append(Listener(_listen(settings.host, settings.tls_port, settings.backlog, per_worker), tls=True))
    return listeners


def join_listeners(listeners: list[Listener], settings: Settings) -> list[Listener]:
    """Another set on the same ports as ``listeners`` (opened ``per_worker``):
    the kernel spreads new connections across the sets by a hash of their
    addresses and ports, each set with its own queue."""
    return [
        Listener(_listen(settings.host, listener.sock.getsockname()[1], settings.backlog, True), tls=listener.tls)
        for listener in listeners
    ]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _listen(host: str, port: int, backlog: int, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    # Several workers may wait on one listener; the losers must not block.
    sock.setblocking(False)
    return sock


def _refuse_if_taken(host: str, port: int) -> None:
    """Raise "address already in use" if anything listens on the port: a second
    server started there by mistake would otherwise join the first one's
    SO_REUSEPORT group and take half its connections."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def announce_ready(listeners: list[Listener]) -> None:
    """The one line a reference server ever writes to stdout."""
    plain = listeners[0].sock.getsockname()
    line = f"READY cloudhash/1 {plain[0]} {plain[1]}"
    for listener in listeners[1:]:
        line += f" tls={listener.sock.getsockname()[1]}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def close_listeners(listeners: list[Listener]) -> None:
    for listener in listeners:
        listener.sock.close()
