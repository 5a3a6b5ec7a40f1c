"""CH-ROBUST: what a slow, broken or hostile peer must not be able to do to a
server (PROTOCOL.md section 19).

Each check attacks an instance of its own where the suite starts the server
(the shared one of an --address target otherwise), while a legitimate client,
served since before the attack began, keeps asking and checking its answers
on another connection; its p99 round trip is recorded. After each attack the
store still holds that client's value and a new connection's PING is answered.

Memory and descriptors are read with psutil over the server's whole process
tree, for a --cmd process and a container alike. A requirement whose verdict
needs them is UNSUPPORTED where the suite does not own the process
(--address): never a PASS.

The default sizes take about a minute for the five checks together on a
two-core machine, fresh instances included; --robust-scale F makes every
attack F times larger (connections, requests, rounds and durations).

Every socket operation has a deadline, every loop is bounded by a count and
a deadline, and only the target's own address is dialled.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import math
import select
import socket
import struct
import sys
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from suite.api import FreshTarget, Measure, Unsupported, Violation, fresh_key, not_applicable, requirement
from suite.checks.connections import (
    BUSY_GRACE,
    LegitimateClient,
    ProcessTree,
    connect_served,
    expect_still_serving,
    own_instance,
    p99,
)
from suite.escape import escape
from suite.probe import Probe
from suite.run_state import state_of
from suite.targets.base import Target
from suite.wire import Ending, Transcript, WireTimeout, frame, frame_header

DEFAULT_MAX_OUTPUT = 1 << 20  # section 19: the mark of a server that does not declare max_output
NEEDS_PROCESS = (
    "this requirement is judged by the server's {what}, which the suite reads only from a process it "
    "started (--cmd, --reference or --image); an --address target's processes are not its to watch"
)


@contextlib.contextmanager
def watched_instance(
    target: Target, fresh_target: FreshTarget, what: str, why: str
) -> Iterator[tuple[Target, ProcessTree]]:
    """A fresh instance and its process tree, for a requirement judged by the
    server's ``what``; UNSUPPORTED where the suite does not own the process."""
    if not target.owned:
        raise Unsupported(NEEDS_PROCESS.format(what=what))
    with fresh_target(why=why) as instance:
        tree = ProcessTree.of(instance)
        assert tree is not None  # the suite started it
        yield instance, tree


def robust_scale(request: pytest.FixtureRequest) -> float:
    """--robust-scale: how much larger than the default every attack is."""
    return state_of(request.config).settings.robust_scale


def scaled(count: float, scale: float) -> int:
    return max(1, math.ceil(count * scale))


# ---- a connection for an attack ------------------------------------------------------------

# How a send ended: all sent; no byte left for a while (the peer stopped
# reading); the time was up first; the connection failed.
Pushed = Literal["sent", "stalled", "time", "ended"]


class RawConnection:
    """A plain TCP connection that sends in bulk: no transcript (a transcript of
    megabytes explains nothing; the check says what it sent), every wait with a
    deadline, and the kernel's view of both ends at hand."""

    def __init__(self, target: Target, receive_buffer: int | None = None) -> None:
        host, port = target.endpoint.host, target.endpoint.port
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            if receive_buffer is not None:
                # Before connect, so that the window the server sees is small from the start.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.settimeout(target.timeout)
            sock.connect(address)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.sent = 0
        self.ending = ""  # why the connection ended, once it has

    def push(self, data: bytes, stall: float, within: float) -> Pushed:
        """Send ``data``: "sent"; or "stalled" when no byte left for ``stall`` s
        (the peer stopped reading), "time" when ``within`` s passed first,
        "ended" when the connection failed."""
        deadline = time.monotonic() + within
        view = memoryview(data)
        poller = select.poll()
        poller.register(self.sock, select.POLLOUT)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                return "time"
            if not poller.poll(min(stall, left) * 1000):
                return "stalled" if left > stall else "time"
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                continue
            except OSError as error:
                self.ending = str(error)
                return "ended"
            self.sent += sent
            view = view[sent:]
        return "sent"

    def stream(self, chunk: bytes, stall: float, within: float) -> Pushed:
        """``chunk`` again and again, until it stalls, the time is up or the connection ends."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            outcome = self.push(chunk, stall, left)
            if outcome != "sent":
                return outcome
        return "time"

    def unread_here(self) -> int:
        """Bytes the kernel has received for us that we have not read (FIONREAD)."""
        return _ioctl_int(self.sock, termios.FIONREAD)

    def unsent_here(self) -> int:
        """Bytes we sent that the kernel has not delivered to the peer yet (SIOCOUTQ)."""
        return _ioctl_int(self.sock, termios.TIOCOUTQ)

    def peer_queues(self, pid: int | None) -> tuple[int, int] | None:
        """The server's end of this connection: (bytes in its send queue, bytes
        in its receive queue), read from the kernel's table of TCP sockets, or
        None where that end is not on this machine's kernel tables we can read."""
        return tcp_queues(self.sock.getpeername()[:2], self.sock.getsockname()[:2], pid)

    def receive(self, size: int, within: float) -> bytes:
        """``size`` bytes, or fewer if the connection ends or ``within`` seconds pass."""
        deadline = time.monotonic() + within
        received = bytearray()
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        while len(received) < size and (left := deadline - time.monotonic()) > 0:
            if not poller.poll(left * 1000):
                break
            try:
                chunk = self.sock.recv(min(size - len(received), 1 << 20))
            except BlockingIOError:
                continue
            except OSError as error:
                self.ending = str(error)
                break
            if not chunk:
                self.ending = "clean close (FIN)"
                break
            received += chunk
        return bytes(received)

    def wait_for_end(self, within: float) -> None:
        """Read and drop whatever comes until the peer ends the connection or ``within`` passes."""
        deadline = time.monotonic() + within
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        while (left := deadline - time.monotonic()) > 0:
            if not poller.poll(left * 1000):
                return
            try:
                if not self.sock.recv(65536):
                    return
            except BlockingIOError:
                continue
            except OSError:
                return

    def reset(self) -> None:
        """Close with RST: the server learns at once that nobody is left to read."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def _ioctl_int(sock: socket.socket, request: int) -> int:
    result = fcntl.ioctl(sock.fileno(), request, struct.pack("i", 0))
    return int(struct.unpack("i", result)[0])


def tcp_queues(local: tuple[str, int], remote: tuple[str, int], pid: int | None) -> tuple[int, int] | None:
    """(tx_queue, rx_queue) of the TCP socket bound to ``local`` and connected
    to ``remote``, from /proc/<pid>/net (the server's network namespace, for a
    container) or this machine's /proc/net."""
    wanted = {(_proc_address(local, v6), _proc_address(remote, v6)) for v6 in (False, True)}
    tables = [f"/proc/{pid}/net/tcp", f"/proc/{pid}/net/tcp6"] if pid is not None else []
    for path in [*tables, "/proc/net/tcp", "/proc/net/tcp6"]:
        try:
            rows = Path(path).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 4 and (fields[1], fields[2]) in wanted:
                tx, _, rx = fields[4].partition(":")
                return int(tx, 16), int(rx, 16)
    return None


