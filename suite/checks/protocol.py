"""The suite's own model of CloudHash/1, in one place: the numbers the spec
states, the reply grammar (section 5), what section 6's store commands
answer, and the frame layout (section 8, from suite.wire).

The checks judge a target by these byte-exact expectations, written from
PROTOCOL.md; never by what reference_servers/core happens to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from suite.wire import frame, frame_header

__all__ = [
    "BODY_CAP",
    "CLOSE_SLACK",
    "CLOSE_WITHIN",
    "CODES",
    "DRAIN_PERIOD",
    "INT64_MAX",
    "INT64_MIN",
    "LOADED_MACHINE_MARGIN",
    "REPLY_TIMEOUT",
    "TOOLONG_WITHIN",
    "Response",
    "State",
    "apply",
    "frame",
    "frame_header",
    "is_integer_value",
    "parse_response",
    "step",
]

# ---- numbers the spec states, and the margins the suite adds -----------------------

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Section 9: the drain after a final message lasts 500 ms, and the close may come
# at most 100 ms after the drain's end (a timer always fires a little late).
DRAIN_PERIOD = 0.5
CLOSE_SLACK = 0.1
CLOSE_WITHIN = DRAIN_PERIOD + CLOSE_SLACK  # CH-ERR-9's bound, counted from the shutdown
# What the suite adds to any time bound for scheduling on a loaded 2-core machine.
LOADED_MACHINE_MARGIN = 0.25
# CH-FRAME-7 and CH-FRAME-12: TOOLONG "within 1 s", plus room for a loaded machine.
TOOLONG_WITHIN = 1.0 + 0.5
# Enough for any reply on loopback; a failing check waits this long at most.
REPLY_TIMEOUT = 2.0
# The most payload bytes the suite sends behind an oversized frame header.
BODY_CAP = 4 << 20

# ---- section 5: the reply grammar ----------------------------------------------------

CODES = ("UNKNOWN", "SYNTAX", "TYPE", "RANGE", "STATE", "TOOLONG", "BUSY", "TIMEOUT", "ABORTED", "SHUTDOWN")
_RESPONSE = re.compile(
    rb"(?P<status>\+PONG|\+OK|\+BYE)|\$(?P<value>.*)|(?P<nil>_)|:(?P<integer>0|-?[1-9][0-9]*)"
    rb"|-ERR (?P<code>" + "|".join(CODES).encode() + rb")(?: (?P<text>.*))?",
    re.S,
)


@dataclass(frozen=True)
class Response:
    kind: str  # "status", "value", "nil", "integer" or "error"
    body: bytes  # the whole response, without CRLF
    code: str = ""  # an error's code
    text: bytes = b""  # an error's text


def parse_response(received: bytes, *, framed: bool) -> Response | None:
    """One response as received (a line with its CRLF, or a frame's payload)
    if it follows section 5's grammar and encoding, else None. In line mode
    nothing but the terminator may be LF."""
    if not framed:
        if not received.endswith(b"\r\n") or b"\n" in received[:-1]:
            return None
        received = received[:-2]
    match = _RESPONSE.fullmatch(received)
    if match is None:
        return None
    kind = next(name for name in ("status", "value", "nil", "integer", "code") if match.group(name) is not None)
    if kind == "code":
        return Response("error", received, match.group("code").decode(), match.group("text") or b"")
    return Response(kind, received)


# ---- section 6: what the store commands answer -----------------------------------------

State = bytes | None  # one key's value, or None when it has none
_INTEGER = re.compile(rb"-?[0-9]+")


def is_integer_value(value: bytes) -> bool:
    """CH-CMD-8: a stored value INCR takes as an integer (-?[0-9]+ in the 64-bit range)."""
    return _INTEGER.fullmatch(value) is not None and INT64_MIN <= int(value) <= INT64_MAX


def step(state: State, command: bytes, value: bytes | None = None) -> tuple[State, bytes]:
    """SET (with ``value``), GET, DEL or INCR on one key holding ``state``: the
    key's new state and the reply body without CRLF. An error reply is given
    as ``-ERR CODE`` only, since the text after the code is free."""
    if command == b"SET":
        assert value is not None
        return value, b"+OK"
    if command == b"GET":
        return state, (b"_" if state is None else b"$" + state)
    if command == b"DEL":
        return None, (b":0" if state is None else b":1")
    if command == b"INCR":
        current = b"0" if state is None else state
        if not is_integer_value(current):
            return state, b"-ERR TYPE"
        result = int(current) + 1
        if result > INT64_MAX:
            return state, b"-ERR RANGE"
        return b"%d" % result, b":%d" % result
    raise ValueError(f"not a store command: {command!r}")


def apply(payload: bytes, store: dict[bytes, bytes]) -> bytes:
    """The reply body (without CRLF) the spec gives for a well-formed request
    payload of PING, ECHO, SET, GET, DEL or INCR; ``store`` is updated."""
    command, sp, rest = payload.partition(b" ")
    name = command.upper()
    if name == b"PING" and not sp:
        return b"+PONG"
    if name == b"ECHO" and sp:
        return b"$" + rest
    if name in (b"SET", b"GET", b"DEL", b"INCR") and sp:
        key, _, value = rest.partition(b" ") if name == b"SET" else (rest, b"", b"")
        state, reply = step(store.get(key), name, value if name == b"SET" else None)
        if state is None:
            store.pop(key, None)
        else:
            store[key] = state
        return reply
    raise ValueError(f"the suite's model has no reply for {payload!r}")
