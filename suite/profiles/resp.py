"""RESP2 on the wire, as the suite writes and reads it (PROTOCOL-RESP2.md,
section 1, after the Redis protocol specification): requests as multibulk
arrays or inline lines, and replies (simple strings, errors, integers, bulk
strings, arrays) read whole from a Wire.

The suite judges a target by these bytes, written from the spec; it never
borrows a parser from the server side. Imports only suite.wire.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..wire import Wire

__all__ = [
    "NIL_ARRAY",
    "NIL_BULK",
    "Reply",
    "bulk",
    "command",
    "error_text",
    "inline",
    "integer",
    "parse",
    "parse_request",
    "read_reply",
]

NIL_BULK = b"$-1\r\n"  # GET of a key with no value
NIL_ARRAY = b"*-1\r\n"  # BLPOP that timed out
MAX_NESTING = 8  # the suite's commands never reply deeper; a deeper reply is the target's garbage


def _word(arg: bytes | str | int) -> bytes:
    if isinstance(arg, bytes):
        return arg
    return str(arg).encode()


def command(*args: bytes | str | int) -> bytes:
    """One request as an array of bulk strings: ``command("SET", b"k", b"v")``."""
    words = [_word(arg) for arg in args]
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(word), word) for word in words)


def inline(*args: bytes | str | int, end: bytes = b"\r\n") -> bytes:
    """One inline request, the words joined by single spaces (they must hold no
    space, quote, CR or LF); ``end`` is CR LF or a bare LF."""
    words = [_word(arg) for arg in args]
    for word in words:
        if not word or any(c in word for c in b" \t\r\n\"'\0"):
            raise ValueError(f"{word!r} cannot be an inline word")
    return b" ".join(words) + end


def bulk(data: bytes) -> bytes:
    """The bulk string reply carrying ``data``."""
    return b"$%d\r\n%s\r\n" % (len(data), data)


def integer(value: int) -> bytes:
    return b":%d\r\n" % value


def error_text(reply: bytes) -> bytes | None:
    """An error reply's text (after '-', without CRLF), or None for any other reply."""
    if reply.startswith(b"-") and reply.endswith(b"\r\n") and b"\n" not in reply[:-1]:
        return reply[1:-2]
    return None


@dataclass(frozen=True)
class Reply:
    kind: str  # "simple", "error", "integer", "bulk", "array"
    value: bytes | int | tuple[Reply, ...] | None  # None: the null bulk string or null array
    raw: bytes  # exactly as received


class Incomplete(Exception):
    """More bytes are needed for a whole reply."""


class Malformed(ValueError):
    """The bytes are not a RESP2 reply."""


def parse(data: bytes, start: int = 0, depth: int = 0) -> tuple[Reply, int]:
    """The reply at ``data[start:]`` and the offset after it; Incomplete or Malformed."""
    end = data.find(b"\r\n", start)
    if end < 0:
        if b"\n" in data[start:]:
            raise Malformed("a line ended by a bare LF")
        raise Incomplete
    line, after = data[start:end], end + 2
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b"-"):
        if b"\n" in rest or b"\r" in rest:
            raise Malformed("CR or LF inside a simple string")
        return Reply("simple" if kind == b"+" else "error", rest, data[start:after]), after
    number = _number(rest)
    if kind == b":":
        return Reply("integer", number, data[start:after]), after
    if kind == b"$":
        if number == -1:
            return Reply("bulk", None, data[start:after]), after
        if number < 0:
            raise Malformed(f"a bulk length of {number}")
        if len(data) < after + number + 2:
            raise Incomplete
        if data[after + number : after + number + 2] != b"\r\n":
            raise Malformed(f"the {number} bytes of a bulk string are not followed by CR LF")
        return Reply("bulk", data[after : after + number], data[start : after + number + 2]), after + number + 2
    if kind == b"*":
        if number == -1:
            return Reply("array", None, data[start:after]), after
        if number < 0 or depth >= MAX_NESTING:
            raise Malformed(f"an array of {number} at depth {depth}")
        items = []
        offset = after
        for _ in range(number):
            item, offset = parse(data, offset, depth + 1)
            items.append(item)
        return Reply("array", tuple(items), data[start:offset]), offset
    raise Malformed(f"no RESP2 reply starts with {kind!r}")


def parse_request(data: bytes) -> tuple[list[bytes], int] | None:
    """A client's request at the front of ``data``: its words and its size in
    bytes, or None while it is incomplete. A multibulk array, or an inline
    line (words split on spaces, ended by LF with an optional CR); Malformed
    for an array whose parts are not bulk strings."""
    if not data.startswith(b"*"):
        end = data.find(b"\n")
        return None if end < 0 else (data[:end].removesuffix(b"\r").split(), end + 1)
    try:
        request, size = parse(data)
    except Incomplete:
        return None
    items = request.value if isinstance(request.value, tuple) else ()
    words = [item.value for item in items if item.kind == "bulk" and isinstance(item.value, bytes)]
    if len(words) != len(items):
        raise Malformed("a request array holds something other than bulk strings")
    return words, size


def _number(text: bytes) -> int:
    digits = text[1:] if text.startswith(b"-") else text
    if not digits.isdigit():
        raise Malformed(f"{text!r} is not a number")
    return int(text)


def read_reply(wire: Wire, timeout: float) -> bytes | None:
    """One whole reply as received (the raw bytes); None if the connection
    ended or the deadline passed first (what came is left pending on the
    wire). Bytes that are no RESP2 reply are returned up to the first line
    end, so that the caller shows them as what arrived instead."""
    deadline = time.monotonic() + timeout
    received = b""
    while True:
        try:
            _, size = parse(received)
        except Incomplete:
            pass
        except Malformed:
            end = received.find(b"\n")
            return received[: end + 1] + _unread(wire, received[end + 1 :])
        else:
            return received[:size] + _unread(wire, received[size:])
        # One line at a time, then exactly the bytes a bulk string announced:
        # the reply's end is never read past, so the next reply stays pending.
        line = wire.read_line(max(0.0, deadline - time.monotonic()))
        if line is None:
            _unread(wire, received)
            return None
        received += line
        if line.startswith(b"$") and line.endswith(b"\r\n"):
            try:
                length = _number(line[1:-2])
            except Malformed:
                continue
            if length >= 0:
                data = wire.read_exactly(length + 2, max(0.0, deadline - time.monotonic()))
                received += data
                if len(data) < length + 2:
                    _unread(wire, received)
                    return None


def _unread(wire: Wire, data: bytes) -> bytes:
    """Put bytes read too far back in front of the wire's pending bytes."""
    if data:
        wire.unread(data)
    return b""
