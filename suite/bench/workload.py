"""What each cell sends and what every reply must be, in the target's own
protocol: the bytes come from the profiles' dialects (suite.profiles.dialects),
the one place the suite writes requests and replies, so the benchmark speaks
exactly what the conformance checks speak.

The keys and the value are redis-benchmark's own defaults (one key, a value
of three bytes), so that the two load generators ask the same of a server.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from ..profiles.dialects import dialect_for

__all__ = ["COMMANDS", "KEY", "VALUE", "Workload", "workload"]

COMMANDS = ("ping", "set", "get", "incr")
KEY = b"key:000000000000"  # redis-benchmark's SET and GET key without -r
COUNTER = b"counter:000000000000"  # and its INCR key
VALUE = b"xxx"  # redis-benchmark's default value (-d 3)


@dataclass(frozen=True)
class Workload:
    """One command as a cell sends it: the request, and the reply it must get."""

    command: str
    profile: str
    request: bytes
    reply: bytes | None  # the exact reply, or None when it varies (INCR)
    pattern: bytes | None  # a regular expression for one reply, when it varies
    lines: int  # LFs in one reply, to count replies in a run of them

    def op(self) -> dict[str, Any]:
        """The part of a driver operation that says what to send and expect."""
        return {
            "request": _encoded(self.request),
            "reply": _encoded(self.reply) if self.reply is not None else None,
            "pattern": _encoded(self.pattern) if self.pattern is not None else None,
            "lines": self.lines,
            "framing": "resp" if self.profile == "resp2" else "line",
        }


def workload(profile: str, command: str) -> Workload:
    """``command`` (ping, set, get, incr) in ``profile``'s dialect."""
    dialect = dialect_for(profile)
    if command == "incr":
        # The value grows through the run: any integer reply is right. The
        # dialect writes the integer reply; a digit run stands in for the number.
        sample = dialect.integer(0)
        pattern = re.escape(sample).replace(b"0", rb"-?[0-9]+", 1)
        return Workload(command, profile, dialect.incr(COUNTER, 0).request, None, pattern, sample.count(b"\n"))
    if command == "ping":
        exchange = dialect.ping()
    elif command == "set":
        exchange = dialect.set(KEY, VALUE)
    elif command == "get":
        exchange = dialect.get(KEY, VALUE)
    else:
        raise ValueError(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
    return Workload(command, profile, exchange.request, exchange.reply, None, exchange.reply.count(b"\n"))


def _encoded(data: bytes) -> str:
    return base64.b64encode(data).decode()
