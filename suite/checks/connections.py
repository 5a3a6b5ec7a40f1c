"""Connections the server is confirmed to be serving, and one reply
collected from many connections with its arrival time: what the CONC, LIMIT
and STORE checks share. At the end, what the ROBUST checks share: the
server's process tree, and a legitimate client that keeps using the server
during an attack."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil

from suite.api import FreshTarget, Timeline, Unsupported, Violation, fresh_key
from suite.escape import escape
from suite.probe import Probe
from suite.targets.base import Target
from suite.wire import Ending, WireTimeout

SLEEP_MS = 500
T = SLEEP_MS / 1000
BUSY = b"-ERR BUSY"
# A busy server counts a connection until it has closed it, so a slot the
# harness (its INFO probe) or an earlier check has just given up can still be
# counted for a moment (section 13 tells checkers to wait for that). Filling
# the slots therefore retries a BUSY for this long before calling it a refusal.
BUSY_GRACE = 2.0


def no_line(probe: Probe) -> str:
    """What came instead of a line."""
    pending = probe.wire.pending()
    if probe.wire.ending is not Ending.OPEN:
        return str(probe.wire.ending.value) + (f" after {escape(pending)}" if pending else "")
    return f"only {escape(pending)} (incomplete)" if pending else "nothing before the deadline"


def send_quietly(probe: Probe, data: bytes) -> bool:
    """Send, tolerating a server that has already refused and closed the connection."""
    try:
        probe.wire.send(data, probe.timeout)
    except (OSError, WireTimeout):
        return False
    return True


def connect_served(target: Target, label: str, grace: float = BUSY_GRACE, judge: bool = True) -> Probe:
    """A connection the server is serving right now: its PING was answered.

    ``judge`` says that the check is about serving connections within the
    declared limits, on an instance the suite has to itself: then a
    connection that is not served is the target's failure. Otherwise (a
    store check, or a shared --address server that others may be filling)
    the check cannot be done, and says so."""
    deadline = time.monotonic() + grace
    while True:
        probe = target.connect(label)
        send_quietly(probe, b"PING\r\n")
        line = probe.wire.read_line(probe.timeout)
        if line == b"+PONG\r\n":
            return probe
        busy = line is not None and line.startswith(BUSY)
        if busy and time.monotonic() < deadline:
            probe.wire.wait_for_end(1.0)  # its slot is not ours; let the refusal finish first
            probe.close()
            continue
        got = escape(line) if line is not None else no_line(probe)
        if not judge:
            raise Unsupported(
                f"{label} was not served (PING got {got}), so this check cannot run; "
                "whether the server serves the connections it declares is judged by CH-CONC-1, CH-LIMIT-1 "
                "and CH-LIMIT-4"
            )
        raise probe.violation(
            f"{label} (within the declared limits) was not served: expected +PONG to a PING, got {got}",
            expected=b"+PONG\r\n",
            actual=line if line is not None else probe.wire.pending(),
        )


def open_served(target: Target, count: int, label: str = "connection", judge: bool = True) -> list[Probe]:
    """``count`` connections opened one after another, each confirmed served
    before the next is opened (so the listen backlog cannot fake them)."""
    return [connect_served(target, f"{label} {n + 1} of {count}", judge=judge) for n in range(count)]


@contextlib.contextmanager
def own_instance(target: Target, fresh_target: FreshTarget, why: str) -> Iterator[Target]:
    """A fresh instance when the suite can start one; else (--address) the shared one."""
    if not target.owned:
        yield target
        return
    with fresh_target(why=why) as instance:
        yield instance


@dataclass
class Arrival:
    line: bytes | None = None  # the first complete line, CRLF included
    at: float | None = None  # time.monotonic() when it had arrived
    ending: Ending = Ending.OPEN  # how the connection ended, if it ended without a line


def draw(timeline: Timeline, probes: list[Probe], sent: list[float], arrivals: list[Arrival]) -> None:
    """One bar per connection: from its request to its first line (open-ended if none came)."""
    for probe, at, arrival in zip(probes, sent, arrivals, strict=True):
        if arrival.line is not None:
            outcome = escape(arrival.line)
        else:
            outcome = arrival.ending.value if arrival.ending is not Ending.OPEN else "no reply"
        timeline.bar(probe.label, at, arrival.at, outcome)


def gather_lines(probes: list[Probe], deadline: float, close_when_answered: bool = False) -> list[Arrival]:
    """The first line from each connection, with its arrival time, until all
    have one (or have ended) or the deadline passes. One thread polls them
    all, so arrival times are taken as soon as the poll returns."""
    arrivals = [Arrival() for _ in probes]
    poller = select.poll()
    by_fd: dict[int, int] = {}
    for index, probe in enumerate(probes):
        if b"\n" in probe.wire.pending():
            arrivals[index].line = probe.wire.read_line(0.01)
            arrivals[index].at = time.monotonic()
        elif probe.wire.ending is not Ending.OPEN:
            arrivals[index].ending = probe.wire.ending
        else:
            fd = probe.wire.sock.fileno()
            by_fd[fd] = index
            poller.register(fd, select.POLLIN)
    while by_fd and (left := deadline - time.monotonic()) > 0:
        events = poller.poll(left * 1000)
        now = time.monotonic()
        for fd, _ in events:
            index = by_fd[fd]
            probe = probes[index]
            line = probe.wire.read_line(0.05)
            if line is None and probe.wire.ending is Ending.OPEN:
                continue  # part of a line; the rest follows
            if line is not None:
                arrivals[index].line, arrivals[index].at = line, now
            else:
                arrivals[index].ending = probe.wire.ending
            poller.unregister(fd)
            del by_fd[fd]
            if close_when_answered:
                probe.close()
    return arrivals


# ---- what the robustness checks share (CH-ROBUST, PROTOCOL.md section 19) -------------------


class ProcessTree:
    """The process the suite started and all its descendants, read with psutil:
    memory and open descriptors, each summed over the tree.

    Memory is the proportional set size (PSS): a page that n processes share
    counts 1/n in each, so the sum is what the whole tree holds. A sum of
    resident sets (RSS) would count every shared page once per process, and a
    forking server would seem to grow by a whole interpreter per connection."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)

    @classmethod
    def of(cls, target: Target) -> ProcessTree | None:
        """The target's tree, or None when the suite did not start it (--address).
        Raises Unsupported when its processes cannot be read (a remote Docker engine, no permission)."""
        if target.process is None:
            return None
        try:
            tree = cls(target.process.pid)
            tree.descriptors()
            tree.memory()
        except psutil.AccessDenied as error:
            raise Unsupported(f"the server's processes cannot be read here ({error})") from None
        except psutil.NoSuchProcess:
            raise Unsupported("the server's process is gone, so its memory cannot be read") from None
        return tree

    def processes(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def memory(self) -> int:
        """Bytes of memory the tree holds (PSS, summed)."""
        return self._sum(lambda process: int(process.memory_full_info().pss))

    def descriptors(self) -> int:
        """Open file descriptors, summed over the tree."""
        return self._sum(lambda process: int(process.num_fds()))

    def count(self) -> int:
        return len(self.processes())

    def steady_memory(self, steady: float = 0.3, within: float = 10.0, jitter: int = 64 << 10) -> int:
        """The tree's memory once it has moved by no more than ``jitter`` bytes
        for ``steady`` seconds (or its last value after ``within`` seconds)."""
        deadline = time.monotonic() + within
        last, since = self.memory(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(SETTLE_POLL)  # a poll for a condition, with a deadline
            now = self.memory()
            if abs(now - last) > jitter:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= steady:
                break
        return last

    def settled(self, read: Callable[[], int], at_most: int, within: float) -> int:
        """``read()`` once it is ``at_most`` or less, or its last value when
        ``within`` seconds have passed (closes and exits take a moment)."""
        deadline = time.monotonic() + within
        value = read()
        while value > at_most and time.monotonic() < deadline:
            time.sleep(SETTLE_POLL)  # a poll for a condition, with a deadline
            value = read()
        return value

    def left(self) -> str:
        """Each process still in the tree, with its state and the kernel function
        it sleeps in: what a failure says of a server that did not exit."""
        described = []
        for process in self.processes():
            try:
                state = process.status()
                with open(f"/proc/{process.pid}/wchan") as wchan:
                    sleeping_in = wchan.read() or "-"
            except (psutil.Error, OSError):
                continue  # ended while it was being read
            described.append(f"pid {process.pid} {state} in {sleeping_in}")
        return "; ".join(described) or "no process left"

    def threads_open_to(self, signum: int) -> list[tuple[int, int, int]]:
        """The processes that handle ``signum`` (a handler is installed) and have
        threads besides the main one that do not block it, for a failure's
        explanation: (pid, threads open to it, other threads). Python runs
        handlers only in the main thread, and the kernel may hand the signal to
        any thread that does not block it."""
        found = []
        bit = 1 << (signum - 1)
        for process in self.processes():
            try:
                if not _handles(process.pid, signum):
                    continue
                others = [thread.id for thread in process.threads() if thread.id != process.pid]
                tasks = f"/proc/{process.pid}/task"
                open_to = [tid for tid in others if not signal_mask(f"{tasks}/{tid}/status", "SigBlk") & bit]
            except (psutil.Error, OSError):
                continue  # ended while it was being read
            if open_to:
                found.append((process.pid, len(open_to), len(others)))
        return found

    def asleep_in_accept(self, signum: int) -> list[int]:
        """The processes that handle ``signum`` and whose main thread still
        sleeps in accept(), for a failure's explanation."""
        found = []
        for process in self.processes():
            try:
                if not _handles(process.pid, signum):
                    continue
                with open(f"/proc/{process.pid}/wchan") as wchan:
                    if wchan.read() == "inet_csk_accept":  # the kernel's name for a TCP accept() asleep
                        found.append(process.pid)
            except (psutil.Error, OSError):
                continue  # ended while it was being read
        return found

    def _sum(self, measure: Callable[[psutil.Process], int]) -> int:
        total = 0
        for process in self.processes():
            try:
                total += measure(process)
            except psutil.NoSuchProcess:
                continue  # a child that ended while the tree was read
        return total


def what_is_left(pid: int) -> str:
    """The server's processes that are still there, for an exit check's failure."""
    try:
        return ProcessTree(pid).left()
    except psutil.Error:
        return "its process could not be read"


def why_the_signal_may_be_lost(pid: int, signum: int) -> list[str]:
    """A likely cause of an overrun, for the explanation: a Python server handles
    the signal but other threads can take it, or a server handles it and its main
    thread sleeps on in accept(). Empty when neither is so. Only Python's handlers
    are tied to the main thread: Node, Go or C servers have threads open to the
    signal by design, and the first hint would mislead them."""
    name = signal.Signals(signum).name
    try:
        tree = ProcessTree(pid)
        open_to = [found for found in tree.threads_open_to(signum) if _runs_python(found[0])]
        in_accept = [] if open_to else tree.asleep_in_accept(signum)
    except psutil.Error:
        return []
    if in_accept:
        pids = ", ".join(f"pid {found}" for found in in_accept)
        return [
            f"A likely cause: {pids} handles {name}, yet its main thread still sleeps in accept(). A handler that "
            "only sets a flag, or one that came just before accept() began (a Python handler runs between two "
            "instructions), leaves accept() waiting for the next client. Wait on the listener and on a pipe the "
            "signal writes together (Python: signal.set_wakeup_fd; docs/student-guide.md, 'A signal just before "
            "a wait')."
        ]
    if not open_to:
        return []
    which = "; ".join(f"pid {pid} handles {name}, and {_unblocked(count, others)}" for pid, count, others in open_to)
    return [
        f"A likely cause: {which}. The kernel hands a signal sent to a process to any thread that does not "
        "block it, and Python runs the handler only in the main thread: if another thread took it, the main "
        "thread sleeps on. Start each thread with SIGTERM and SIGINT blocked (docs/student-guide.md, "
        "'Threads and signals')."
    ]


PYTHON_EXECUTABLE = re.compile(r"python[0-9.]*\Z")  # python, python3, python3.11 (the real binary, not a venv link)


def _runs_python(pid: int) -> bool:
    try:
        return PYTHON_EXECUTABLE.match(os.path.basename(psutil.Process(pid).exe())) is not None
    except psutil.Error:
        return False


def _unblocked(count: int, others: int) -> str:
    if others == 1:
        return "its other thread does not block it"
    if count == others:
        return f"none of its {others} other threads blocks it"
    return f"{count} of its {others} other threads do not block it"


def _handles(pid: int, signum: int) -> bool:
    """Whether the process has a handler of its own installed for ``signum``."""
    return bool(signal_mask(f"/proc/{pid}/status", "SigCgt") & 1 << (signum - 1))


def signal_mask(status_file: str, field: str) -> int:
    """A signal mask from /proc/.../status (SigCgt, SigBlk): bit n-1 is signal n."""
    with open(status_file) as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    return 0


SETTLE_POLL = 0.05


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]


class LegitimateClient:
    """A client that goes on using the server while a check attacks it: one
    request at a time on a connection the server served before the attack,
    each reply checked, each round trip timed. It runs on a thread of its own
    until ``stop()``; the first wrong or missing reply ends it and is kept.

    Its last acknowledged value stays in the store, for the check to read
    back after the attack."""

    PACE = 0.01  # seconds between rounds: a steady load, not a second attack

    def __init__(self, target: Target, label: str = "legitimate client") -> None:
        self.key = fresh_key("legit")
        self.value = b"0"
        self.latencies: list[float] = []
        self.problem: Violation | None = None
        self.probe = connect_served(target, label, judge=False)
        self.probe.ask(b"SET " + self.key + b" " + self.value, b"+OK", why="the legitimate client's first value")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=label, daemon=True)

    @classmethod
    def beside(cls, target: Target, attack_connections: int = 1) -> LegitimateClient | None:
        """A started client, or None when the target serves too few connections
        at once for it and ``attack_connections`` more (a serial server)."""
        if target.declared.number("max_connections") < attack_connections + 1:
            return None
        client = cls(target)
        client._thread.start()
        return client

    def _run(self) -> None:
        round_number = 0
        try:
            while not self._stop.wait(self.PACE):
                round_number += 1
                value = b"%d" % round_number
                for body, reply in (
                    (b"SET " + self.key + b" " + value, b"+OK"),
                    (b"GET " + self.key, b"$" + value),
                    (b"PING", b"+PONG"),
                ):
                    started = time.monotonic()
                    self.probe.ask(body, reply, why="a request of the legitimate client during the attack")
                    self.latencies.append(time.monotonic() - started)
                self.value = value
        except Violation as problem:
            self.problem = problem
        except (OSError, WireTimeout) as error:
            self.problem = self.probe.violation(f"the legitimate client's connection failed: {error}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.probe.timeout * 3 + 1.0)

    @property
    def p99_ms(self) -> float:
        return round(p99(self.latencies) * 1000, 2)

    def judge(self, during: str) -> None:
        """A Violation if it got a wrong answer (or none) during the attack."""
        if self.problem is None:
            return
        raise Violation(
            f"during {during}, a legitimate client on another connection got a wrong answer (or none) after "
            f"{len(self.latencies)} correct ones: {self.problem.summary}",
            expected=self.problem.expected,
            actual=self.problem.actual,
            transcripts=self.problem.transcripts,
            ending=self.problem.ending,
        )

    def record(self, measure: Callable[..., None], during: str) -> None:
        pace = f"one request at a time, {self.PACE * 1000:g} ms between rounds"
        note = f"{len(self.latencies)} round trips during {during}, {pace}"
        measure("legitimate client's p99 round trip", self.p99_ms, "ms", note=note)


def expect_still_serving(target: Target, legitimate: LegitimateClient | None, after: str) -> None:
    """After an attack: a new connection's PING is answered and the legitimate
    client's last value is still in the store."""
    try:
        probe = connect_served(target, f"a new connection after {after}", judge=True)
    except OSError as error:
        died = target.process.exit_report() if target.process is not None else None
        raise Violation(
            f"after {after}, the server no longer accepts connections ({error})" + (f": {died}" if died else ""),
            expected="a new connection answered +PONG",
            actual=str(error),
        ) from None
    with probe:
        if legitimate is not None:
            probe.ask(
                b"GET " + legitimate.key,
                b"$" + legitimate.value,
                why=f"the legitimate client's value, set before and during {after}, is still stored",
            )
