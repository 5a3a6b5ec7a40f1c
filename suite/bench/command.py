"""``sockspec bench``: the command line, and one run from the options to the
reports (see suite.bench for the parts).

    sockspec bench --reference all                       # the matrix, redis-server as the baseline
    sockspec bench --reference evented --connections 1,16 --commands ping,get --json bench.json
    sockspec bench --cmd 'python3 myserver.py --port {port}' --html out/bench
    sockspec bench --c10k --reference evented,hybrid      # 10,000 connections at once

Every option is checked before anything starts; a bad one gets one line and
exit 2. Every process the run starts (servers, drivers, redis-benchmark) leads
its own process group, recorded with suite.reaper and killed when the run
ends, however it ends.

Exit codes: 0, every cell measured cleanly; 1, a server answered wrongly,
closed connections or exited under load, or did not hold C10K; 2, bad input,
or a server that could not be measured at all (it never started or
answered); 130, interrupted (SIGINT or SIGTERM): the figures so far are
written, marked ``"interrupted": true``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import configuration, reaper
from ..certs import CertificateFiles, make_certificates
from ..configuration import UsageProblem
from ..options import SHARED
from ..probe import HarnessError
from ..targets.process import Endpoint
from . import c10k, html, redis_benchmark, report
from .drivers import Drivers
from .matrix import Plan, TargetBench, measure
from .servers import BenchTarget, baseline, given, reference, started
from .workload import COMMANDS

__all__ = ["add_parser", "run"]

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130
DEFAULT_CONNECTIONS = "1,16,64,256"
DEFAULT_PIPELINES = "1,16"
# Seconds per cell. 8 targets x 32 cells x (0.3 s + the cell's set-up and
# drain) with redis-benchmark beside them on PING fits the 3 minutes the
# default run is allowed on two cores; see docs/benchmarks.md for the choice.
DEFAULT_DURATION = 0.3
DEFAULT_MAX_REQUESTS = 5_000_000  # per cell: the count bound, for a server far faster than any here
MAX_CONNECTIONS = 50_000
DESCRIPTOR_MARGIN = 256  # the controller's and the server's own descriptors besides the connections
# The options read the way `sockspec run` reads them (suite.configuration).
TARGET_OPTIONS = ("--reference", "--cmd", "--address", "--name", "--profile", "--ready-timeout")


def add_parser(commands: Any) -> None:
    """``bench`` under ``sockspec``'s subcommands."""
    bench = commands.add_parser(
        "bench",
        help="measure throughput, latency and memory per architecture, redis-server beside them; C10K",
        description=(
            "Measure servers over a matrix of connection counts, pipeline depths and commands (throughput, p50 "
            "and p99 latency, the server's peak RSS, threads and processes), with redis-server measured in the "
            "same run as the baseline and redis-benchmark beside the suite's own load generator where it applies. "
            "--c10k holds 10,000 connections instead and reports the memory each costs. docs/benchmarks.md "
            "has the method and the figures."
        ),
    )
    targets = bench.add_argument_group("targets (at least one)")
    for option in SHARED:
        if option.flag in TARGET_OPTIONS:
            group = targets if option.section == "targets" else bench
            group.add_argument(option.flag, **option.definition(for_plugin=False))
    targets.add_argument(
        "--baseline",
        choices=("redis", "none"),
        default="redis",
        help="measure redis-server in the same run (default: redis, when it is installed)",
    )
    matrix = bench.add_argument_group("the matrix")
    matrix.add_argument("--connections", default=DEFAULT_CONNECTIONS, metavar="N,...", help="connection counts")
    matrix.add_argument("--pipeline", default=DEFAULT_PIPELINES, metavar="N,...", help="pipeline depths")
    matrix.add_argument(
        "--commands", default=",".join(COMMANDS), metavar="CMD,...", help="commands: " + ", ".join(COMMANDS)
    )
    matrix.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION,
        metavar="SECONDS",
        help=f"each cell's window (default {DEFAULT_DURATION})",
    )
    matrix.add_argument(
        "--max-requests",
        type=int,
        default=DEFAULT_MAX_REQUESTS,
        metavar="N",
        help=f"each cell's bound in requests (default {DEFAULT_MAX_REQUESTS:,})",
    )
    matrix.add_argument(
        "--drivers", default="auto", metavar="N|auto", help="load-generator processes (default: one per CPU)"
    )
    matrix.add_argument(
        "--redis-benchmark",
        choices=("auto", "ping", "none"),
        default="auto",
        help="redis-benchmark beside the suite's generator: auto (PING for every target, SET/GET/INCR for RESP2 "
        "ones), ping, or none",
    )
    matrix.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each cell N times and report the run with the median throughput (default 1)",
    )
    matrix.add_argument("--no-churn", action="store_true", help="leave out the connection-churn cell")
    c10k_group = bench.add_argument_group("C10K")
    c10k_group.add_argument("--c10k", action="store_true", help="hold 10,000 connections at once instead")
    c10k_group.add_argument("--c10k-connections", type=int, default=c10k.CONNECTIONS, metavar="N", help="default 10000")
    c10k_group.add_argument(
        "--c10k-timeout",
        type=float,
        default=c10k.TIMEOUT,
        metavar="SECONDS",
        help=f"for each of opening, PING and GET (default {c10k.TIMEOUT:g})",
    )
    outputs = bench.add_argument_group("outputs")
    outputs.add_argument("--json", dest="bench_json", metavar="FILE", help="write the figures as JSON")
    outputs.add_argument("--html", dest="bench_html", metavar="DIR", help="write the page with the plots")
    bench.set_defaults(run=run)


