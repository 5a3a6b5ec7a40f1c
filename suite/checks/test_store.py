"""CH-STORE: one shared, linearizable, byte-exact store (PROTOCOL.md section 11).

Serial targets serve one connection at a time (max_connections=1): there,
the connections of a check are used one after another, each closed before
the next is opened, instead of being held open together.
"""

from __future__ import annotations

import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from suite.api import Violation, fresh_key, requirement
from suite.checks.connections import connect_served, open_served
from suite.checks.linearizability import Operation, linearize, render
from suite.checks.protocol import step
from suite.escape import escape
from suite.probe import Probe
from suite.targets.base import Target

# ---- CH-STORE-1 ---------------------------------------------------------------------------


@requirement("CH-STORE-1")
def test_values_set_on_one_connection_are_seen_on_the_others(target: Target) -> None:
    width = min(4, target.declared.number("max_connections"))
    keys = [fresh_key("shared") for _ in range(4)]
    values = [b"set through connection %d" % (n + 1) for n in range(4)]
    if width >= 2:
        # Connections served at the same time: on a pool or a preforking
        # server each is held by a different worker thread or process.
        probes = open_served(target, width, judge=False)
        try:
            for probe, key, value in zip(probes, keys, values, strict=False):
                probe.ask(b"SET " + key + b" " + value, b"+OK")
            for probe in probes:
                for key, value in zip(keys[:width], values, strict=False):
                    probe.ask(b"GET " + key, b"$" + value, why=f"{key.decode()} was set on another connection")
        finally:
            for probe in probes:
                probe.close()
        return
    for n in range(3):  # one at a time
        with target.connect(f"connection {n + 1}") as probe:
            for key, value in zip(keys[:n], values, strict=False):
                probe.ask(b"GET " + key, b"$" + value, why=f"{key.decode()} was set on an earlier connection")
            probe.ask(b"SET " + keys[n] + b" " + values[n], b"+OK")


@requirement("CH-STORE-1")
def test_values_cross_between_ports_and_modes(target: Target) -> None:
    """Plain to plain always; the TLS port and framed mode when declared
    (each connection closed before the next, so serial servers work too)."""
    key = fresh_key("cross")
    with target.connect("plain connection") as plain:
        plain.ask(b"SET " + key + b" plain", b"+OK")
    with target.connect("another plain connection") as other:
        other.ask(b"GET " + key, b"$plain", why="set through another connection")
        other.ask(b"SET " + key + b" other", b"+OK")
    last = b"other"
    if target.declared.has("tls"):
        with target.connect_tls("connection to the TLS port") as tls:
            tls.ask(b"GET " + key, b"$" + last, why="set through the plain port")
            tls.ask(b"SET " + key + b" tls", b"+OK")
        last = b"tls"
    if target.declared.has("framed"):
        with target.connect("framed connection") as framed:
            framed.switch_to_framed()
            framed.ask(b"GET " + key, b"$" + last, why="set through a line-mode connection")
            framed.ask(b"SET " + key + b" framed", b"+OK")
        last = b"framed"
    with target.connect("plain connection again") as plain:
        plain.ask(b"GET " + key, b"$" + last, why="set through the previous connection")


# ---- CH-STORE-1: a model of the store, driven through several connections ---------------------

VALUES = st.one_of(
    st.sampled_from([b"", b"0", b"007", b"-1", b"-0", b"9223372036854775807", b"x y", b" ", b"\r"]),
    st.integers(-3, 3).map(lambda n: str(n).encode()),
    st.binary(max_size=16).map(lambda v: v.replace(b"\n", b"")),  # any byte but LF in line mode
)
CONNECTIONS = 3
KEYS = 3


