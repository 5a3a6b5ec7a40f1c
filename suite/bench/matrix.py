"""The measurement matrix for one server: every connection count, pipeline
depth and command, each cell a closed-loop run of the suite's own load
generator (suite.bench.drivers) while the server's process tree is sampled,
and redis-benchmark on the same cell where it applies; then the connection
churn (connect, PING, close), where a process-per-connection server pays its
fork.

The connections of one count are opened once and kept for all its cells, as
a client pool would keep them. A connection the server never answered in a
cell (it sat in the accept queue of a server whose workers were all taken)
is counted as starved; it stays open, owing its reply, and joins the load
again once that reply has come (suite.bench.driver).
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..escape import escape
from ..probe import HarnessError
from ..targets.base import Target
from ..targets.process import Endpoint
from . import latency, redis_benchmark
from .drivers import CellLoad, Drivers
from .servers import BenchTarget, TreeSampler, TreeUsage, command_line, pss
from .workload import Workload, workload

__all__ = ["Cell", "Churn", "Plan", "TargetBench", "measure", "seed"]

Log = Callable[[str], None]
OPEN_TIMEOUT = 15.0  # seconds to open one count's connections (256 forks of process-per-connection take ~1 s here)
SEED_TIMEOUT = 5.0
IDLE_SETTLE = 5.0  # seconds at most for an idle server's memory to hold still before it is read
CHURN_SLOTS = 16  # connections being opened, asked and closed at once, in the churn cell
# A cell whose server answered fewer than this many requests per connection is measured again
# over SLOW_CELL_FACTOR times the window: a window shorter than a slow server's latency measures
# nothing (process-per-connection's 256 connections with pipelining: p99 above a second here).
# Connections a pool never serves do not slow the others, so they never cause it.
MIN_REPLIES_PER_CONNECTION = 4
SLOW_CELL_FACTOR = 4


@dataclass(frozen=True)
class Plan:
    connections: list[int]
    pipelines: list[int]
    commands: list[str]
    duration: float  # seconds per cell
    max_requests: int  # per cell
    redis_benchmark: str  # "auto" (where it applies), "ping" (PING only) or "none"
    churn: bool = True
    repeat: int = 1  # runs per cell; the one with the median throughput is reported

    @property
    def room(self) -> int:
        """Connections a server must be allowed at once: the largest count, as many
        again that it may not yet have seen closed (the previous count's), and the churn's."""
        largest = max(self.connections)
        return 2 * largest + CHURN_SLOTS + 16

    def cells(self) -> int:
        return len(self.connections) * len(self.pipelines) * len(self.commands)


@dataclass
class Cell:
    command: str
    pipeline: int
    connections: int
    throughput: float  # expected replies per second
    p50: float | None  # seconds
    p99: float | None
    replies: int
    errors: int  # replies that were not the expected one
    example_error: str | None  # the first of them, escaped
    starved: int  # connections that got no reply in the whole window
    closed: int  # connections the server closed during the window
    elapsed: float
    rss: int | None  # bytes, the peak of the sum over the server's process tree
    threads: int | None
    processes: int | None
    redis_benchmark: redis_benchmark.RedisBenchmarkCell | None = None
    runs: list[float] = field(default_factory=list)  # each run's throughput (--repeat); the median is reported


@dataclass
class Churn:
    slots: int
    rate: float  # connections per second, each connected, answered and closed
    p50: float | None  # seconds from connect to the reply
    p99: float | None
    completed: int
    errors: int
    refused: int
    rss: int | None
    processes: int | None


@dataclass
class TargetBench:
    name: str
    kind: str
    profile: str
    target: str  # how it was given (--reference evented, --cmd ..., --address ...)
    command: str | None = None  # the command line it was started with
    declared: dict[str, str] = field(default_factory=dict)
    idle_rss: int | None = None  # bytes over the tree before any load
    idle_pss: int | None = None
    # PSS over the tree with each count's connections open, read once after its cells: the sum of
    # RSS counts a page a forked child shares once per process (suite.bench.servers.TreeSampler).
    pss: dict[str, int] = field(default_factory=dict)
    cells: list[Cell] = field(default_factory=list)
    churn: Churn | None = None
    problem: str | None = None  # why some or all of it could not be measured
    time: float = 0.0


def measure(bench: BenchTarget, instance: Target, plan: Plan, drivers: Drivers, *, into: TargetBench, log: Log) -> None:
    """Fill ``into`` with every cell of ``plan`` against the running ``instance``."""
    result = into
    result.command = command_line(instance)
    result.declared = dict(instance.declared.pairs)
    endpoint = instance.endpoint
    pid = instance.process.pid if instance.process is not None else None
    if "get" in plan.commands:
        seed(drivers, endpoint, bench.profile)
    if pid is not None:
        # A forking server is still starting workers (and they their interpreters) after it answers.
        result.idle_pss = pss(pid, steady_within=IDLE_SETTLE)
        result.idle_rss = TreeSampler(pid).sample()[0]
    for connections in plan.connections:
        opened = drivers.open(endpoint, connections, OPEN_TIMEOUT)
        if opened["failures"]:
            reasons = ", ".join(f"{count} {reason}" for reason, count in opened["failures"].items())
            log(f"{bench.name}: {opened['opened']} of {connections} connections opened ({reasons})")
        first = len(result.cells)
        try:
            for command in plan.commands:
                load = workload(bench.profile, command)
                for depth in plan.pipelines:
                    cell = _cell(drivers, load, depth, connections, plan=plan, pid=pid)
                    result.cells.append(cell)
                    log(f"{bench.name}: {_describe(cell)}")
                    _still_running(instance)
            held = pss(pid) if pid is not None else None
            if held is not None:
                result.pss[str(connections)] = held
        finally:
            drivers.close_connections()
        if plan.redis_benchmark != "none" and redis_benchmark.available():
            for cell in result.cells[first:]:
                cell.redis_benchmark = _redis_benchmark(endpoint, bench.profile, cell, plan)
    if plan.churn:
        result.churn = _churn(drivers, endpoint, bench.profile, plan, pid)
        log(f"{bench.name}: churn {result.churn.rate:,.0f} connections/s ({CHURN_SLOTS} at a time)")


def _still_running(instance: Target) -> None:
    """A server that exited under load ends its measurement, with how it ended."""
    died = instance.process.exit_report() if instance.process is not None else None
    if died:
        raise HarnessError(f"the server stopped under load: {died}")


def seed(drivers: Drivers, endpoint: Endpoint, profile: str) -> None:
    """The key GET reads, set once before any cell (whichever commands the plan has)."""
    opened = drivers.open(endpoint, 1, SEED_TIMEOUT)
    try:
        if opened["opened"] != 1:
            reasons = ", ".join(opened["failures"]) or "no reason given"
            raise HarnessError(f"{endpoint.host}:{endpoint.port}: could not open a connection ({reasons})")
        load = workload(profile, "set")
        answer = drivers.ask_each(load, SEED_TIMEOUT)
        if answer["answered"] != 1:
            got = escape(base64.b64decode(answer["example"]), 80) if answer["example"] else "no reply"
            raise HarnessError(
                f"{endpoint.host}:{endpoint.port}: the first request, {escape(load.request, 80)}, got {got}; "
                f"expected {escape(load.reply or b'', 80)}: does the server speak {profile}?"
            )
    finally:
        drivers.close_connections()


def _cell(drivers: Drivers, load: Workload, depth: int, connections: int, *, plan: Plan, pid: int | None) -> Cell:
    usage: TreeUsage | None = None
    duration = plan.duration
    runs: list[CellLoad] = []
    with TreeSampler(pid) if pid is not None else contextlib.nullcontext() as sampler:
        while len(runs) < plan.repeat:
            measured = drivers.run(load, depth, duration, max_requests=plan.max_requests)
            broken = measured.errors or measured.closed  # a broken server is reported as it was, at once
            if not runs and not broken and measured.replies < MIN_REPLIES_PER_CONNECTION * connections:
                duration *= SLOW_CELL_FACTOR
                measured = drivers.run(load, depth, duration, max_requests=plan.max_requests)
            runs.append(measured)
            if broken:
                break
    if sampler is not None:
        usage = sampler.usage()
    median = sorted(runs, key=lambda run: run.throughput)[len(runs) // 2]
    cell = _from_load(load.command, depth, connections, median, usage)
    cell.runs = [run.throughput for run in runs]
    return cell


def _from_load(command: str, depth: int, connections: int, load: CellLoad, usage: TreeUsage | None) -> Cell:
    example = escape(base64.b64decode(load.example), 80) if load.example else None
    return Cell(
        command=command,
        pipeline=depth,
        connections=connections,
        throughput=load.throughput,
        p50=latency.percentile(load.histogram, 0.5),
        p99=latency.percentile(load.histogram, 0.99),
        replies=load.replies,
        errors=load.errors,
        example_error=example,
        starved=load.starved,
        closed=load.closed,
        elapsed=load.elapsed,
        rss=usage.rss if usage else None,
        threads=usage.threads if usage else None,
        processes=usage.processes if usage else None,
    )


def _redis_benchmark(
    endpoint: Endpoint, profile: str, cell: Cell, plan: Plan
) -> redis_benchmark.RedisBenchmarkCell | None:
    test = redis_benchmark.test_for(profile, cell.command)
    if test is None or (plan.redis_benchmark == "ping" and cell.command != "ping"):
        return None
    requests = int(cell.throughput * plan.duration)
    requests = min(10_000_000, max(requests, 1000, 4 * cell.connections * cell.pipeline))
    if cell.starved or cell.closed or cell.errors:
        reason = (
            f"{cell.starved} of {cell.connections} connections never served (it would wait for them forever)"
            if cell.starved
            else "the server answered wrongly or closed connections"
        )
        return redis_benchmark.RedisBenchmarkCell(test, requests, None, None, None, f"not run: {reason}")
    return redis_benchmark.run(
        endpoint, test, cell.connections, cell.pipeline, requests=requests, timeout=max(10.0, 20 * plan.duration)
    )


def _churn(drivers: Drivers, endpoint: Endpoint, profile: str, plan: Plan, pid: int | None) -> Churn:
    load = workload(profile, "ping")
    started = time.monotonic()
    if pid is not None:
        with TreeSampler(pid) as sampler:
            answer = drivers.churn(endpoint, load, CHURN_SLOTS, plan.duration, plan.max_requests)
        usage: TreeUsage | None = sampler.usage()
    else:
        answer = drivers.churn(endpoint, load, CHURN_SLOTS, plan.duration, plan.max_requests)
        usage = None
    elapsed = answer["elapsed"] or (time.monotonic() - started)
    return Churn(
        slots=CHURN_SLOTS,
        rate=answer["completed"] / elapsed if elapsed > 0 else 0.0,
        p50=latency.percentile(answer["histogram"], 0.5),
        p99=latency.percentile(answer["histogram"], 0.99),
        completed=answer["completed"],
        errors=answer["errors"],
        refused=answer["refused"],
        rss=usage.rss if usage else None,
        processes=usage.processes if usage else None,
    )


def _describe(cell: Cell) -> str:
    text = f"{cell.command.upper()} P{cell.pipeline} x{cell.connections}: {cell.throughput:,.0f}/s"
    if cell.p50 is not None and cell.p99 is not None:
        text += f", p50 {cell.p50 * 1e3:.2f} ms, p99 {cell.p99 * 1e3:.2f} ms"
    if cell.starved:
        text += f", {cell.starved} starved"
    if cell.errors or cell.closed:
        text += f", {cell.errors} errors, {cell.closed} closed"
    return text
