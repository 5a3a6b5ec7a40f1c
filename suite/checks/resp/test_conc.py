"""R2-CONC: a connection blocked in BLPOP, or holding half a request, never
stalls the others (PROTOCOL-RESP2.md, section 8). Both apply unless the
server declares that it serves one client at a time (``concurrency`` 1)."""

from __future__ import annotations

import time

from suite.api import Measure, fresh_key, not_applicable, requirement
from suite.profiles import resp
from suite.profiles.dialects import Resp2Dialect
from suite.targets.base import Target

RESP2 = Resp2Dialect()
BLOCK_SECONDS = 2
AT_ONCE = 0.5  # "at once" on loopback, with room for a loaded machine
LATE = 1.0  # R2-CONC-1: the null array no later than the timeout + 1 s
GRANULARITY = 0.02


def _applies_when_serving_clients_at_once(target: Target) -> None:
    """Applies when: ``concurrency`` >= 2, or not declared (Redis declares nothing,
    and multiplexes its clients)."""
    if "concurrency" in target.declared.pairs and (concurrency := target.declared.number("concurrency")) < 2:
        not_applicable(f"the server declares concurrency={concurrency}: it serves one client at a time")


def _others_are_served(target: Target, why: str) -> float:
    """Two other connections each get a reply within AT_ONCE; the slowest time."""
    slowest = 0.0
    key = fresh_key("other")
    for n, exchanges in enumerate(([RESP2.ping(), RESP2.echo(b"x")], [RESP2.set(key, b"1"), RESP2.get(key, b"1")])):
        with target.connect(f"other connection {n + 1}", timeout=AT_ONCE + 1) as c:
            for exchange in exchanges:
                started = time.monotonic()
                RESP2.ask(c, exchange, why=why, timeout=AT_ONCE)
                slowest = max(slowest, time.monotonic() - started)
    return slowest


@requirement("R2-CONC-1")
def test_a_client_blocked_in_blpop_never_stalls_the_others(target: Target, measure: Measure) -> None:
    _applies_when_serving_clients_at_once(target)
    blocking = RESP2.blocking(fresh_key("nolist"), BLOCK_SECONDS)
    with target.connect("blocked in BLPOP", timeout=BLOCK_SECONDS + LATE + 1) as blocked:
        sent = time.monotonic()
        blocked.send(blocking.request)
        blocked.expect_silence(0.1, why="BLPOP on a key with nothing to pop is blocked")
        slowest = _others_are_served(target, f"another connection waits in BLPOP {BLOCK_SECONDS} s")
        measure("slowest reply while a BLPOP blocks", round(slowest * 1000, 1), "ms")
        RESP2.expect_reply(blocked, resp.NIL_ARRAY, "BLPOP timed out with nothing to pop", BLOCK_SECONDS + LATE)
        took = time.monotonic() - sent
        if took < BLOCK_SECONDS - GRANULARITY:
            raise blocked.violation(
                f"BLPOP with a timeout of {BLOCK_SECONDS} s answered after {took:.3f} s",
                expected=f"the null array no sooner than {BLOCK_SECONDS} s",
                actual=f"after {took:.3f} s",
            )
        RESP2.ask(blocked, RESP2.ping(), why="the connection is usable after its BLPOP timed out")


@requirement("R2-CONC-2")
def test_half_a_request_never_stalls_the_others(target: Target) -> None:
    _applies_when_serving_clients_at_once(target)
    key = fresh_key("half")
    request = resp.command(b"SET", key, b"complete")
    with target.connect("half a multibulk request") as half, target.connect("half an inline line") as line:
        half.send(request[: len(request) // 2])
        line.send(b"ECHO wai")
        _others_are_served(target, "two other connections hold half a request")
        half.send(request[len(request) // 2 :])
        RESP2.expect_reply(half, b"+OK\r\n", "the rest of the multibulk SET arrived")
        line.send(b"ting\r\n")
        RESP2.expect_reply(line, resp.bulk(b"waiting"), "the rest of the inline ECHO arrived")
