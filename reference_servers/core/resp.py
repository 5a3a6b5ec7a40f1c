"""RESP2's codec, sans-IO: where a request ends (a multibulk array or an inline
line), and how a reply and an error look on the wire.

Requests are read as Redis reads them (``processMultibulkBuffer`` and
``processInlineBuffer``): an array of bulk strings whose lengths are believed
only up to the limits, or a line split on whitespace. The limits are decided
from the headers alone, so memory never follows a claimed length: a bulk
string's length at most ``max_bulk``, an array at most MAX_MULTIBULK words,
a line or a header at most MAX_INLINE bytes before its end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .commands import CommandError
from .framing import NEED_DATA, NeedData
from .replies import Bulk, Integer, Nil, NilArray, Reply, Status

__all__ = ["MAX_INLINE", "Malformed", "RequestReader", "Words", "encode", "error_body"]

MAX_INLINE: Final = 64 * 1024  # Redis's PROTO_INLINE_MAX_SIZE
MAX_MULTIBULK: Final = 1024 * 1024  # Redis's limit on an array's count
KEPT_WORDS: Final = 8  # enough to name and quote any request; the rest of a long one is counted, not kept
CRLF: Final = b"\r\n"

_LENGTH = re.compile(rb"0|-?[1-9][0-9]{0,17}")  # string2ll's form, short enough to never be a big number
_STAR, _DOLLAR, _ZERO = ord("*"), ord("$"), ord("0")


@dataclass(frozen=True)
class Malformed:
    """The stream cannot be read on: ``-ERR Protocol error: <reason>``, then the close."""

    reason: str


@dataclass(frozen=True)
class Words:
    """One request: its first words (at most KEPT_WORDS), and how many it had."""

    kept: tuple[bytes, ...]
    count: int

    def __len__(self) -> int:
        return self.count


# (request, bytes consumed) or a verdict
RespCut = tuple[Words, int] | NeedData | Malformed


class RequestReader:
    """Cuts requests off the front of a receive buffer.

    An array that arrives in pieces is read once: the reader remembers how far
    into the buffer it has parsed, and goes on from there. So between calls the
    caller only appends to the buffer, and removes exactly the bytes a request
    used once it has one."""

    def __init__(self, max_bulk: int) -> None:
        self._max_bulk = max_bulk
        self._begin()

    def _begin(self) -> None:
        self._count: int | None = None  # the array's count, once its header is read
        self._parsed = 0  # bytes of the buffer read so far into this array
        self._seen = 0  # its words read so far
        self._kept: list[bytes] = []

    def cut(self, buffer: bytes | bytearray) -> RespCut:
        if self._count is None:
            if not buffer:
                return NEED_DATA
            if buffer[0] != _STAR:
                return _cut_inline(buffer)
            header = self._header(buffer, 0, "too big mbulk count string")
            if not isinstance(header, tuple):
                return header
            text, self._parsed = header
            count = _length(text)
            if count is None or count > MAX_MULTIBULK:
                return Malformed("invalid multibulk length")
            if count <= 0:  # Redis skips an empty or null array without a word
                used = self._parsed
                self._begin()
                return Words((), 0), used
            self._count = count
        # The words, in one loop over locals: this runs for every word of every request.
        count, seen, parsed, kept = self._count, self._seen, self._parsed, self._kept
        size, max_bulk = len(buffer), self._max_bulk
        problem: NeedData | Malformed | None = None
        while seen < count:
            if size <= parsed:
                problem = NEED_DATA
                break
            if buffer[parsed] != _DOLLAR:
                problem = Malformed(f"expected '$', got '{_shown(buffer[parsed])}'")
                break
            header = self._header(buffer, parsed, "too big bulk count string")
            if not isinstance(header, tuple):
                problem = header
                break
            text, data_start = header
            length = _length(text)
            if length is None or not 0 <= length <= max_bulk:
                problem = Malformed("invalid bulk length")
                break
            end = data_start + length
            if size < end + 2:
                problem = NEED_DATA  # the header is read again next time: a few bytes, never the data
                break
            if buffer[end : end + 2] != CRLF:
                problem = Malformed("expected CR LF after a bulk string's data")
                break
            if len(kept) < KEPT_WORDS:
                kept.append(bytes(buffer[data_start:end]))
            seen += 1
            parsed = end + 2
        if problem is not None:
            self._seen, self._parsed = seen, parsed
            return problem
        words = Words(tuple(kept), count), parsed
        self._begin()
        return words

    @staticmethod
    def _header(buffer: bytes | bytearray, start: int, too_big: str) -> tuple[bytes, int] | NeedData | Malformed:
        """A ``*<n>`` or ``$<n>`` line at ``start``: its number's text and the offset after its CR LF."""
        end = buffer.find(CRLF, start, start + MAX_INLINE + len(CRLF))
        if end < 0:
            return Malformed(too_big) if len(buffer) - start > MAX_INLINE else NEED_DATA
        return bytes(buffer[start + 1 : end]), end + len(CRLF)


def _cut_inline(buffer: bytes | bytearray) -> RespCut:
    """A line ended by LF (a CR before it is part of the end), split on whitespace."""
    end = buffer.find(b"\n", 0, MAX_INLINE + 1)
    if end < 0:
        return Malformed("too big inline request") if len(buffer) > MAX_INLINE else NEED_DATA
    words = tuple(bytes(buffer[:end]).split())
    return Words(words[:KEPT_WORDS], len(words)), end + 1


def _length(text: bytes | bytearray) -> int | None:
    if text.isdigit() and len(text) <= 18 and (text[0] != _ZERO or len(text) == 1):
        return int(text)  # the common case, decided without the pattern
    return int(text) if _LENGTH.fullmatch(text) else None


def _shown(byte: int) -> str:
    return chr(byte) if 0x20 <= byte < 0x7F and byte != 0x5C else f"\\x{byte:02x}"


# ---- replies -----------------------------------------------------------------------------


def encode(reply: Reply) -> bytes:
    """A reply as RESP2 writes it."""
    if isinstance(reply, Status):
        return b"+" + reply.word + CRLF
    if isinstance(reply, Bulk):
        return b"$%d\r\n" % len(reply.data) + reply.data + CRLF
    if isinstance(reply, Integer):
        return b":%d\r\n" % reply.value
    if isinstance(reply, Nil):
        return b"$-1\r\n"
    if isinstance(reply, NilArray):
        return b"*-1\r\n"
    return b"*%d\r\n" % len(reply.items) + b"".join(encode(item) for item in reply.items)


# The codes the command logic shares with CloudHash/1, in Redis's words (t_string.c).
_REDIS_WORDS = {
    "TYPE": "value is not an integer or out of range",
    "RANGE": "increment or decrement would overflow",
}


# Redis's reply to a write at its maxmemory when it may evict nothing (server.c).
_OOM: Final = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"


def error_body(error: CommandError) -> bytes:
    """``-ERR <text>``, ``-WRONGTYPE <text>`` or ``-OOM <text>``, as Redis says it."""
    if error.code == "WRONGTYPE":
        return f"-WRONGTYPE {error.text}\r\n".encode("ascii")
    if error.code == "OOM":
        return _OOM
    return f"-ERR {_REDIS_WORDS.get(error.code, error.text)}\r\n".encode("ascii")


def protocol_error(problem: Malformed) -> bytes:
    return f"-ERR Protocol error: {problem.reason}\r\n".encode("ascii")
