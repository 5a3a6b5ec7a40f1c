"""The response grammar of PROTOCOL.md section 5, and incremental readers for
line-mode replies and framed replies.

A reader's take() removes one complete reply from the front of a receive
buffer, or returns None when the buffer does not hold one yet; bytes that
cannot become a reply raise a protocol error at once, without waiting for more.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from .status import ClientFailure, Exit, show

# No reply of a sane server comes near this; it bounds the buffer, and it makes
# a line where a frame was expected fail at once: any reply's first byte (0x24
# and up) read as the top byte of a length gives more than 600 MB.
MAX_REPLY = 64 * 1024 * 1024

ERROR_CODES = b"UNKNOWN SYNTAX TYPE RANGE STATE TOOLONG BUSY TIMEOUT ABORTED SHUTDOWN".split()
# Final messages (section 3): the server closes after them.
FINAL_ERRORS = frozenset((b"BUSY", b"TOOLONG", b"TIMEOUT", b"SHUTDOWN"))

_STATUS = (b"+PONG", b"+OK", b"+BYE")
_INTEGER = re.compile(rb":(?:0|-?[1-9][0-9]*)\Z")
_ERROR = re.compile(rb"-ERR (" + b"|".join(ERROR_CODES) + rb")(?: .*)?\Z", re.DOTALL)
# What a line-mode reply can look like before its LF has arrived: every prefix
# of a valid reply line (CR included) matches, and nothing that can no longer
# become one does.
_VIABLE_LINE = re.compile(
    rb"""(?:
      \+(?:P(?:O(?:N(?:G\r?)?)?)?|O(?:K\r?)?|B(?:Y(?:E\r?)?)?)?
    | _\r?
    | :(?:-|0\r?|-?[1-9][0-9]*\r?)?
    | \$[^\n]*
    | -(?:E(?:R(?:R(?:\ [^\n]*)?)?)?)?
    )\Z""",
    re.VERBOSE,
)
_HEADER = struct.Struct("!I")


@dataclass(frozen=True)
class Reply:
    payload: bytes  # the response without CRLF, or the frame payload
    kind: str  # "status", "value", "nil", "integer" or "error"
    code: bytes = b""  # the error code, for errors

    @property
    def is_error(self) -> bool:
        return self.kind == "error"

    @property
    def is_final_error(self) -> bool:
        """BUSY, TOOLONG, TIMEOUT or SHUTDOWN: a close follows."""
        return self.code in FINAL_ERRORS

    @property
    def is_final(self) -> bool:
        """A final message (a final -ERR, or +BYE to QUIT): the close that follows
        is no truncation, even with later requests unanswered (section 17)."""
        return self.is_final_error or self.payload == b"+BYE"


def parse_response(payload: bytes) -> Reply:
    """Classify one response (without CRLF); a protocol error if it matches nothing."""
    if payload in _STATUS:
        return Reply(payload, "status")
    if payload == b"_":
        return Reply(payload, "nil")
    if payload.startswith(b"$"):
        return Reply(payload, "value")
    if _INTEGER.match(payload):
        return Reply(payload, "integer")
    error = _ERROR.match(payload)
    if error:
        return Reply(payload, "error", error.group(1))
    raise ClientFailure(Exit.PROTOCOL, f"malformed reply {show(payload)}")


class LineReader:
    """Line-mode replies (``response CRLF``), taken off the front of a buffer."""

    def __init__(self) -> None:
        self._scanned = 0  # bytes of the buffer known to hold no LF

    def take(self, buffer: bytearray) -> Reply | None:
        end = buffer.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(buffer)
            # Every prefix of a reply is decided by its first bytes: refuse at
            # once what can no longer become one.
            if buffer and not _VIABLE_LINE.match(buffer[:16]):
                raise ClientFailure(Exit.PROTOCOL, f"malformed reply {show(buffer)}")
            if len(buffer) > MAX_REPLY:
                raise ClientFailure(Exit.PROTOCOL, f"reply line longer than {MAX_REPLY} bytes")
            return None
        line = bytes(buffer[: end + 1])
        if end == 0 or buffer[end - 1] != 0x0D:
            raise ClientFailure(Exit.PROTOCOL, f"reply line not terminated by CRLF: {show(line)}")
        reply = parse_response(line[:-2])
        del buffer[: end + 1]
        self._scanned = 0
        return reply


class FrameReader:
    """Framed replies (4-byte big-endian length, then the payload)."""

    def take(self, buffer: bytearray) -> Reply | None:
        if len(buffer) < _HEADER.size:
            return None
        (length,) = _HEADER.unpack_from(buffer)
        if length > MAX_REPLY:
            raise ClientFailure(
                Exit.PROTOCOL, f"frame header announces {length} bytes (not a frame? starts {show(buffer[:8])})"
            )
        if len(buffer) < _HEADER.size + length:
            return None
        payload = bytes(buffer[_HEADER.size : _HEADER.size + length])
        if not payload:
            raise ClientFailure(Exit.PROTOCOL, "empty reply frame")
        reply = parse_response(payload)
        del buffer[: _HEADER.size + length]
        return reply


def encode_line(payload: bytes) -> bytes:
    return payload + b"\r\n"


def encode_frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload
