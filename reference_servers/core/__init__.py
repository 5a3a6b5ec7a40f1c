"""The CloudHash/1 protocol core, sans-IO: bytes in, events out.

Nothing here opens a socket, starts a thread or reads a clock. Callers pass
the current time in (``now``, seconds on any monotonic scale) where timing
matters, and carry out the events the connection hands back.
"""

from .commands import CommandError, Request, incremented, parse_request
from .connection import Close, Send, ServerConnection, StartTLS
from .info import ServerInfo
from .store import DictStore, Store

__all__ = [
    "Close",
    "CommandError",
    "DictStore",
    "Request",
    "Send",
    "ServerConnection",
    "ServerInfo",
    "StartTLS",
    "Store",
    "incremented",
    "parse_request",
]
