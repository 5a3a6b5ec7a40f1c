"""Request syntax and the pure parts of command semantics.

A payload is one request without its framing: a line without its terminator,
or a frame's body. Both modes tokenise it the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_KEY = 250
MAX_SLEEP_MS = 60_000
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

_FORBIDDEN_IN_KEY = frozenset(b" \r\n\x00")
_INTEGER = re.compile(rb"-?[0-9]+")
_DIGITS = re.compile(rb"[0-9]+")


class CommandError(Exception):
    """A request that gets ``-ERR <code> <text>``."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text

    def reply(self) -> bytes:
        return f"-ERR {self.code} {self.text}".encode("ascii")


@dataclass(frozen=True)
class Request:
    name: str  # upper case, one of COMMANDS
    args: tuple[bytes, ...] = ()


# name -> argument shape. "raw" takes the rest of the payload verbatim;
# "key raw" takes one key, then the rest verbatim.
COMMANDS: dict[bytes, str] = {
    b"PING": "",
    b"INFO": "",
    b"FRAMED": "",
    b"STARTTLS": "",
    b"QUIT": "",
    b"GET": "key",
    b"DEL": "key",
    b"INCR": "key",
    b"SLEEP": "ms",
    b"ECHO": "raw",
    b"SET": "key raw",
}


def parse_request(payload: bytes) -> Request:
    """Tokenise one request; raises CommandError(UNKNOWN or SYNTAX)."""
    word, has_args, rest = payload.partition(b" ")
    name = word.upper()
    shape = COMMANDS.get(name)
    if shape is None:
        raise CommandError("UNKNOWN", f"unknown command '{_printable(word[:32])}'")
    command = name.decode("ascii")
    if shape == "":
        if has_args:
            raise CommandError("SYNTAX", f"{command} takes no arguments")
        return Request(command)
    if not has_args:
        raise CommandError("SYNTAX", f"wrong number of arguments for {command}")
    if shape == "raw":
        return Request(command, (rest,))
    if shape == "key raw":
        key, has_value, value = rest.partition(b" ")
        if not has_value:
            raise CommandError("SYNTAX", f"wrong number of arguments for {command}")
        return Request(command, (_checked_key(key), value))
    args = rest.split(b" ")
    if len(args) != 1:
        raise CommandError("SYNTAX", f"wrong number of arguments for {command}")
    if shape == "ms":
        if not _DIGITS.fullmatch(args[0]):
            raise CommandError("SYNTAX", "SLEEP takes milliseconds as digits")
        return Request(command, (args[0],))
    return Request(command, (_checked_key(args[0]),))


def _printable(data: bytes) -> str:
    # Error texts travel back to terminals: no control bytes, no LF, no escapes.
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in data)


def _checked_key(key: bytes) -> bytes:
    if not key:
        raise CommandError("SYNTAX", "empty argument")
    if len(key) > MAX_KEY:
        raise CommandError("SYNTAX", f"key longer than {MAX_KEY} bytes")
    if not _FORBIDDEN_IN_KEY.isdisjoint(key):
        raise CommandError("SYNTAX", "key contains SP, CR, LF or NUL")
    return key


def sleep_ms(digits: bytes) -> int:
    """The SLEEP duration; raises CommandError(RANGE) beyond the limit."""
    # Compare lengths first, so a million digits is not turned into an int.
    stripped = digits.lstrip(b"0") or b"0"
    if len(stripped) > len(str(MAX_SLEEP_MS)) or int(stripped) > MAX_SLEEP_MS:
        raise CommandError("RANGE", f"SLEEP takes 0 to {MAX_SLEEP_MS} ms")
    return int(stripped)


def incremented(stored: bytes | None) -> int:
    """INCR's result for a stored value; raises CommandError(TYPE or RANGE)."""
    if stored is None:
        return 1
    if not _INTEGER.fullmatch(stored):
        raise CommandError("TYPE", "value is not a 64-bit integer")
    magnitude = stored.lstrip(b"-").lstrip(b"0")
    # Leading zeros are allowed, so judge the size after stripping them.
    current = 0 if len(magnitude) > 20 else int(stored)
    if len(magnitude) > 20 or not INT64_MIN <= current <= INT64_MAX:
        raise CommandError("TYPE", "value is not a 64-bit integer")
    if current == INT64_MAX:
        raise CommandError("RANGE", "increment would overflow")
    return current + 1
