"""The suite's own model of the RESP2 store commands (PROTOCOL-RESP2.md,
section 1 and R2-ERR-3/4): the exact reply bytes each request gets, written
from the Redis command pages; never from the server under test.
"""

from __future__ import annotations

import re

from suite.profiles import resp

__all__ = ["INT64_MAX", "State", "apply", "step"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NOT_INTEGER = b"-ERR value is not an integer or out of range"
OVERFLOW = b"-ERR increment or decrement would overflow"
_INTEGER = re.compile(rb"-?(0|[1-9][0-9]*)")  # Redis's string2ll: no '+', no leading zeros, no '-0'

State = bytes | None  # one key's value, or None when it has none


def _as_integer(value: bytes) -> int | None:
    if _INTEGER.fullmatch(value) is None or value == b"-0":
        return None
    number = int(value)
    return number if INT64_MIN <= number <= INT64_MAX else None


def step(state: State, command: bytes, value: bytes | None = None) -> tuple[State, bytes]:
    """SET (with ``value``), GET, DEL or INCR on one key holding ``state``: the
    key's new state and the whole reply without its final CRLF (the form
    suite.checks.linearizability compares)."""
    if command == b"SET":
        assert value is not None
        return value, b"+OK"
    if command == b"GET":
        return state, (resp.NIL_BULK if state is None else resp.bulk(state))[:-2]
    if command == b"DEL":
        return None, (b":0" if state is None else b":1")
    if command == b"INCR":
        current = _as_integer(b"0" if state is None else state)
        if current is None:
            return state, NOT_INTEGER
        if current == INT64_MAX:
            return state, OVERFLOW
        return b"%d" % (current + 1), b":%d" % (current + 1)
    raise ValueError(f"not a store command: {command!r}")


def apply(args: list[bytes], store: dict[bytes, bytes]) -> bytes:
    """The reply (CRLF included) to one request of PING, ECHO, SET, GET, DEL or
    INCR with the right number of arguments; ``store`` is updated."""
    name = args[0].upper()
    if name == b"PING" and len(args) == 1:
        return b"+PONG\r\n"
    if name == b"ECHO" and len(args) == 2:
        return resp.bulk(args[1])
    arity = {b"SET": 3, b"GET": 2, b"DEL": 2, b"INCR": 2}
    if arity.get(name) == len(args):
        key = args[1]
        state, reply = step(store.get(key), name, args[2] if name == b"SET" else None)
        if state is None:
            store.pop(key, None)
        else:
            store[key] = state
        return reply + b"\r\n"
    raise ValueError(f"the suite's model has no reply for {args!r}")
