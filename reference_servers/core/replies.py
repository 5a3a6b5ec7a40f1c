"""What a command answers, before a protocol puts it into words and bytes.

The command logic (connection.py) says *what* the answer is; CloudHash/1
(framing.py) and RESP2 (resp.py) each say how it looks on the wire. An error
is not a reply here: it is a CommandError, raised, and worded the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Array", "Bulk", "Integer", "Nil", "NilArray", "Reply", "Status"]


@dataclass(frozen=True)
class Status:
    """A short word of success: OK, PONG."""

    word: bytes


@dataclass(frozen=True)
class Bulk:
    """A value, any bytes."""

    data: bytes


@dataclass(frozen=True)
class Integer:
    value: int


@dataclass(frozen=True)
class Nil:
    """No value: GET of a key that has none."""


@dataclass(frozen=True)
class NilArray:
    """Nothing to pop: a BLPOP whose timeout passed (RESP2 only)."""


@dataclass(frozen=True)
class Array:
    """Several replies in one (RESP2 only): CONFIG GET's name, value pairs."""

    items: tuple[Reply, ...]


Reply = Status | Bulk | Integer | Nil | NilArray | Array
