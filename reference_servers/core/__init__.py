"""The protocol core, sans-IO: bytes in, events out, for CloudHash/1 and RESP2.

Nothing here opens a socket, starts a thread or reads a clock. Callers pass
the current time in (``now``, seconds on any monotonic scale) where timing
matters, and carry out the events the connection hands back. It imports
nothing from the runtime, the servers or the suite.

One command table (commands.py) and one connection state machine
(connection.py) serve both protocols; each protocol's codec says where a
request ends and how a reply looks (framing.py for CloudHash/1's lines and
frames, resp.py for RESP2's arrays and inline lines), and its Dialect
(dialects.py) ties its words together.
"""

from .commands import CLOUDHASH, PROTOCOL_NAMES, RESP, CommandError, Request, incremented, parse_request
from .connection import Close, Send, ServerConnection, StartTLS
from .dialects import DIALECTS, Dialect
from .info import ServerInfo
from .store import DictStore, Store

__all__ = [
    "CLOUDHASH",
    "DIALECTS",
    "PROTOCOL_NAMES",
    "RESP",
    "Close",
    "CommandError",
    "Dialect",
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