class StoreAcrossConnections(RuleBasedStateMachine):
    """SET/GET/DEL/INCR on a few fresh keys through a randomly chosen one of a
    few connections, every reply checked byte for byte against a dict.
    At most ``open_limit`` connections are open at once; using another closes
    the least recently used one first (one at a time on a serial server)."""

    def __init__(self, target: Target, open_limit: int) -> None:
        super().__init__()
        self.target = target
        self.open_limit = open_limit
        self.keys = [fresh_key("model") for _ in range(KEYS)]
        self.model: dict[bytes, bytes] = {}
        self.open: dict[int, Probe] = {}
        self.opened = 0

    def via(self, slot: int) -> Probe:
        probe = self.open.pop(slot, None)
        if probe is None:
            while len(self.open) >= self.open_limit:
                self.open.pop(next(iter(self.open))).close()
            self.opened += 1
            probe = self.target.connect(f"model connection {slot + 1} (opened {self.opened})")
        self.open[slot] = probe  # most recently used last
        return probe

    @rule(slot=st.integers(0, CONNECTIONS - 1), key=st.integers(0, KEYS - 1), value=VALUES)
    def set_value(self, slot: int, key: int, value: bytes) -> None:
        probe, name = self.via(slot), self.keys[key]
        probe.ask(b"SET " + name + b" " + value, b"+OK")
        self.model[name] = value

    @rule(slot=st.integers(0, CONNECTIONS - 1), key=st.integers(0, KEYS - 1))
    def get_value(self, slot: int, key: int) -> None:
        probe, name = self.via(slot), self.keys[key]
        _, reply = step(self.model.get(name), b"GET")
        probe.ask(b"GET " + name, reply, why="the store as a dict says")

    @rule(slot=st.integers(0, CONNECTIONS - 1), key=st.integers(0, KEYS - 1))
    def delete(self, slot: int, key: int) -> None:
        probe, name = self.via(slot), self.keys[key]
        _, reply = step(self.model.pop(name, None), b"DEL")
        probe.ask(b"DEL " + name, reply)

    @rule(slot=st.integers(0, CONNECTIONS - 1), key=st.integers(0, KEYS - 1))
    def incr(self, slot: int, key: int) -> None:
        probe, name = self.via(slot), self.keys[key]
        state, expected = step(self.model.get(name), b"INCR")
        if expected.startswith(b"-ERR "):
            probe.ask_error(b"INCR " + name, expected[5:].decode(), why=f"INCR of {self.model.get(name)!r}")
            return
        probe.ask(b"INCR " + name, expected)
        assert state is not None
        self.model[name] = state

    def teardown(self) -> None:
        for probe in self.open.values():
            probe.close()
        self.open.clear()


