"""R2-STORE: one key space for every connection, linearizable operations,
and no lost INCR (PROTOCOL-RESP2.md, section 5). The expected replies come
from the suite's model (suite.checks.resp.model); histories are checked by
suite.checks.linearizability, shared with CloudHash/1."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from suite.api import Probe, Violation, fresh_key, requirement
from suite.checks.linearizability import Operation, linearize, render
from suite.checks.resp.model import step
from suite.escape import escape
from suite.profiles import resp
from suite.profiles.dialects import Resp2Dialect
from suite.targets.base import Target

RESP2 = Resp2Dialect()
CONNECTIONS = 4


def _at_once(target: Target, wanted: int) -> int:
    """How many connections a check holds open at once: ``wanted``, or as many as
    the server declares it serves at once (``concurrency``; 1 for a serial server,
    whose other connections wait in the listen backlog until the first closes)."""
    if "concurrency" in target.declared.pairs:
        return max(1, min(wanted, target.declared.number("concurrency")))
    return wanted


def _one_connection_at_a_time(target: Target, keys: list[bytes]) -> None:
    """R2-STORE-1 for a server that serves one client at a time: each connection
    sees what the ones before it set, and is closed before the next opens."""
    for writer, key in enumerate(keys):
        with target.connect(f"connection {writer + 1}") as probe:
            for earlier, seen in enumerate(keys[:writer]):
                why = f"connection {earlier + 1}'s value, read on connection {writer + 1}"
                RESP2.ask(probe, RESP2.get(seen, b"from %d" % earlier), why=why)
            RESP2.ask(probe, RESP2.set(key, b"from %d" % writer), why=f"SET on connection {writer + 1}")
    with target.connect("the deleting connection") as probe:
        RESP2.ask(probe, RESP2.delete(keys[1], True), why="DEL of another connection's key")
    with target.connect("the last connection") as probe:
        RESP2.ask(probe, RESP2.get(keys[1], None), why="the DEL on the connection before is seen")


@requirement("R2-STORE-1")
def test_values_set_on_one_connection_are_seen_on_the_others(target: Target) -> None:
    keys = [fresh_key("shared") for _ in range(CONNECTIONS)]
    if _at_once(target, CONNECTIONS) == 1:
        _one_connection_at_a_time(target, keys)
        return
    probes = [target.connect(f"connection {n + 1}") for n in range(CONNECTIONS)]
    for writer, key in enumerate(keys):
        RESP2.ask(probes[writer], RESP2.set(key, b"from %d" % writer), why=f"SET on connection {writer + 1}")
    for reader, probe in enumerate(probes):
        for writer, key in enumerate(keys):
            why = f"connection {writer + 1}'s value, read on connection {reader + 1}"
            RESP2.ask(probe, RESP2.get(key, b"from %d" % writer), why=why)
    RESP2.ask(probes[0], RESP2.delete(keys[1], True), why="DEL of another connection's key")
    RESP2.ask(probes[2], RESP2.get(keys[1], None), why="the DEL on connection 1 is seen on connection 3")


ROUNDS = 3
OPERATIONS = 6


def _plan(rng: random.Random, client: int) -> list[tuple[bytes, bytes | None]]:
    plan: list[tuple[bytes, bytes | None]] = []
    for n in range(OPERATIONS):
        command = rng.choices([b"GET", b"SET", b"INCR", b"DEL"], weights=[4, 3, 2, 1])[0]
        plan.append((command, b"%d" % (1000 * (client + 1) + 10 * n) if command == b"SET" else None))
    return plan


def _run(
    probe: Probe, client: int, key: bytes, plan: list[tuple[bytes, bytes | None]], start: threading.Barrier
) -> list[Operation]:
    start.wait(timeout=10)
    history = []
    for command, value in plan:
        call = time.monotonic()
        probe.send(resp.command(command, key, *([value] if value is not None else [])))
        reply = RESP2.read_reply(probe) or b""
        history.append(Operation(client, command, value, call, time.monotonic(), reply))
    return history


@requirement("R2-STORE-2")
def test_concurrent_histories_are_linearizable(target: Target, seed: int) -> None:
    rng = random.Random(seed)
    at_once = _at_once(target, CONNECTIONS)
    for _ in range(ROUNDS):
        key = fresh_key("linear")
        plans = [_plan(rng, client) for client in range(CONNECTIONS)]
        if at_once == 1:  # one connection at a time: a sequential history, still checked
            probes, histories = [], []
            for n in range(CONNECTIONS):
                with target.connect(f"connection {n + 1}") as probe:
                    probes.append(probe)
                    histories.append(_run(probe, n, key, plans[n], threading.Barrier(1)))
        else:
            probes = [target.connect(f"connection {n + 1}") for n in range(CONNECTIONS)]
            start = threading.Barrier(CONNECTIONS)
            with ThreadPoolExecutor(CONNECTIONS) as pool:
                futures = [pool.submit(_run, probes[n], n, key, plans[n], start) for n in range(CONNECTIONS)]
                histories = [future.result() for future in futures]
        if linearize(histories, step=step) is None:
            raise Violation(
                f"no order of these {sum(len(h) for h in histories)} operations on {key.decode()} that respects their "
                "real-time order explains every reply (times measured at the client: request sent .. reply read)",
                expected="a linearizable history: one instant per operation, between its request and its reply",
                actual=render(histories),
                transcripts=[probe.wire.transcript for probe in probes],
            )
        for probe in probes:
            probe.close()


INCR_CONNECTIONS = 8
INCRS_PER_CONNECTION = 100


@requirement("R2-STORE-3")
def test_concurrent_incrs_lose_no_update(target: Target) -> None:
    key = fresh_key("counter")
    start = threading.Barrier(INCR_CONNECTIONS)

    def client(index: int) -> list[int]:
        with target.connect(f"INCR connection {index + 1}") as probe:
            start.wait(timeout=10)
            results = []
            for _ in range(INCRS_PER_CONNECTION):
                probe.send(resp.command(b"INCR", key))
                reply = RESP2.read_reply(probe) or b""
                if not (reply.startswith(b":") and reply[1:-2].isdigit()):
                    raise probe.violation(f"expected :n to INCR, got {escape(reply)}", expected=b":n", actual=reply)
                results.append(int(reply[1:-2]))
            return results

    with ThreadPoolExecutor(INCR_CONNECTIONS) as pool:
        futures = [pool.submit(client, index) for index in range(INCR_CONNECTIONS)]
        results = sorted(n for future in futures for n in future.result())
    total = INCR_CONNECTIONS * INCRS_PER_CONNECTION
    with target.connect("reading connection") as check:
        check.send(resp.command(b"GET", key))
        final = RESP2.read_reply(check)
    duplicates = sorted({n for n in results if results.count(n) > 1})
    missing = sorted(set(range(1, total + 1)) - set(results))
    if duplicates or missing or final != resp.bulk(b"%d" % total):
        raise Violation(
            f"{INCR_CONNECTIONS} connections x {INCRS_PER_CONNECTION} INCRs on one key: "
            + (f"{len(duplicates)} results returned twice or more (lost updates), " if duplicates else "")
            + (f"{len(missing)} of 1..{total} never returned, " if missing else "")
            + f"final value {escape(final or b'nothing')}",
            expected=f"the INCR replies are 1..{total}, each once, and GET answers {total}",
            actual=f"duplicates {duplicates[:10]}, missing {missing[:10]}, GET {final!r}",
        )
