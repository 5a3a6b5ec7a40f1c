"""The two protocols a connection speaks, side by side, as data: how each
frames its requests first, words a reply and an error, and what it says
when it closes a connection on its own.

CloudHash/1 (PROTOCOL.md) frames requests as lines, or frames after FRAMED
(framing.py), and tells the client why it closes (TIMEOUT, SHUTDOWN).
RESP2 (PROTOCOL-RESP2.md) frames them as multibulk arrays or inline lines
(resp.py), and closes an idle connection, or every connection at shutdown,
without a word, as Redis does. The commands and what they do are the same
for both (commands.py, connection.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from . import resp
from .commands import CLOUDHASH, RESP, CommandError
from .framing import TooLong, encode_line
from .info import ServerInfo
from .replies import Bulk, Integer, Nil, Reply, Status

__all__ = ["BUSY_LINE", "CLOUDHASH_DIALECT", "DIALECTS", "RESP_DIALECT", "Dialect", "Framing"]

# CloudHash/1's own messages, as bodies (framed as lines or frames when sent).
TIMEOUT = b"-ERR TIMEOUT idle for too long"
SHUTDOWN = b"-ERR SHUTDOWN server is shutting down"
TOOLONG = b"-ERR TOOLONG request over the size limit"
ABORTED = b"-ERR ABORTED interrupted by urgent data"
BUSY_LINE = encode_line(b"-ERR BUSY too many connections")
MAX_CLIENTS_LINE = b"-ERR max number of clients reached\r\n"  # Redis's words (networking.c)


class Framing(Enum):
    """Where a request ends: the connection's current framing."""

    LINES = "lines"  # CloudHash/1, until FRAMED
    FRAMES = "frames"  # CloudHash/1, after FRAMED
    RESP = "resp"  # RESP2: multibulk arrays and inline lines


@dataclass(frozen=True)
class Dialect:
    name: str  # commands.PROTOCOL_NAMES
    framing: Framing  # how a connection starts
    body: Callable[[Reply], bytes]  # a reply, before framing (RESP2's framing is in its body)
    error: Callable[[CommandError], bytes]  # an error reply, likewise
    unreadable: Callable[[TooLong | resp.Malformed], bytes]  # the last words to a stream that cannot be read on
    info: Callable[[ServerInfo], bytes]  # INFO's value
    farewell: bytes  # QUIT's reply, before the close
    idle_notice: bytes | None  # before closing an idle connection (None: close without a word)
    shutdown_notice: bytes | None  # before closing a connection at shutdown
    over_limit: bytes  # the whole message to a connection over the limit, on the plain port


def _cloudhash_body(reply: Reply) -> bytes:
    if isinstance(reply, Status):
        return b"+" + reply.word
    if isinstance(reply, Bulk):
        return b"$" + reply.data
    if isinstance(reply, Integer):
        return b":%d" % reply.value
    if isinstance(reply, Nil):
        return b"_"
    raise TypeError(f"CloudHash/1 has no {type(reply).__name__} reply")


CLOUDHASH_DIALECT = Dialect(
    name=CLOUDHASH,
    framing=Framing.LINES,
    body=_cloudhash_body,
    error=CommandError.reply,
    unreadable=lambda problem: TOOLONG,
    info=ServerInfo.render,
    farewell=b"+BYE",
    idle_notice=TIMEOUT,
    shutdown_notice=SHUTDOWN,
    over_limit=BUSY_LINE,
)


def _resp_unreadable(problem: TooLong | resp.Malformed) -> bytes:
    assert isinstance(problem, resp.Malformed), "RESP2's reader says what is wrong"
    return resp.protocol_error(problem)


RESP_DIALECT = Dialect(
    name=RESP,
    framing=Framing.RESP,
    body=resp.encode,
    error=resp.error_body,
    unreadable=_resp_unreadable,
    info=ServerInfo.render_resp,
    farewell=resp.encode(Status(b"OK")),
    idle_notice=None,
    shutdown_notice=None,
    over_limit=MAX_CLIENTS_LINE,
)

DIALECTS: dict[str, Dialect] = {dialect.name: dialect for dialect in (CLOUDHASH_DIALECT, RESP_DIALECT)}
