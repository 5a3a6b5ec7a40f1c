"""What a reference server was asked to be, from its command line."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from ..core import CLOUDHASH


@dataclass(frozen=True)
class Settings:
    arch: str
    host: str = "127.0.0.1"
    port: int = 4481
    tls_port: int | None = None
    cert: str | None = None
    key: str | None = None
    max_connections: int = 128
    concurrency: int | None = None  # workers or threads where the pattern has them
    idle_timeout: float = 300.0
    max_line: int = 8192
    max_frame: int = 1 << 20
    max_output: int = 1 << 20
    protocol: str = CLOUDHASH  # or RESP: the core's Dialect, the INFO form, the store's integers

    @property
    def idle_timeout_ms(self) -> int:
        return round(self.idle_timeout * 1000)

    @property
    def backlog(self) -> int:
        # Never below max_connections, or the kernel's queue refuses clients
        # the server has promised to take (the kernel caps it at somaxconn).
        return max(self.max_connections, 1024)

    def tls_context(self) -> ssl.SSLContext | None:
        if self.cert is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        return context