# ---- reading the options ------------------------------------------------------------------


def _targets(options: argparse.Namespace, room: int) -> tuple[list[BenchTarget], configuration.RunSettings]:
    """The servers to measure (the baseline last), and the settings read as `sockspec run` reads them."""
    defaults = {option.name: option.default for option in SHARED}
    repeated = {option.name for option in SHARED if option.kind == "repeat"}

    def get(name: str) -> Any:
        value = getattr(options, name, None)
        if value is None:
            return [] if name in repeated else defaults.get(name)
        return value

    settings = configuration.read(get)
    targets: list[BenchTarget] = []
    for name, spec in settings.specs.items():
        if spec.reference:
            targets.append(reference(name, settings.profile, room))
        elif spec.address is not None:
            targets.append(given(dataclasses.replace(spec, address=_on_loopback(spec.address)), settings.profile))
        else:
            targets.append(given(spec, settings.profile))
    if options.baseline == "redis":
        redis = baseline()
        if redis is not None and all(t.name != redis.name for t in targets):
            targets.append(redis)
    return targets, settings


def _on_loopback(address: Endpoint) -> Endpoint:
    """A benchmark's load never leaves the machine: an --address target is an IPv4 loopback address
    (``localhost`` is taken as 127.0.0.1, so that no driver looks a name up per connection)."""
    host = "127.0.0.1" if address.host == "localhost" else address.host
    try:
        loopback = ipaddress.ip_address(host).is_loopback and ipaddress.ip_address(host).version == 4
    except ValueError:
        loopback = False
    if not loopback:
        raise UsageProblem(
            f"--address {address.host}:{address.port}: the benchmark sends its load over loopback only; "
            "give 127.0.0.1 (or another 127.x.y.z address) or localhost"
        )
    return dataclasses.replace(address, host=host)


def _numbers(flag: str, text: str, *, largest: int) -> list[int]:
    words = [word.strip() for word in text.split(",") if word.strip()]
    if not words or not all(word.isdigit() and 0 < int(word) <= largest for word in words):
        raise UsageProblem(f"{flag} {text}: give whole numbers from 1 to {largest:,}, separated by commas")
    return list(dict.fromkeys(int(word) for word in words))


def _plan(options: argparse.Namespace) -> Plan:
    commands = [word.strip().lower() for word in options.commands.split(",") if word.strip()]
    unknown = [word for word in commands if word not in COMMANDS]
    if unknown or not commands:
        raise UsageProblem(f"--commands {options.commands}: known commands are {', '.join(COMMANDS)}")
    if not (0.05 <= options.duration <= 600):
        raise UsageProblem(f"--duration {options.duration:g}: give seconds from 0.05 to 600")
    if options.max_requests < 1:
        raise UsageProblem("--max-requests wants a positive number")
    if not (1 <= options.repeat <= 100):
        raise UsageProblem(f"--repeat {options.repeat}: give a number of runs from 1 to 100")
    return Plan(
        connections=_numbers("--connections", options.connections, largest=MAX_CONNECTIONS),
        pipelines=_numbers("--pipeline", options.pipeline, largest=1024),
        commands=list(dict.fromkeys(commands)),
        duration=options.duration,
        max_requests=options.max_requests,
        redis_benchmark=options.redis_benchmark,
        churn=not options.no_churn,
        repeat=options.repeat,
    )


def _drivers(text: str) -> int:
    if text == "auto":
        return max(1, min(os.cpu_count() or 1, 4))
    if text.isdigit() and 0 < int(text) <= 64:
        return int(text)
    raise UsageProblem(f"--drivers {text}: give a number from 1 to 64, or auto")


