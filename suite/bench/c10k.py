"""C10K: ten thousand connections held open at once by one server, each of
them answering a PING and then a GET, and what each connection costs the
server in memory.

1. The server is started with room for the connections, and the key GET
   reads is set.
2. Its process tree's memory is read with no connection open, once it holds
   still (PSS and RSS, each summed over the tree).
3. The drivers open the connections, at most ``WINDOW`` unfinished at a time;
   a connection counts as open once its PING was answered (so the kernel's
   accept queue, capped at somaxconn, never overflows into SYN retries).
4. With every connection open, the memory is read again: the difference over
   the connections is the memory per connection.
5. Every connection sends GET at once, and each must answer; then all close.

Each phase has its own deadline. The client side holds the same ten
thousand sockets, spread over the driver processes (each raises its own
descriptor limit); the controller raised its own before the server started,
so that the server inherits it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..certs import CertificateFiles
from ..probe import HarnessError
from ..targets.process import Endpoint
from . import latency
from .drivers import Drivers
from .matrix import Log, seed
from .servers import BenchTarget, TreeSampler, command_line, pss, started
from .workload import workload

__all__ = ["CONNECTIONS", "TIMEOUT", "C10kResult", "measure_target", "room"]

CONNECTIONS = 10_000
TIMEOUT = 60.0  # seconds for each phase: opening, and the GET
WINDOW = 512  # connections connecting or waiting for their PING at once, over all drivers
SETTLE = 5.0  # seconds for the server's memory to stop moving once every connection is open


def room(connections: int) -> int:
    """The connection limit a C10K server is started with: the connections, and some to spare."""
    return connections + max(64, connections // 20)


@dataclass
class C10kResult:
    name: str
    kind: str
    target: str
    connections: int  # asked for
    command: str | None = None
    opened: int = 0  # open, and their PING answered
    failures: dict[str, int] = field(default_factory=dict)  # why the others did not open
    open_seconds: float | None = None  # to open them all
    ping_p50: float | None = None  # seconds from connect to PONG
    ping_p99: float | None = None
    get_answered: int = 0
    get_errors: int = 0
    get_unanswered: int = 0  # no reply before the deadline, or the connection closed
    get_p50: float | None = None
    get_p99: float | None = None
    rss_before: int | None = None  # bytes over the tree, no connection open
    rss_open: int | None = None  # bytes over the tree, every connection open
    pss_before: int | None = None
    pss_open: int | None = None
    threads: int | None = None  # with every connection open
    processes: int | None = None
    problem: str | None = None
    time: float = 0.0

    @property
    def held(self) -> bool:
        """Every connection open at once, and every one answered its PING and its GET."""
        return (
            self.problem is None
            and self.opened == self.connections
            and self.get_answered == self.connections
            and not self.get_errors
        )

    def per_connection(self, before: int | None, after: int | None) -> float | None:
        if before is None or after is None or not self.opened:
            return None
        return (after - before) / self.opened


def measure_target(
    target: BenchTarget,
    certs: CertificateFiles,
    *,
    drivers: int,
    timeout: float,
    ready_timeout: float,
    into: C10kResult,
    log: Log,
) -> None:
    """Fill ``into`` (whose ``connections`` says how many) with C10K against ``target``."""
    result, connections = into, into.connections
    began = time.monotonic()
    log(f"{target.name}: C10K, {connections:,} connections")
    try:
        with started(target, certs, room(connections), ready_timeout) as instance, Drivers(drivers) as pool:
            result.command = command_line(instance)
            seed(pool, instance.endpoint, target.profile)
            if instance.process is None:
                result.problem = "memory UNSUPPORTED: an --address target (the suite did not start it)"
                _hold(pool, instance.endpoint, target, result, timeout, sampler=None, log=log)
            else:
                sampler = TreeSampler(instance.process.pid)
                result.pss_before = pss(instance.process.pid, steady_within=SETTLE)
                result.rss_before = sampler.sample()[0]
                _hold(pool, instance.endpoint, target, result, timeout, sampler=sampler, log=log)
                died = instance.process.exit_report()
                if died:
                    result.problem = died
    except HarnessError as error:
        result.problem = str(error)
        log(f"{target.name}: {error}")
    except KeyboardInterrupt:
        result.problem = "interrupted"
        raise
    finally:
        result.time = time.monotonic() - began


def _hold(
    pool: Drivers,
    endpoint: Endpoint,
    target: BenchTarget,
    result: C10kResult,
    timeout: float,
    *,
    sampler: TreeSampler | None,
    log: Log,
) -> None:
    opening = time.monotonic()
    try:
        ping = workload(target.profile, "ping")
        opened = pool.open(endpoint, result.connections, timeout, confirm=ping, window=WINDOW)
        result.opened, result.failures = opened["opened"], opened["failures"]
        result.open_seconds = time.monotonic() - opening
        result.ping_p50 = latency.percentile(opened["histogram"], 0.5)
        result.ping_p99 = latency.percentile(opened["histogram"], 0.99)
        log(f"{target.name}: {result.opened:,} connections open in {result.open_seconds:.1f} s, each PING answered")
        if sampler is not None:
            result.pss_open = pss(sampler.root.pid, steady_within=SETTLE)
            result.rss_open, result.threads, result.processes = sampler.sample()
        answer = pool.ask_each(workload(target.profile, "get"), timeout)
        result.get_answered, result.get_errors = answer["answered"], answer["errors"]
        result.get_unanswered = answer["unanswered"] + answer["closed"]
        result.get_p50 = latency.percentile(answer["histogram"], 0.5)
        result.get_p99 = latency.percentile(answer["histogram"], 0.99)
        log(f"{target.name}: GET answered on {result.get_answered:,} of {result.opened:,}")
    finally:
        pool.close_connections()
