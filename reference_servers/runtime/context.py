"""What every architecture is handed: listeners, TLS, the store, the stop."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from ..core import DIALECTS, ServerConnection, ServerInfo, Store
from .listeners import Listener
from .session import Session
from .settings import Settings
from .stop import StopSignal


@dataclass
class Context:
    settings: Settings
    info: ServerInfo
    listeners: list[Listener]
    tls_context: ssl.SSLContext | None
    store: Store
    stop: StopSignal

    def session(self, sock: socket.socket, listener: Listener, now: float) -> Session:
        conn = ServerConnection(
            self.info,
            self.store,
            now,
            starttls_available=self.tls_context is not None,
            in_tls=listener.tls,
        )
        return Session(
            sock,
            conn,
            now,
            tls_context=self.tls_context,
            implicit_tls=listener.tls,
            max_output=self.info.max_output,
        )

    def refusal(self, sock: socket.socket, listener: Listener, now: float) -> Session:
        """A connection over the limit: the protocol's words (BUSY, or Redis's
        max number of clients), then the close."""
        # On the TLS port a plaintext message would be garbage to the client, and
        # a handshake would spend work the limit exists to save: just close.
        message = b"" if listener.tls else DIALECTS[self.info.protocol].over_limit
        return Session.refuse(sock, message, now)
