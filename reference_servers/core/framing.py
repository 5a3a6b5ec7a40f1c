"""Where one request ends: line mode and framed mode.

Both functions look at the front of a receive buffer and say how much of it
is the next request, without copying the rest.
"""

from __future__ import annotations

import struct
from typing import Final

HEADER: Final = struct.Struct(">I")
CRLF: Final = b"\r\n"


class NeedData:
    """Not enough bytes yet."""


class TooLong:
    """The request is over the limit; the server answers TOOLONG and closes."""


NEED_DATA: Final = NeedData()
TOO_LONG: Final = TooLong()

# (payload, bytes consumed) or a verdict
Cut = tuple[bytes, int] | NeedData | TooLong


def cut_line(buffer: bytes | bytearray, max_line: int) -> Cut:
    """The next line. ``max_line`` counts what was received, terminator included."""
    end = buffer.find(b"\n", 0, max_line)
    if end < 0:
        return TOO_LONG if len(buffer) >= max_line else NEED_DATA
    stop = end - 1 if end > 0 and buffer[end - 1] == 0x0D else end
    return bytes(buffer[:stop]), end + 1


def cut_frame(buffer: bytes | bytearray, max_frame: int) -> Cut:
    """The next frame's payload. Oversized lengths are refused from the header alone."""
    if len(buffer) < HEADER.size:
        return NEED_DATA
    (length,) = HEADER.unpack_from(buffer)
    if length > max_frame:
        return TOO_LONG
    end = HEADER.size + length
    if len(buffer) < end:
        return NEED_DATA
    return bytes(buffer[HEADER.size : end]), end


def encode_line(body: bytes) -> bytes:
    return body + CRLF


def encode_frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body
