"""The one command table, how each protocol turns a request into a Request,
and the pure parts of command semantics.

Both protocols share the table: a command's name, its parameters and the
protocols that know it. CloudHash/1 reads a request from one payload (a line
without its terminator, or a frame's body: ``parse_request``); RESP2 from the
words of a multibulk array or an inline line (``request_from_words``). What a
command then does is connection.py's, the same for both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

MAX_KEY = 250  # CloudHash/1's; a RESP2 key is any bytes, as in Redis
MAX_SLEEP_MS = 60_000
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

CLOUDHASH = "cloudhash"
RESP = "resp"
PROTOCOL_NAMES = (CLOUDHASH, RESP)

_FORBIDDEN_IN_KEY = frozenset(b" \r\n\x00")
_INTEGER = re.compile(rb"-?[0-9]+")
_CANONICAL_INTEGER = re.compile(rb"0|-?[1-9][0-9]*")  # Redis's string2ll: no leading zeros, no "-0", no "+"
_DIGITS = re.compile(rb"[0-9]+")
_DECIMAL = re.compile(rb"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")


class CommandError(Exception):
    """A request that gets an error reply; the connection goes on.

    ``code`` says what went wrong (UNKNOWN, SYNTAX, TYPE, RANGE, STATE, WRONGTYPE,
    and OOM from a store with no room left) and ``text`` says it in the words
    of the protocol that raised it; the codes both protocols share (TYPE and
    RANGE, from INCR, and OOM) carry CloudHash/1's text, and RESP2 words them
    as Redis does (resp.py)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text

    def reply(self) -> bytes:
        """CloudHash/1's error body: ``-ERR <code> <text>``."""
        return f"-ERR {self.code} {self.text}".encode("ascii")


@dataclass(frozen=True)
class Request:
    name: str  # upper case, one of COMMANDS
    args: tuple[bytes, ...] = ()


class Param(Enum):
    KEY = "key"  # CloudHash/1: one word, no SP, CR, LF or NUL, at most MAX_KEY bytes; RESP2: any bytes
    TEXT = "text"  # CloudHash/1: the rest of the payload, verbatim; RESP2: one argument
    MILLIS = "milliseconds"  # digits
    SECONDS = "seconds"  # a decimal number, 0 for no limit (BLPOP's timeout)
    WORD = "word"  # any one argument


@dataclass(frozen=True)
class Command:
    params: tuple[Param, ...]
    protocols: frozenset[str]


_BOTH = frozenset(PROTOCOL_NAMES)
_CLOUDHASH_ONLY = frozenset({CLOUDHASH})
_RESP_ONLY = frozenset({RESP})
KEY, TEXT, MILLIS, SECONDS, WORD = Param.KEY, Param.TEXT, Param.MILLIS, Param.SECONDS, Param.WORD

COMMANDS: dict[bytes, Command] = {
    b"PING": Command((), _BOTH),
    b"INFO": Command((), _BOTH),
    b"QUIT": Command((), _BOTH),
    b"GET": Command((KEY,), _BOTH),
    b"DEL": Command((KEY,), _BOTH),
    b"INCR": Command((KEY,), _BOTH),
    b"ECHO": Command((TEXT,), _BOTH),
    b"SET": Command((KEY, TEXT), _BOTH),
    b"FRAMED": Command((), _CLOUDHASH_ONLY),
    b"STARTTLS": Command((), _CLOUDHASH_ONLY),
    b"SLEEP": Command((MILLIS,), _CLOUDHASH_ONLY),
    # BLPOP key timeout: no command here makes a list, so it waits out its timeout.
    b"BLPOP": Command((KEY, SECONDS), _RESP_ONLY),
    # CONFIG GET parameter: what redis-benchmark asks first (save, appendonly).
    b"CONFIG": Command((WORD, WORD), _RESP_ONLY),
}