def _proc_address(address: tuple[str, int], v6: bool) -> str:
    """An address as /proc/net/tcp{,6} prints it: each 32-bit word of the
    address in the kernel's byte order, in hex, then the port."""
    host, port = address
    if ":" in host:
        raw = socket.inet_pton(socket.AF_INET6, host)
    elif v6:
        raw = socket.inet_pton(socket.AF_INET6, "::ffff:" + host)  # a v4 peer of a dual-stack socket
    else:
        raw = socket.inet_aton(host)
    words = "".join(f"{int.from_bytes(raw[i : i + 4], sys.byteorder):08X}" for i in range(0, len(raw), 4))
    return f"{words}:{port:04X}"


def largest_send_buffer() -> int:
    """The largest send buffer the kernel grows a TCP socket to here (tcp_wmem's maximum)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 << 20  # Linux's default


def declared_max_output(target: Target) -> int:
    text = target.declared.pairs.get("max_output", "")
    return int(text) if text.isdigit() and int(text) > 0 else DEFAULT_MAX_OUTPUT


def mib(count: int | float) -> str:
    return f"{count / (1 << 20):.1f} MiB"


# ---- CH-ROBUST-1 ---------------------------------------------------------------------------

BIG_VALUE_CAP = 1 << 20
REPLIES_ASKED = 64 << 20  # bytes of replies the pipelined GETs ask for
MAX_PAIRS = 65536  # a server with a small max_line gets small values: cap the requests instead
ATTACKER_RECEIVE_BUFFER = 64 << 10
STALL = 1.0  # no byte left for this long: the server has stopped reading
STREAM_FOR = 4.0
SMALL_REPLIES = 64 << 10  # the INCR replies among the GETs' (section 19)
PUSH_WITHIN = 10.0


def store_big_value(target: Target, key: bytes) -> bytes:
    """The largest value the target's framing carries (at most 1 MiB), stored
    under ``key`` on a connection that is closed again (a serial server has one slot)."""
    framed = target.declared.has("framed")
    if framed:
        size = min(BIG_VALUE_CAP, target.declared.number("max_frame") - len(b"SET " + key + b" "))
    else:
        size = min(BIG_VALUE_CAP, target.declared.number("max_line") - len(b"SET " + key + b" \r\n"))
    if size < 1:
        raise Unsupported("max_line and max_frame leave no room for a value, so no reply can be bigger than a request")
    value = b"v" * size
    with target.connect("storing the value the GETs ask for") as c:
        if framed:
            c.switch_to_framed()
        c.ask(b"SET " + key + b" " + value, b"+OK", why="storing a big value", timeout=max(c.timeout, 10.0))
        c.request(b"QUIT")
        c.wire.wait_for_end(2.0)  # its slot is free again before the attack
    return value


def read_counters(target: Target, keys: list[bytes]) -> list[int]:
    with connect_served(target, "reading the counters", judge=False) as c:
        counts = []
        for key in keys:
            c.request(b"GET " + key)
            line = c.line(f"the value of {key.decode()}")
            if line == b"_\r\n":
                counts.append(0)
            elif line.startswith(b"$") and line[1:-2].isdigit():
                counts.append(int(line[1:-2]))
            else:
                raise c.violation(f"GET of a counter got {escape(line)}", expected="$<n> or _", actual=line)
        return counts


def incr_replies(count: int) -> int:
    """The bytes of the replies :1 to :count (line mode)."""
    total, width, start = 0, 1, 1
    while start <= count:
        end = min(count, 10**width - 1)
        total += (end - start + 1) * (width + 3)
        start, width = end + 1, width + 1
    return total


@dataclass
class NonReaderPlan:
    """What the client that never reads sends: ``pairs`` times GET of a big
    value with an INCR of ``gets``, then INCRs of ``stream`` until it stalls."""

    big: bytes
    gets: bytes
    stream: bytes
    value_size: int
    pairs: int
    mark: int

    @property
    def reply(self) -> int:
        return self.value_size + 3  # "$" value CRLF

    @property
    def pair(self) -> bytes:
        return b"GET " + self.big + b"\r\nINCR " + self.gets + b"\r\n"


@dataclass
class NonReaderOutcome:
    pushed: Pushed  # how the pipelined pairs went out
    streamed: Pushed | None  # how the stream of INCRs ended (None if it never started)
    sent: int  # bytes the kernel took from the client
    unsent: int  # of them, not yet delivered to the server's kernel
    unread_here: int  # reply bytes waiting, unread, in the client's kernel
    server_queues: tuple[int, int] | None  # the server's (unsent, unread) bytes, where readable
    grown: int | None  # the server's memory growth, where it is ours to read
    executed: int = 0  # GETs the server ran (their INCRs counted)
    streamed_executed: int = 0  # streamed INCRs the server ran

    def produced(self, plan: NonReaderPlan) -> int:
        """The reply bytes the executed requests stand for."""
        return self.executed * plan.reply + incr_replies(self.executed) + incr_replies(self.streamed_executed)


@requirement("CH-ROBUST-1")
def test_a_client_that_never_reads_holds_at_most_the_mark_plus_one_reply(
    target: Target, fresh_target: FreshTarget, measure: Measure, request: pytest.FixtureRequest
) -> None:
    scale = robust_scale(request)
    with own_instance(target, fresh_target, why="a client that never reads fills one connection's output") as t:
        big = fresh_key("big")
        value = store_big_value(t, big)
        pairs = min(scaled(MAX_PAIRS, scale), scaled(REPLIES_ASKED / (len(value) + 3), scale))
        plan = NonReaderPlan(big, fresh_key("gets"), fresh_key("stream"), len(value), pairs, declared_max_output(t))
        tree = ProcessTree.of(t)
        legitimate = LegitimateClient.beside(t)
        try:
            outcome = _never_read(t, tree, plan, scale)
        finally:
            if legitimate is not None:
                legitimate.stop()
        outcome.executed, outcome.streamed_executed = read_counters(t, [plan.gets, plan.stream])
        _record_never_read(measure, outcome, plan, legitimate)
        _judge_never_read(outcome, plan)
        _a_reader_after_the_mark_gets_every_reply(t, plan, scale)
        if legitimate is not None:
            legitimate.judge("an attack by a client that never reads")
        expect_still_serving(t, legitimate, "an attack by a client that never reads")


def _never_read(t: Target, tree: ProcessTree | None, plan: NonReaderPlan, scale: float) -> NonReaderOutcome:
    """Pipeline the pairs, then stream INCRs until the sends stall, reading
    nothing; then look at both ends' kernel queues and the server's memory, and reset."""
    before = tree.memory() if tree is not None else None
    attacker = RawConnection(t, receive_buffer=ATTACKER_RECEIVE_BUFFER)  # the client that never reads
    try:
        pushed = attacker.push(plan.pair * plan.pairs, STALL, PUSH_WITHIN * scale)
        streamed: Pushed | None = None
        if pushed == "sent":
            streamed = attacker.stream((b"INCR " + plan.stream + b"\r\n") * 2048, STALL, STREAM_FOR * scale)
        pid = t.process.pid if t.process is not None else None
        return NonReaderOutcome(
            pushed,
            streamed,
            attacker.sent,
            attacker.unsent_here(),
            attacker.unread_here(),
            attacker.peer_queues(pid),
            tree.memory() - before if tree is not None and before is not None else None,
        )
    finally:
        attacker.reset()


def _record_never_read(
    measure: Measure, outcome: NonReaderOutcome, plan: NonReaderPlan, legitimate: LegitimateClient | None
) -> None:
    delivered = outcome.sent - outcome.unsent
    if outcome.server_queues is not None:
        measure(
            "request bytes the server read before it stopped reading",
            delivered - outcome.server_queues[1],
            "bytes",
            note=f"{delivered} reached its kernel; {outcome.server_queues[1]} of them were still unread there",
        )
    else:
        measure("request bytes the server's kernel took before the sends stalled", delivered, "bytes")
    measure(
        "GETs executed for a client that never reads",
        outcome.executed,
        "requests",
        note=f"of {plan.pairs} pipelined, each asking for {plan.value_size} bytes (from the INCR after each GET: "
        "one more GET may have run, its INCR waiting behind the mark)",
    )
    measure("replies produced for it", outcome.produced(plan), "bytes")
    if outcome.grown is not None:
        measure(
            "growth of the server's memory (PSS over its process tree)", outcome.grown, "bytes", note="at the stall"
        )
    if legitimate is not None:
        legitimate.record(measure, "the attack")


def _judge_never_read(outcome: NonReaderOutcome, plan: NonReaderPlan) -> None:
    if outcome.server_queues is not None:
        server_unsent, where = outcome.server_queues[0], "in the server's send queue, read from the kernel"
    else:
        server_unsent, where = largest_send_buffer(), "at most, in the server's send queue (this kernel's largest)"
    produced = outcome.produced(plan)
    in_kernels = outcome.unread_here + server_unsent
    held = produced - in_kernels
    allowed = plan.mark + plan.reply + SMALL_REPLIES
    if held > allowed:
        raise Violation(
            f"a client pipelined {plan.pairs} GETs of a {plan.value_size}-byte value (each with an INCR) and read "
            f"nothing: the server executed {outcome.executed} of them, {mib(produced)} of replies; the kernels held "
            f"{mib(in_kernels)} ({outcome.unread_here} bytes unread by the client, {server_unsent} {where}), "
            f"so {mib(held)} waited in the server: more than max_output={plan.mark} plus one reply",
            expected=f"at most {allowed} bytes of pending output (max_output + one reply + 64 KiB of small replies)",
            actual=f"{held} bytes",
        )
    if "time" in (outcome.pushed, outcome.streamed):
        raise Violation(
            f"the server kept reading a connection whose replies nobody read: the client's sends never stalled "
            f"for {STALL:g} s ({mib(outcome.sent)} sent)",
            expected=f"the sends stall once the output passes max_output={plan.mark} and the kernels' buffers fill",
            actual=f"{outcome.sent} bytes taken, still taking",
        )


SLOW_READER_REPLIES = 16 << 20  # bytes of replies asked for before reading: past the mark and the kernels
SLOW_READER_WITHIN = 30.0
SLOW_READER_REQUESTS = 64 << 10  # bytes of GETs: few enough for the kernels to take them all unread


def _a_reader_after_the_mark_gets_every_reply(t: Target, plan: NonReaderPlan, scale: float) -> None:
    """The pause at the mark ends when the peer reads: GETs pipelined past the
    mark and the kernels' buffers, read only once all are sent, all come back."""
    request = b"GET " + plan.big + b"\r\n"
    # All the requests fit in the kernels' buffers, so that they are all sent before the reading starts.
    count = min(SLOW_READER_REQUESTS // len(request), max(2, math.ceil(SLOW_READER_REPLIES * scale / plan.reply)))
    reply = b"$" + b"v" * plan.value_size + b"\r\n"
    reader = RawConnection(t)  # a client that reads only once it has sent all its GETs
    try:
        if reader.push(request * count, STALL, PUSH_WITHIN) != "sent":
            raise Violation(
                f"{count} GETs ({len(request) * count} bytes) could not be sent before reading: "
                + (reader.ending or "the sends stalled")
            )
        for index in range(count):
            got = reader.receive(len(reply), SLOW_READER_WITHIN * scale / count + STALL)
            if got != reply:
                raise Violation(
                    f"a client pipelined {count} GETs of a {plan.value_size}-byte value and read only once it had "
                    f"sent them all: reply {index + 1} of {count} did not come whole"
                    + (f" (the connection ended: {reader.ending})" if reader.ending else "")
                    + ": a connection paused at max_output must resume once its peer reads",
                    expected=f"{count} replies of {len(reply)} bytes, in order",
                    actual=f"{index} whole replies, then {len(got)} bytes: {escape(got[:40])}",
                )
    finally:
        reader.close()


# ---- CH-ROBUST-2 ---------------------------------------------------------------------------

CLAIM_ALLOWANCE = 8 << 20  # section 19: within 8 MiB (a connection's own cost: a forked child) and twice the limit
CLAIM_HOLD = 1.0  # seconds the claim is held open (unless the server closes sooner)
BIG_CLAIM = 64 << 20
LINE_BYTES = 16 << 20
LINE_CHUNK = 1 << 16
SAMPLE_EVERY = 1 << 20


@dataclass
class Growth:
    what: str
    grown: int
    allowed: int


@requirement("CH-ROBUST-2")
def test_memory_does_not_follow_a_claimed_length(
    target: Target, fresh_target: FreshTarget, measure: Measure, request: pytest.FixtureRequest
) -> None:
    scale = robust_scale(request)
    why = "it watches the server's memory while a peer claims huge lengths"
    with watched_instance(target, fresh_target, "memory", why) as (t, tree):
        legitimate = LegitimateClient.beside(t)
        try:
            baseline = tree.memory()
            findings = [*_frame_claims(t, tree, baseline), _line_claim(t, tree, baseline, scale)]
        finally:
            if legitimate is not None:
                legitimate.stop()
        for finding in findings:
            measure(f"memory growth after {finding.what}", finding.grown, "bytes", note=f"allowed {finding.allowed}")
        if legitimate is not None:
            legitimate.record(measure, "the claims")
        excessive = [f for f in findings if f.grown > f.allowed]
        if excessive:
            worst = max(excessive, key=lambda f: f.grown - f.allowed)
            raise Violation(
                f"the server's memory followed a length its peer claimed: it grew by {mib(worst.grown)} after "
                f"{worst.what}" + (f" (and after {len(excessive) - 1} more claims)" if len(excessive) > 1 else ""),
                expected=f"growth of at most {mib(worst.allowed)} (8 MiB and twice the declared limit)",
                actual=f"{worst.grown} bytes",
            )
        if legitimate is not None:
            legitimate.judge("the huge claims")
        expect_still_serving(t, legitimate, "the huge claims")


def _frame_claims(t: Target, tree: ProcessTree, baseline: int) -> Iterator[Growth]:
    if not t.declared.has("framed"):
        return
    max_frame = t.declared.number("max_frame")
    for claim in dict.fromkeys((0xFFFFFFFF, min(0xFFFFFFFF, max(BIG_CLAIM, 4 * (max_frame + 1))))):
        if claim <= max_frame:
            continue  # no claim above the limit can be written in 4 bytes
        with t.connect(f"a frame header claiming {claim} bytes") as c:
            c.switch_to_framed()
            c.send(frame_header(claim))
            # TOOLONG and a close, or nothing (CH-FRAME-12 judges which); the
            # memory is read while the claim may still be held.
            c.wire.wait_for_end(CLAIM_HOLD)
            grown = tree.memory() - baseline
        yield Growth(f"a frame header claiming {claim:,} bytes", grown, CLAIM_ALLOWANCE + 2 * max_frame)


def _line_claim(t: Target, tree: ProcessTree, baseline: int, scale: float) -> Growth:
    max_line = t.declared.number("max_line")
    size = scaled(LINE_BYTES, scale)
    line = RawConnection(t)  # a line without LF
    peak = 0
    try:
        chunk = b"x" * LINE_CHUNK
        next_sample = 0
        while line.sent < size:
            if line.push(chunk, STALL, PUSH_WITHIN) != "sent":
                break  # closed after its TOOLONG (or no longer read): what matters is the memory
            if line.sent >= next_sample:
                peak = max(peak, tree.memory() - baseline)
                next_sample += SAMPLE_EVERY
        line.wait_for_end(CLAIM_HOLD)
        peak = max(peak, tree.memory() - baseline)
    finally:
        line.close()
    return Growth(f"a line of {line.sent:,} bytes without LF", peak, CLAIM_ALLOWANCE + 2 * max_line)


# ---- CH-ROBUST-3 ---------------------------------------------------------------------------

GARBAGE_REQUESTS = 20_000
GARBAGE_BATCH = 40
GARBAGE_FRAMED_SHARE = 0.25
GARBAGE_WITHIN = 60.0  # the whole flood, at the default size
BATCH_WITHIN = 5.0
EXAMPLES_PER_RUN = 200
# They end the connection, switch its mode or hold it: kept out of the garbage.
DISRUPTIVE = frozenset({b"QUIT", b"FRAMED", b"STARTTLS", b"SLEEP"})
COMMAND_WORDS = (b"PING", b"ECHO", b"SET", b"GET", b"DEL", b"INCR", b"INFO")

garbage_payload = st.one_of(
    st.binary(max_size=120),
    st.tuples(
        st.sampled_from(COMMAND_WORDS + tuple(word.lower() for word in COMMAND_WORDS)),
        st.sampled_from((b" ", b"  ", b"", b"\t", b"\r")),
        st.binary(max_size=80),
    ).map(b"".join),
    st.lists(
        st.sampled_from((b" ", b"\r", b"\x00", b"\xff", b"\x80", b"\xc3", b"a", b"9", b"-", b"\t", b"\x7f")),
        max_size=60,
    ).map(b"".join),
)
garbage_batch = st.lists(
    st.tuples(garbage_payload, st.sampled_from((b"\r\n", b"\n"))), min_size=1, max_size=GARBAGE_BATCH
)


def defused(payload: bytes) -> bytes:
    """The payload, unless its command is one that ends, switches or holds the connection."""
    return b"X" + payload if payload.partition(b" ")[0].upper() in DISRUPTIVE else payload


def garbage_line(payload: bytes, terminator: bytes, max_line: int) -> bytes:
    body = payload.replace(b"\n", b"")[: max(0, max_line - 3)]
    # What the server takes for the payload (section 4 drops one CR before the LF).
    seen = body[:-1] if terminator == b"\n" and body.endswith(b"\r") else body
    if defused(seen) != seen:
        body = b"X" + body
    return body + terminator


class GarbageFlood:
    """Sends garbage in batches on one connection (opened again whenever the
    server closes it), each batch followed by an ECHO that marks its end. The
    first sign that the server stopped serving is kept, with the batch that
    came before it; after that, nothing more is sent."""

    def __init__(self, target: Target, framed: bool) -> None:
        self.target = target
        self.framed = framed
        self.max_line = target.declared.number("max_line")
        self.max_frame = target.declared.number("max_frame")
        self.requests = 0
        self.batches = 0
        self.reopened = 0  # connections the server closed (or left unanswered) during the flood
        self.problem: Violation | None = None
        self._probe: Probe | None = None
        self._last_batch: Transcript | None = None  # what the last batch sent and got

    def send(self, batch: list[tuple[bytes, bytes]]) -> None:
        if self.problem is not None:
            return
        probe = self._connection()
        if probe is None:
            return
        self.batches += 1
        marker = b"sockspec-garbage-end-%d" % self.batches
        if self.framed:
            data = b"".join(frame(defused(p)[: self.max_frame]) for p, _ in batch) + frame(b"ECHO " + marker)
        else:
            data = b"".join(garbage_line(p, end, self.max_line) for p, end in batch) + b"ECHO " + marker + b"\r\n"
        probe.wire.transcript.records.clear()  # an explanation shows the last batch only
        self._last_batch = probe.wire.transcript
        self.requests += len(batch)
        try:
            probe.wire.send(data, BATCH_WITHIN)
        except (OSError, WireTimeout) as error:  # a reset, or a full window: what came back is judged below
            probe.wire.transcript.add("--", f"sending failed: {error!r}".encode())
        if not self._marker_seen(probe, marker):
            self.reopened += 1
            probe.close()
            self._probe = None

    def _marker_seen(self, probe: Probe, marker: bytes) -> bool:
        deadline = time.monotonic() + BATCH_WITHIN
        wanted = b"$" + marker
        while (left := deadline - time.monotonic()) > 0:
            if self.framed:
                got = probe.wire.read_frame(left)
            else:
                line = probe.wire.read_line(left)
                got = line[:-2] if line is not None and line.endswith(b"\r\n") else line
            if got is None:
                return False
            if got == wanted:
                return True
        return False

    def _connection(self) -> Probe | None:
        if self._probe is not None:
            return self._probe
        try:
            probe = connect_served(self.target, "garbage connection", grace=BUSY_GRACE, judge=True)
            if self.framed:
                probe.switch_to_framed()
        except (OSError, Violation) as error:
            self._stopped(error)
            return None
        self._probe = probe
        return probe

    def _stopped(self, error: BaseException) -> None:
        died = self.target.process.exit_report() if self.target.process is not None else None
        transcripts: list[Transcript] = []
        if isinstance(error, Violation):
            transcripts = error.transcripts
        self.problem = Violation(
            f"after {self.requests} garbage requests ({self.batches} batches), the server no longer serves a new "
            f"connection: {getattr(error, 'summary', error)}" + (f"; {died}" if died else ""),
            expected="a new connection served (+PONG), whatever garbage came before",
            actual=str(getattr(error, "summary", error)),
            transcripts=[*([self._last_batch] if self._last_batch else []), *transcripts],
        )

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()


Batch = tuple[tuple[bytes, bytes], ...]


@functools.cache
def garbage_batches(run_seed: int, framed: bool, count: int) -> tuple[Batch, ...]:
    """Batches of ``count`` garbage requests in all, as Hypothesis draws them
    from the run's seed. They are the same for every target of a run, so a
    process draws them once: drawing, not sending, is most of the flood's time."""
    batches: list[Batch] = []
    drawn = 0
    round_number = 0
    while drawn < count:
        round_number += 1

        @seed(run_seed * 1000 + round_number + (500 if framed else 0))
        @settings(
            max_examples=EXAMPLES_PER_RUN,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        @given(batch=garbage_batch)
        def draw(batch: list[tuple[bytes, bytes]]) -> None:
            nonlocal drawn
            if drawn < count:
                batches.append(tuple(batch))
                drawn += len(batch)

        draw()
    return tuple(batches)


def flood(target: Target, framed: bool, count: int, within: float, run_seed: int) -> GarbageFlood:
    """``count`` garbage requests (or as many as ``within`` seconds allow), in
    batches that Hypothesis draws, reproducible from the run's seed."""
    garbage = GarbageFlood(target, framed)
    deadline = time.monotonic() + within
    for batch in garbage_batches(run_seed, framed, count):
        if garbage.problem is not None or time.monotonic() >= deadline:
            break
        garbage.send(list(batch))
    garbage.close()
    return garbage


@requirement("CH-ROBUST-3")
def test_no_garbage_stops_the_server(
    target: Target, fresh_target: FreshTarget, measure: Measure, request: pytest.FixtureRequest
) -> None:
    scale = robust_scale(request)
    run_seed = state_of(request.config).settings.seed
    with own_instance(target, fresh_target, why="it floods the server with garbage") as t:
        total = scaled(GARBAGE_REQUESTS, scale)
        framed_share = round(total * GARBAGE_FRAMED_SHARE) if t.declared.has("framed") else 0
        legitimate = LegitimateClient.beside(t)
        started = time.monotonic()
        try:
            floods = [flood(t, False, total - framed_share, GARBAGE_WITHIN * scale, run_seed)]
            if framed_share and floods[0].problem is None:
                floods.append(flood(t, True, framed_share, GARBAGE_WITHIN * scale, run_seed))
        finally:
            if legitimate is not None:
                legitimate.stop()
        sent = sum(f.requests for f in floods)
        measure(
            "garbage requests sent",
            sent,
            "requests",
            note=f"in {sum(f.batches for f in floods)} batches, {time.monotonic() - started:.1f} s"
            + (f", {framed_share} planned as frames" if framed_share else ""),
        )
        measure(
            "connections closed or left unanswered during the flood", sum(f.reopened for f in floods), "connections"
        )
        if legitimate is not None:
            legitimate.record(measure, "the garbage")
        for garbage in floods:
            if garbage.problem is not None:
                raise garbage.problem
        if legitimate is not None:
            legitimate.judge("the garbage")
        expect_still_serving(t, legitimate, "the garbage")


# ---- CH-ROBUST-4 ---------------------------------------------------------------------------

CHURN_WARM_UP = 500
CHURN_ROUNDS = 3
CHURN_PER_ROUND = 1500
CHURN_WITHIN = 60.0  # per round, at the default size
MEMORY_MARGIN = 4 << 20  # section 19
SETTLE_WITHIN = 5.0
CHURN_STYLES = (
    "a PING answered, then a FIN",
    "a FIN at once",
    "a PING, then an RST without reading",
    "half a request, then an RST",
    "QUIT, and the server's close",
)


def churn_once(target: Target, style: int) -> None:
    """One short connection, in one of the five ways; whatever the server does
    (a BUSY refusal included) is fine here, as long as it lets go of it."""
    with contextlib.suppress(OSError):
        sock = socket.create_connection((target.endpoint.host, target.endpoint.port), timeout=target.timeout)
        with sock:
            if style == 0:
                sock.sendall(b"PING\r\n")
                _read_until(sock, lambda data: b"\n" in data)
            elif style in (2, 3):
                sock.sendall(b"PING\r\n" if style == 2 else b"SET half-a-requ")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif style == 4:
                sock.sendall(b"QUIT\r\n")
                _read_until(sock, lambda data: False)  # to the server's FIN


def _read_until(sock: socket.socket, done: Callable[[bytes], bool]) -> None:
    received = b""
    while len(received) < READ_CAP:
        chunk = sock.recv(4096)  # bounded by the socket's timeout
        if not chunk:
            return
        received += chunk
        if done(received):
            return


READ_CAP = 1 << 16


@dataclass
class Snapshot:
    descriptors: int
    memory: int
    processes: int


def settled_snapshot(tree: ProcessTree, baseline: Snapshot) -> Snapshot:
    """Descriptors and processes back to the baseline (or as near as they get
    within the settle time), then the memory."""
    descriptors = tree.settled(tree.descriptors, baseline.descriptors, SETTLE_WITHIN)
    processes = tree.settled(tree.count, baseline.processes, SETTLE_WITHIN)
    return Snapshot(descriptors, tree.memory(), processes)


@requirement("CH-ROBUST-4")
def test_closed_connections_leave_nothing_behind(
    target: Target, fresh_target: FreshTarget, measure: Measure, request: pytest.FixtureRequest
) -> None:
    scale = robust_scale(request)
    why = "it counts the server's descriptors and memory around thousands of connections"
    with watched_instance(target, fresh_target, "descriptors and memory", why) as (t, tree):
        max_connections = t.declared.number("max_connections")
        # The older connection that stays open and idle: a timer queue that only
        # drops entries from its top keeps every later connection behind it.
        idle = connect_served(t, "an idle connection, open throughout", judge=False) if max_connections >= 2 else None
        legitimate = LegitimateClient.beside(t, attack_connections=2) if max_connections >= 3 else None
        rounds = scaled(CHURN_ROUNDS, scale)
        per_round = scaled(CHURN_PER_ROUND, 1.0)
        made = 0
        try:
            # The warm-up gives back what it took: the baseline is taken once the
            # descriptors and processes are down to their count before it.
            before_warm_up = Snapshot(tree.descriptors(), 0, tree.count())
            _churn(t, CHURN_WARM_UP, CHURN_WITHIN)
            baseline = settled_snapshot(tree, before_warm_up)
            for _ in range(rounds):
                made += _churn(t, per_round, CHURN_WITHIN)
            after = settled_snapshot(tree, baseline)
        finally:
            if legitimate is not None:
                legitimate.stop()
        if idle is not None:
            idle.ask(b"PING", b"+PONG", why="the idle connection, open since before the churn")
            idle.close()
        _record_churn(measure, baseline, after, made, legitimate)
        _judge_churn(baseline, after, made)
        if legitimate is not None:
            legitimate.judge("the churn")
        expect_still_serving(t, legitimate, "the churn")


def _churn(target: Target, count: int, within: float) -> int:
    deadline = time.monotonic() + within
    made = 0
    while made < count and time.monotonic() < deadline:
        churn_once(target, made % len(CHURN_STYLES))
        made += 1
    return made


def _record_churn(
    measure: Measure, baseline: Snapshot, after: Snapshot, made: int, legitimate: LegitimateClient | None
) -> None:
    ways = "; ".join(CHURN_STYLES)
    measure("short connections made and closed", made, "connections", note=f"in turn: {ways}")
    grown = after.memory - baseline.memory
    measure(
        "open descriptors, after less before",
        after.descriptors - baseline.descriptors,
        "descriptors",
        note=f"{baseline.descriptors} before, {after.descriptors} after",
    )
    per_connection = f"{grown / max(1, made):.0f} bytes per connection"
    measure(
        "memory growth (PSS over the process tree)",
        grown,
        "bytes",
        note=f"{mib(baseline.memory)} before; {per_connection}",
    )
    if legitimate is not None:
        legitimate.record(measure, "the churn")


def _judge_churn(baseline: Snapshot, after: Snapshot, made: int) -> None:
    leaked = after.descriptors - baseline.descriptors
    if leaked > 0:
        raise Violation(
            f"after {made} short connections (FINs and RSTs), the server's process tree holds {leaked} more open "
            f"descriptors than before, {SETTLE_WITHIN:g} s after the last close",
            expected=f"{baseline.descriptors} open descriptors, as before",
            actual=f"{after.descriptors}",
        )
    grown = after.memory - baseline.memory
    if grown > MEMORY_MARGIN:
        raise Violation(
            f"after {made} short connections beside an idle one, the server's memory grew by {mib(grown)} "
            f"({grown / made:.0f} bytes per connection) and stayed so: closed connections are kept",
            expected=f"memory back to within {mib(MEMORY_MARGIN)} of {mib(baseline.memory)}",
            actual=f"{mib(after.memory)}",
        )


# ---- CH-ROBUST-5 ---------------------------------------------------------------------------

SLOWLORIS_CAP = 256
SLOWLORIS_FOR = 3.0
SLOWLORIS_TICK = 0.2
NEW_CLIENT_EVERY = 0.5
NEW_CLIENT_WITHIN = 1.0  # the spec's bound
MARGIN = 0.3  # scheduling on a loaded two-core machine, on top of the bound


class SlowConnections:
    """Connections opened at once, each sending one more byte of a request it never finishes."""

    def __init__(self, target: Target, count: int) -> None:
        family, kind, proto, _, address = socket.getaddrinfo(
            target.endpoint.host, target.endpoint.port, type=socket.SOCK_STREAM
        )[0]
        self.limit = max(1, target.declared.number("max_line") - 2)
        self.request = b"SET slowloris " + b"x" * self.limit
        self.sockets: list[socket.socket] = []
        self.sent: list[int] = []
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            sock.connect_ex(address)
            self.sockets.append(sock)
            self.sent.append(0)

    def next_byte(self) -> None:
        for index, sock in enumerate(self.sockets):
            if self.sent[index] >= self.limit:
                continue  # never the whole line: it would be too long
            with contextlib.suppress(OSError):  # still connecting, or closed by the server's idle timer
                self.sent[index] += sock.send(self.request[self.sent[index] : self.sent[index] + 1])

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def time_a_new_client(target: Target, label: str) -> tuple[float, str]:
    """Seconds from connect to +PONG, and what came instead if it did not; the
    connection is closed and its slot freed again (the server's close awaited)."""
    started = time.monotonic()
    try:
        probe = target.connect(label)
    except OSError as error:
        return time.monotonic() - started, f"connect failed: {error}"
    with probe:
        probe.request(b"PING")
        line = probe.wire.read_line(NEW_CLIENT_WITHIN * 5)
        elapsed = time.monotonic() - started
        with contextlib.suppress(OSError, Violation):
            probe.request(b"QUIT")
            probe.wire.wait_for_end(2.0)
    if line != b"+PONG\r\n":
        ending = probe.wire.ending
        return elapsed, escape(line) if line is not None else ending.value if ending is not Ending.OPEN else "nothing"
    return elapsed, ""


@requirement("CH-ROBUST-5")
def test_slow_requests_do_not_hold_up_the_others(
    target: Target, fresh_target: FreshTarget, measure: Measure, request: pytest.FixtureRequest
) -> None:
    max_connections = target.declared.number("max_connections")
    if max_connections < 3:
        not_applicable(f"applies when max_connections >= 3; the target declares max_connections={max_connections}")
    scale = robust_scale(request)
    with own_instance(target, fresh_target, why="it holds most connection slots with slow requests") as t:
        legitimate = LegitimateClient.beside(t, attack_connections=2)
        count = min(max_connections - 2, scaled(SLOWLORIS_CAP, scale))
        slow = SlowConnections(t, count)
        new_clients: list[tuple[str, float, str]] = []
        try:
            new_clients.append(("right after the burst", *time_a_new_client(t, "a new connection after the burst")))
            until = time.monotonic() + SLOWLORIS_FOR * scale
            next_client = time.monotonic() + NEW_CLIENT_EVERY
            while (left := until - time.monotonic()) > 0:
                slow.next_byte()
                if time.monotonic() >= next_client:
                    label = f"a new connection {len(new_clients)}"
                    new_clients.append(("during the trickle", *time_a_new_client(t, label)))
                    next_client = time.monotonic() + NEW_CLIENT_EVERY
                with contextlib.suppress(OSError):
                    select.select([], [], [], min(SLOWLORIS_TICK, left))  # the pace of the trickle
        finally:
            slow.close()
            if legitimate is not None:
                legitimate.stop()
        latencies = [seconds for _, seconds, _ in new_clients]
        measure("slow connections", count, "connections", note=f"one byte each every {SLOWLORIS_TICK * 1000:g} ms")
        measure("new connection served after the burst", round(latencies[0] * 1000, 1), "ms")
        trickle = latencies[1:]
        measure(
            "new connections' p99 during the trickle",
            round(p99(trickle) * 1000, 1),
            "ms",
            note=f"{len(trickle)} new connections",
        )
        if legitimate is not None:
            legitimate.record(measure, "the slowloris attack")
        late = [(when, s, what) for when, s, what in new_clients if what or s > NEW_CLIENT_WITHIN + MARGIN]
        if late:
            when, seconds, what = late[0]
            raise Violation(
                f"with {count} slow connections open, {len(late)} of {len(new_clients)} new connections were not "
                f"served within {NEW_CLIENT_WITHIN:g} s (+{MARGIN:g} s margin); the first, {when}, "
                + (f"got {what} after {seconds:.2f} s" if what else f"waited {seconds:.2f} s"),
                expected=f"+PONG within {NEW_CLIENT_WITHIN:g} s",
                actual=what or f"{seconds:.2f} s",
            )
        if legitimate is not None:
            legitimate.judge("the slowloris attack")
        expect_still_serving(t, legitimate, "the slowloris attack")
