"""A small, exact linearizability checker for histories of store operations
on one key (in the manner of Knossos and Porcupine, for short histories).

A history is one list of operations per client (connection). Each client's
operations are sequential, so a partial linearization is just how far each
client has got: the search is a depth-first search over those positions,
with the state of the key, memoising the (positions, state) pairs already
found to be dead ends (the Wing & Gong search with Lowe's memoisation).

The times are client-side (time.monotonic): `call` is taken before the
request is sent and `ret` after the reply was read, so the instant at which
the server applied the operation lies inside [call, ret]. Operation A must
come before B exactly when A returned before B was called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from suite.checks.protocol import State, step


@dataclass(frozen=True)
class Operation:
    client: int
    command: bytes  # SET, GET, DEL or INCR
    value: bytes | None  # SET's value
    call: float
    ret: float
    reply: bytes  # the reply line as received, CRLF included

    def describe(self, origin: float) -> str:
        request = self.command.decode() + (f" {self.value.decode('latin-1')}" if self.value is not None else "")
        call, ret = (self.call - origin) * 1000, (self.ret - origin) * 1000
        return f"connection {self.client + 1}: [{call:8.2f} ms .. {ret:8.2f} ms]  {request:<14} -> {self.reply!r}"


def reply_matches(expected: bytes, actual: bytes) -> bool:
    """Whether the reply line ``actual`` is the reply body ``expected`` (from
    protocol.step); an expected error is its code only, the text is free."""
    if expected.startswith(b"-ERR "):
        return actual == expected + b"\r\n" or (actual.startswith(expected + b" ") and actual.endswith(b"\r\n"))
    return actual == expected + b"\r\n"


Step = Callable[[State, bytes, bytes | None], tuple[State, bytes]]


def linearize(
    histories: Sequence[Sequence[Operation]], initial: State = None, step: Step = step
) -> list[Operation] | None:
    """A legal linear order of all the operations, or None if there is none."""
    clients = len(histories)
    dead: set[tuple[tuple[int, ...], State]] = set()
    order: list[Operation] = []

    def search(positions: tuple[int, ...], state: State) -> bool:
        pending = [histories[c][positions[c]] for c in range(clients) if positions[c] < len(histories[c])]
        if not pending:
            return True
        if (positions, state) in dead:
            return False
        # The operation that returned first must be linearized before any
        # operation called after that return; so only operations called no
        # later than the earliest return are candidates for the next slot.
        horizon = min(op.ret for op in pending)
        for op in pending:
            if op.call > horizon:
                continue
            new_state, expected = step(state, op.command, op.value)
            if not reply_matches(expected, op.reply):
                continue
            advanced = list(positions)
            advanced[op.client] += 1
            order.append(op)
            if search(tuple(advanced), new_state):
                return True
            order.pop()
        dead.add((positions, state))
        return False

    return order if search(tuple(0 for _ in range(clients)), initial) else None


def render(histories: Sequence[Sequence[Operation]]) -> str:
    """Every operation in order of invocation, times relative to the first call."""
    operations = sorted((op for history in histories for op in history), key=lambda op: op.call)
    if not operations:
        return "(no operations)"
    origin = operations[0].call
    return "\n".join(op.describe(origin) for op in operations)