def _descriptors(needed: int) -> dict[str, int]:
    """Raise this process's soft RLIMIT_NOFILE to ``needed`` (the servers it
    starts inherit it); UsageProblem, before anything starts, when the hard
    limit does not allow it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limited = hard != resource.RLIM_INFINITY
    if limited and hard < needed:
        raise UsageProblem(
            f"this run needs {needed:,} open descriptors per process (its connections and the server's), and the "
            f"hard limit (RLIMIT_NOFILE) is {hard:,}: raise it (ulimit -Hn, or LimitNOFILE= for a service), "
            "or ask for fewer connections"
        )
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return {"soft": max(soft, needed), "hard": hard if limited else -1, "raised_from": soft}


# ---- the run --------------------------------------------------------------------------------


def run(options: argparse.Namespace) -> int:
    try:
        plan = _plan(options)
        largest = options.c10k_connections if options.c10k else max(plan.connections)
        if options.c10k and not (1 <= options.c10k_connections <= MAX_CONNECTIONS):
            raise UsageProblem(f"--c10k-connections wants a number from 1 to {MAX_CONNECTIONS:,}")
        room = c10k.room(largest) if options.c10k else plan.room
        if not _named_a_target(options):
            raise UsageProblem(
                "no target; give --reference ARCH|all, --cmd TEMPLATE or --address HOST:PORT "
                "(redis-server is measured beside them as the baseline)"
            )
        targets, settings = _targets(options, room)
        if options.bench_json:
            configuration.check_output_path("--json", options.bench_json)
        if options.bench_html:
            configuration.check_output_directory("--html", options.bench_html)
        drivers = _drivers(options.drivers)
        descriptors = _descriptors(room + DESCRIPTOR_MARGIN)
    except UsageProblem as problem:
        print(f"sockspec bench: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if options.baseline == "redis" and all(t.kind != "baseline" for t in targets):
        _say("redis-server is not installed: no baseline in this run (bash scripts/redis-up.sh installs it)")
    if not options.c10k and options.redis_benchmark != "none" and redis_benchmark.available() is None:
        _say("redis-benchmark is not installed: only the suite's own load generator runs")
    facts = report.Facts(
        profile=settings.profile,
        drivers=drivers,
        descriptors=descriptors,
        load_before=list(os.getloadavg()),
        started=time.time(),
    )
    groups = reaper.open_run()
    results: list[TargetBench] = []
    c10k_results: list[c10k.C10kResult] = []
    interrupted = False
    try:
        with tempfile.TemporaryDirectory(prefix="sockspec-bench-") as scratch:
            certs = make_certificates(Path(scratch))
            for target in targets:
                if options.c10k:
                    held = c10k.C10kResult(target.name, target.kind, target.spec.describe(), options.c10k_connections)
                    c10k_results.append(held)  # before measuring: an interrupt keeps what was measured
                    c10k.measure_target(
                        target,
                        certs,
                        drivers=drivers,
                        timeout=options.c10k_timeout,
                        ready_timeout=settings.ready_timeout,
                        into=held,
                        log=_say,
                    )
                else:
                    result = TargetBench(target.name, target.kind, target.profile, target.spec.describe())
                    results.append(result)  # before measuring: an interrupt keeps the cells done so far
                    _measure(target, certs, plan, drivers, settings.ready_timeout, into=result)
    except KeyboardInterrupt:
        interrupted = True
        _say(f"interrupted ({reaper.interrupted_by() or 'SIGINT'}); the figures so far are reported")
    finally:
        reaper.sweep(groups)
    document = report.to_json(results, c10k_results, plan if not options.c10k else None, facts, interrupted)
    _write(document, options)
    with contextlib.suppress(OSError):
        report.print_tables(document)
    return EXIT_INTERRUPTED if interrupted else report.exit_code(document)


def _named_a_target(options: argparse.Namespace) -> bool:
    return bool(options.reference or options.cmd or options.address)


def _measure(
    target: BenchTarget, certs: CertificateFiles, plan: Plan, drivers: int, ready_timeout: float, *, into: TargetBench
) -> None:
    result = into
    if target.kind == "reference":
        result.target = f"--reference {target.name}"
    began = time.monotonic()
    _say(f"{target.name}: starting ({plan.cells()} cells of {plan.duration:g} s)")
    try:
        with started(target, certs, plan.room, ready_timeout) as instance, Drivers(drivers) as pool:
            measure(target, instance, plan, pool, into=result, log=_say)
            died = instance.process.exit_report() if instance.process is not None else None
            if died:
                result.problem = died
    except HarnessError as error:
        result.problem = str(error)
        _say(f"{target.name}: {error}")
    except KeyboardInterrupt:
        result.problem = "interrupted: the cells measured before the interrupt"
        raise
    finally:
        result.time = time.monotonic() - began


def _write(document: dict[str, Any], options: argparse.Namespace) -> None:
    if options.bench_json:
        report.write_json(document, Path(options.bench_json))
        _say(f"JSON: {options.bench_json}")
    if options.bench_html:
        page = html.render(document, Path(options.bench_html))
        _say(f"HTML: {page}")


def _say(line: str) -> None:
    """Progress, on standard error: the tables go to standard output."""
    print(f"bench: {line}", file=sys.stderr, flush=True)
