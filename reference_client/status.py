"""Exit statuses (PROTOCOL.md section 17) and the one exception that carries them."""

from __future__ import annotations

import enum


class Exit(enum.IntEnum):
    OK = 0  # every request got a well-formed reply, none of them an error
    ERROR_REPLY = 1  # at least one -ERR reply (BUSY and TIMEOUT included)
    USAGE = 2  # bad flags or arguments; nothing was connected
    DNS = 3  # the name could not be resolved
    CONNECT = 4  # no address could be connected within the timeouts
    TIMEOUT = 5  # an established connection got no reply byte within the read timeout
    TLS = 6  # certificate verification or the TLS handshake failed
    PROTOCOL = 7  # a truncated or malformed reply


LABELS = {
    Exit.USAGE: "error",
    Exit.DNS: "DNS failure",
    Exit.CONNECT: "connect failed",
    Exit.TIMEOUT: "timeout",
    Exit.TLS: "TLS failure",
    Exit.PROTOCOL: "protocol error",
}


class ClientFailure(Exception):
    """A failure that ends the run at once with ``status`` (2 to 7)."""

    def __init__(self, status: Exit, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def line(self, prog: str) -> str:
        return f"{prog}: {LABELS.get(self.status, 'error')}: {self.message}"


def show(data: bytes | bytearray, limit: int = 60) -> str:
    """A short printable rendering of wire bytes for diagnostics."""
    text = repr(bytes(data[:limit]))
    return text + ("..." if len(data) > limit else "")