@requirement("CH-STORE-1")
def test_the_store_behaves_like_one_dict_across_connections(target: Target) -> None:
    open_limit = min(CONNECTIONS, target.declared.number("max_connections"))
    run_state_machine_as_test(
        # Hypothesis takes any factory of a machine, though it is typed as the class.
        lambda: StoreAcrossConnections(target, open_limit),  # type: ignore[arg-type]
        settings=settings(
            max_examples=10,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


# ---- CH-STORE-2 ---------------------------------------------------------------------------


@requirement("CH-STORE-2")
def test_a_get_after_an_acknowledged_write_sees_it(target: Target) -> None:
    """Writes and reads alternate between connections: every read starts after
    the previous write was acknowledged, so it must see exactly that write."""
    key = fresh_key("ack")
    width = min(3, target.declared.number("max_connections"))
    rounds = 24 if width >= 2 else 6
    state: bytes | None = None
    probes: list[Probe] = open_served(target, width, judge=False) if width >= 2 else []
    try:
        for n in range(rounds):
            writer = probes[n % width] if probes else target.connect(f"writer {n + 1}")
            command, value = [(b"SET", b"%d" % (1000 + n)), (b"INCR", None), (b"DEL", None)][n % 3]
            state, reply = step(state, command, value)
            writer.ask(command + b" " + key + (b" " + value if value is not None else b""), reply)
            if not probes:
                writer.close()  # one at a time: the reader's connection is served next
            reader = probes[(n + 1) % width] if probes else target.connect(f"reader {n + 1}")
            reader.ask(
                b"GET " + key,
                step(state, b"GET")[1],
                why=f"{command.decode()} was acknowledged on another connection before this GET was sent",
            )
            if not probes:
                reader.close()
    finally:
        for probe in probes:
            probe.close()


LINEARIZABILITY_ROUNDS = 3
OPERATIONS_PER_CONNECTION = 6


def plan_operations(rng: random.Random, client: int) -> list[tuple[bytes, bytes | None]]:
    plan: list[tuple[bytes, bytes | None]] = []
    for n in range(OPERATIONS_PER_CONNECTION):
        command = rng.choices([b"GET", b"SET", b"INCR", b"DEL"], weights=[4, 3, 2, 1])[0]
        plan.append((command, b"%d" % (1000 * (client + 1) + 10 * n) if command == b"SET" else None))
    return plan


def run_plan(probe: Probe, client: int, key: bytes, plan: list[tuple[bytes, bytes | None]]) -> list[Operation]:
    history = []
    for command, value in plan:
        request = command + b" " + key + (b" " + value if value is not None else b"")
        call = time.monotonic()
        probe.request(request)
        reply = probe.line(f"the reply to {command.decode()}")
        history.append(Operation(client, command, value, call, time.monotonic(), reply))
    return history


def run_concurrently(
    probes: list[Probe], key: bytes, plans: list[list[tuple[bytes, bytes | None]]]
) -> list[list[Operation]]:
    """One thread per connection, all released together by a barrier."""
    start = threading.Barrier(len(probes))

    def client(index: int) -> list[Operation]:
        start.wait(timeout=10)
        return run_plan(probes[index], index, key, plans[index])

    with ThreadPoolExecutor(len(probes)) as pool:
        futures = [pool.submit(client, index) for index in range(len(probes))]
        return [future.result() for future in futures]


@requirement("CH-STORE-2")
def test_concurrent_histories_are_linearizable(target: Target, seed: int) -> None:
    rng = random.Random(seed)
    clients = min(4, target.declared.number("max_connections"))
    for _ in range(LINEARIZABILITY_ROUNDS):
        key = fresh_key("linear")
        plans = [plan_operations(rng, client) for client in range(max(clients, 3))]
        probes: list[Probe] = []
        if clients >= 2:
            probes = open_served(target, clients, judge=False)
            try:
                histories = run_concurrently(probes, key, plans)
            finally:
                for probe in probes:
                    probe.close()
        else:  # one connection at a time: a sequential history, still checked
            histories = []
            for index, plan in enumerate(plans):
                with target.connect(f"connection {index + 1}") as probe:
                    probes.append(probe)
                    histories.append(run_plan(probe, index, key, plan))
        if linearize(histories) is None:
            count = sum(len(h) for h in histories)
            raise Violation(
                f"no order of these {count} operations on {key.decode()} that respects their real-time order "
                "explains every reply (times measured at the client: request sent .. reply read)",
                expected="a linearizable history: one instant per operation, between its request and its reply",
                actual=render(histories),
                transcripts=[probe.wire.transcript for probe in probes],
            )


# ---- CH-STORE-3 ---------------------------------------------------------------------------

INCR_CONNECTIONS = 32
INCRS_PER_CONNECTION = 100
INCR_REPLY = re.compile(rb":[1-9][0-9]*\r\n")


@requirement("CH-STORE-3")
def test_concurrent_incrs_lose_no_update(target: Target) -> None:
    key = fresh_key("counter")
    # Each thread opens its own connection when it gets a slot and closes it
    # when done; a queue server with fewer workers makes the rest wait.
    slots = threading.BoundedSemaphore(min(INCR_CONNECTIONS, target.declared.number("max_connections")))

    def client(index: int) -> list[int]:
        with slots, connect_served(target, f"INCR connection {index + 1}", grace=10.0, judge=False) as probe:
            results = []
            for _ in range(INCRS_PER_CONNECTION):
                probe.request(b"INCR " + key)
                line = probe.line("the reply to INCR")
                if not INCR_REPLY.fullmatch(line):
                    raise probe.violation(f"expected :n to INCR, got {escape(line)}", expected=b":n", actual=line)
                results.append(int(line[1:-2]))
            return results

    with ThreadPoolExecutor(INCR_CONNECTIONS) as pool:
        futures = [pool.submit(client, index) for index in range(INCR_CONNECTIONS)]
        results = sorted(n for future in futures for n in future.result())
    total = INCR_CONNECTIONS * INCRS_PER_CONNECTION
    with target.connect("reading connection") as check:
        check.request(b"GET " + key)
        final = check.line("the reply to GET")
    seen: dict[int, int] = {}
    for n in results:
        seen[n] = seen.get(n, 0) + 1
    duplicates = sorted(n for n, times in seen.items() if times > 1)
    missing = [n for n in range(1, total + 1) if n not in seen]
    if duplicates or missing or final != b"$%d\r\n" % total:
        raise Violation(
            f"{INCR_CONNECTIONS} connections x {INCRS_PER_CONNECTION} INCRs on one key: "
            + (f"{len(duplicates)} results returned twice or more (lost updates), " if duplicates else "")
            + (f"{len(missing)} of 1..{total} never returned, " if missing else "")
            + f"final value {escape(final)}",
            expected=f"the INCR replies are 1..{total}, each once, and GET answers ${total}",
            actual=f"duplicates {duplicates[:10]}, missing {missing[:10]}, GET {final!r}",
        )


# ---- CH-STORE-4 ---------------------------------------------------------------------------

EVERY_LINE_BYTE = bytes(b for b in range(256) if b != 0x0A)  # LF cannot be sent in line mode
FRAMED_VALUE_SIZE = 100_000
LONG_LINE_CAP = 1 << 18


@requirement("CH-STORE-4")
def test_values_come_back_byte_for_byte(target: Target, seed: int) -> None:
    max_line = target.declared.number("max_line")
    samples = [
        EVERY_LINE_BYTE,  # NUL, CR, SP, DEL and every byte above 0x7F
        b"  leading and trailing spaces  ",
        b"ends with CR\r",  # the CRLF terminator drops only the last CR
        b"\r\r",
        b"\x00",
        b"\xff\xfe\x80 not UTF-8",
        b"_",
        b"$1",
    ]
    keys = [fresh_key("bytes") for _ in samples]
    long_key = fresh_key("long")
    overhead = len(b"SET " + long_key + b" \r\n")
    long_value = (EVERY_LINE_BYTE * (LONG_LINE_CAP // len(EVERY_LINE_BYTE) + 1))[
        : max(0, min(max_line, LONG_LINE_CAP) - overhead)
    ]
    with target.connect("setting connection") as c:
        for key, value in zip(keys, samples, strict=True):
            c.ask(b"SET " + key + b" " + value, b"+OK")
        if long_value:
            # the whole line is max_line bytes (or 256 KiB, whichever is less)
            c.ask(
                b"SET " + long_key + b" " + long_value, b"+OK", why=f"a SET line of {overhead + len(long_value)} bytes"
            )
    with target.connect("reading connection") as c:
        for key, value in zip(keys, samples, strict=True):
            c.ask(b"GET " + key, b"$" + value)
        if long_value:
            c.ask(b"GET " + long_key, b"$" + long_value, why=f"a value of {len(long_value)} bytes")
    if not target.declared.has("framed"):
        return
    # Framed mode: any byte, and lengths far beyond max_line.
    max_frame = target.declared.number("max_frame")
    binary_key, plain_key = fresh_key("binary"), fresh_key("nolf")
    size = max(0, min(FRAMED_VALUE_SIZE, max_frame - len(b"SET " + binary_key + b" ")))
    rng = random.Random(seed)
    blob = (bytes(range(256)) + rng.randbytes(size))[:size]
    no_lf = blob.replace(b"\n", b"") + b"\r"
    with target.connect("framed setting connection") as c:
        c.switch_to_framed()
        c.ask(b"SET " + binary_key + b" " + blob, b"+OK", why=f"SET of a {size}-byte binary value")
        c.ask(b"SET " + plain_key + b" " + no_lf, b"+OK")
        c.ask(b"GET " + binary_key, b"$" + blob, why=f"the {size}-byte value just set")
    with target.connect("framed reading connection") as c:
        # A value without LF reads back in line mode too, however long.
        c.ask(b"GET " + plain_key, b"$" + no_lf, why=f"a {len(no_lf)}-byte value set in framed mode, read as a line")
        c.switch_to_framed()
        c.ask(b"GET " + binary_key, b"$" + blob, why=f"a {size}-byte value set on another connection")


@requirement("CH-STORE-4")
def test_an_empty_value_is_not_a_missing_key(target: Target) -> None:
    key = fresh_key("empty")
    with target.connect() as c:
        exchanges = [
            (b"GET " + key, b"_", "never set"),
            (b"SET " + key + b" ", b"+OK", "the empty value"),
            (b"GET " + key, b"$", "the empty value set in line mode"),
            (b"DEL " + key, b":1", "the empty value is a value"),
            (b"GET " + key, b"_", "deleted"),
            (b"DEL " + key, b":0", "already deleted"),
            (b"SET " + key + b" ", b"+OK", "the empty value again"),
        ]
        for request, reply, why in exchanges:
            c.ask(request, reply, why)
        if not target.declared.has("framed"):
            return
        c.switch_to_framed()
        for request, reply, why in (
            (b"GET " + key, b"$", "the empty value set in line mode"),
            (b"DEL " + key, b":1", "the empty value is a value"),
            (b"GET " + key, b"_", "deleted"),
            (b"SET " + key + b" ", b"+OK", "the empty value"),
            (b"GET " + key, b"$", "the empty value set in framed mode"),
        ):
            c.ask(request, reply, why)


# ---- CH-STORE-5 ---------------------------------------------------------------------------

# Suffixes that a server folding case, decoding text or normalising Unicode
# would merge: ASCII case; UTF-8 e-acute, E-acute and e + combining acute;
# Latin-1 e-acute and E-acute; bytes that are invalid UTF-8 (a lossy decoder
# turns each into U+FFFD) and U+FFFD itself; the Kelvin sign, which Unicode
# case folding maps to k.
KEY_SUFFIXES = [
    b"k",
    b"K",
    b"\xc3\xa9",
    b"\xc3\x89",
    b"e\xcc\x81",
    b"\xe9",
    b"\xc9",
    b"\x80",
    b"\x81",
    b"\xfe",
    b"\xff",
    b"\xef\xbf\xbd",
    b"\xe2\x84\xaa",
]


@requirement("CH-STORE-5")
def test_keys_differing_in_case_or_in_high_bytes_are_distinct(target: Target) -> None:
    base = fresh_key("case")
    keys = [base + suffix for suffix in KEY_SUFFIXES] + [base.upper()]
    values = [b"value %d" % n for n in range(len(keys))]
    with target.connect() as c:
        for key, value in zip(keys, values, strict=True):
            c.ask(b"SET " + key + b" " + value, b"+OK")
        for key, value in zip(keys, values, strict=True):
            c.ask(b"GET " + key, b"$" + value, why=f"key {escape(key)}: each key was set to its own value")
        c.ask(b"GET " + base, b"_", why=f"{escape(base)} itself was never set")
        for request, reply in (
            (b"DEL " + keys[0], b":1"),
            (b"GET " + keys[1], b"$" + values[1]),
            (b"INCR " + keys[0], b":1"),
            (b"GET " + keys[1], b"$" + values[1]),
        ):
            c.ask(request, reply, why=f"{escape(keys[0])} and {escape(keys[1])} are different keys")