def _known(name: bytes, protocol: str) -> Command | None:
    command = COMMANDS.get(name)
    return command if command is not None and protocol in command.protocols else None


# ---- CloudHash/1 -------------------------------------------------------------------


def parse_request(payload: bytes) -> Request:
    """Tokenise one CloudHash/1 request; raises CommandError(UNKNOWN or SYNTAX).

    Words are separated by single spaces; a TEXT parameter at the end takes the
    rest of the payload verbatim, spaces included."""
    word, has_args, rest = payload.partition(b" ")
    name = word.upper()
    command = _known(name, CLOUDHASH)
    if command is None:
        raise CommandError("UNKNOWN", f"unknown command '{_printable(word[:32])}'")
    title = name.decode("ascii")
    if not command.params:
        if has_args:
            raise CommandError("SYNTAX", f"{title} takes no arguments")
        return Request(title)
    if not has_args:
        raise CommandError("SYNTAX", f"wrong number of arguments for {title}")
    words: list[bytes] = []
    for position, param in enumerate(command.params):
        if position == len(command.params) - 1:
            if param is TEXT:
                words.append(rest)
                break
            last = rest.split(b" ")
            if len(last) != 1:
                raise CommandError("SYNTAX", f"wrong number of arguments for {title}")
            words.append(last[0])
        else:
            first, has_more, rest = rest.partition(b" ")
            if not has_more:
                raise CommandError("SYNTAX", f"wrong number of arguments for {title}")
            words.append(first)
        if param is KEY:
            _checked_key(words[-1])
        elif param is MILLIS and not _DIGITS.fullmatch(words[-1]):
            raise CommandError("SYNTAX", f"{title} takes milliseconds as digits")
    return Request(title, tuple(words))


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


# ---- RESP2 -----------------------------------------------------------------------------

_QUOTED_ARGS = 128  # Redis quotes the arguments of an unknown command up to about this many characters


def request_from_words(words: Sequence[bytes], count: int) -> Request:
    """The request made of a RESP2 array's (or inline line's) words, in Redis's
    words when it is wrong; raises CommandError(UNKNOWN or SYNTAX).

    ``count`` is how many words the request had; ``words`` may keep only the
    first few of a long one (enough to name it)."""
    name = words[0].upper()
    command = _known(name, RESP)
    if command is None:
        quoted = ""
        for word in words[1:]:
            if len(quoted) >= _QUOTED_ARGS:
                break
            quoted += f"'{_printable(word[: _QUOTED_ARGS - len(quoted)])}' "
        raise CommandError(
            "UNKNOWN", f"unknown command '{_printable(words[0][:_QUOTED_ARGS])}', with args beginning with: {quoted}"
        )
    if count - 1 != len(command.params):
        raise CommandError("SYNTAX", f"wrong number of arguments for '{name.decode('ascii').lower()}' command")
    args = tuple(words[1:])
    for param, arg in zip(command.params, args, strict=True):
        if param is SECONDS:
            timeout_seconds(arg)
    return Request(name.decode("ascii"), args)


def timeout_seconds(text: bytes) -> float:
    """BLPOP's timeout in seconds (0: no limit); raises CommandError(SYNTAX) as Redis words it."""
    value = float(text) if _DECIMAL.fullmatch(text) else math.nan
    if not math.isfinite(value):
        raise CommandError("SYNTAX", "timeout is not a float or out of range")
    if value < 0:
        raise CommandError("SYNTAX", "timeout is negative")
    return value


# ---- semantics ---------------------------------------------------------------------


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


def require_canonical_integer(stored: bytes | None) -> None:
    """Redis takes a value as an integer only in its shortest form: where
    CloudHash/1 counts on from ``007`` or ``-0``, RESP2 raises CommandError(TYPE)."""
    if stored is not None and not _CANONICAL_INTEGER.fullmatch(stored):
        raise CommandError("TYPE", "value is not an integer in its canonical form")
