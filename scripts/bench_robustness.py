"""Benchmark: the reference servers under the attacks of issue 13, the figures
of docs/robustness.md.

    .venv/bin/python scripts/bench_robustness.py [--arch all|A,B] [--only SCENARIO,...]
                                                 [--servers DIR] [--json FILE]

Scenarios, each per architecture:

- ``pinned``: what a client that never reads can pin. It pipelines 64 GETs of a
  1,000,000-byte value, each after an INCR of a counter, in one write, with a
  64 KiB receive buffer, and reads nothing. Reported: the GETs the server ran
  (the counter: at most one more than ran), the replies they stand for, what the kernels hold of them
  (the client's receive queue and the server's send queue, from /proc/net/tcp),
  the difference (pending output the server holds), and its memory growth (PSS
  over its process tree). Before the fix, 16 GETs are also sent alone, as in the
  issue.
- ``churn``: memory after 3 rounds of 10,000 short connections (connect, PING,
  close) beside one idle connection, against the baseline after 1,000.
- ``per-connection``: memory per open connection at 10,000 connections.
- ``accept``: the time to serve a new client right after 1,000 slowloris
  connections were opened at once, then its median and worst during 5 s of their
  trickle (one byte each per 100 ms), and, for process-per-connection, the CPU
  the parent and each child spend per connection (/proc/PID/schedstat). Busy
  architectures only: the queue ones serve as many connections as they have
  workers, and the rest wait in the backlog for a slowloris to time out.
- ``p99``: the legitimate client's p99 round trip during each attack of the
  ROBUST area, from ``sockspec run --reference ARCH --only 'CH-ROBUST-*'``.

``--servers DIR`` runs the reference servers of another tree (``git archive
COMMIT reference_servers | tar -x -C DIR``), to compare before and after a
change. A benchmark, not a test: it prints figures (markdown tables), measured
on whatever else the machine is doing, which it reports (load average).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import shlex
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from suite.checks.connections import ProcessTree  # noqa: E402
from suite.checks.test_robust import incr_replies, tcp_queues  # noqa: E402
from suite.targets.process import Endpoint, ServerProcess  # noqa: E402
from suite.targets.reference import resolve_architectures  # noqa: E402
from suite.wire import Wire, frame  # noqa: E402

SCENARIOS = ("pinned", "churn", "per-connection", "accept", "p99")
BUSY = ("process-per-connection", "thread-per-connection", "evented", "hybrid")
VALUE = 1_000_000
Row = dict[str, Any]


@contextlib.contextmanager
def server(servers: Path, arch: str, *flags: str) -> Iterator[tuple[ServerProcess, Endpoint]]:
    argv = [sys.executable, "-m", "reference_servers", arch, "--port", "0", *flags]
    with ServerProcess(argv, cwd=str(servers)) as process:
        yield process, process.start(timeout=30.0)


def store_value(endpoint: Endpoint, key: bytes, size: int) -> None:
    with Wire.connect(endpoint.host, endpoint.port) as wire:
        wire.send(b"FRAMED\r\n" + frame(b"SET " + key + b" " + b"v" * size))
        assert wire.read_line(5.0) == b"+OK\r\n" and wire.read_frame(10.0) == b"+OK"
        wire.send(frame(b"QUIT"))
        wire.wait_for_end(2.0)


def counter(endpoint: Endpoint, key: bytes) -> int:
    with Wire.connect(endpoint.host, endpoint.port) as wire:
        wire.send(b"GET " + key + b"\r\n")
        line = wire.read_line(5.0) or b"_\r\n"
    return int(line[1:-2]) if line.startswith(b"$") else 0


# ---- pinned ---------------------------------------------------------------------------------------


def pinned(servers: Path, arch: str) -> list[Row]:
    rows = []
    for gets in (16, 64):
        with server(servers, arch, "--concurrency", "2", "--max-connections", "8") as (process, endpoint):
            store_value(endpoint, b"big", VALUE)
            tree = ProcessTree(process.pid)
            before = tree.steady_memory(steady=0.5)
            attacker = socket.socket()
            attacker.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
            attacker.settimeout(10.0)
            attacker.connect((endpoint.host, endpoint.port))
            try:
                # The INCR before its GET: a GET runs only after its INCR, so the
                # counter is the GETs run, or one more (stopped between the two).
                attacker.sendall(b"INCR started\r\nGET big\r\n" * gets)
                grown = tree.steady_memory(steady=0.5) - before
                unread_here = struct.unpack("i", fcntl.ioctl(attacker, termios.FIONREAD, b"\0" * 4))[0]
                queues = tcp_queues(attacker.getpeername()[:2], attacker.getsockname()[:2], process.pid)
            finally:
                attacker.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
                attacker.close()
            executed = counter(endpoint, b"started")
        produced = executed * (VALUE + 3) + incr_replies(executed)
        in_kernels = unread_here + (queues[0] if queues else 0)
        rows.append(
            {
                "arch": arch,
                "GETs sent": gets,
                "GETs run (at most)": executed,
                "replies made (MB)": round(produced / 1e6, 1),
                "held by the kernels (MB)": round(in_kernels / 1e6, 1),
                "held by the server (MB, at most)": round((produced - in_kernels) / 1e6, 2),
                "memory growth (MB, PSS)": round(grown / 1e6, 1),
            }
        )
    return rows


# ---- churn and per-connection ---------------------------------------------------------------------


def churn(servers: Path, arch: str, rounds: int = 3, per_round: int = 10_000) -> list[Row]:
    with server(servers, arch, "--max-connections", "64", "--idle-timeout", "600") as (process, endpoint):
        tree = ProcessTree(process.pid)
        with socket.create_connection((endpoint.host, endpoint.port), timeout=5.0) as idle:
            idle.sendall(b"PING\r\n")
            assert idle.recv(16) == b"+PONG\r\n"
            short_connections(endpoint, 1000)
            baseline = tree.steady_memory(steady=0.5)
            row: Row = {"arch": arch, "baseline (MB, PSS)": round(baseline / 1e6, 1)}
            for round_number in range(1, rounds + 1):
                started = time.monotonic()
                short_connections(endpoint, per_round)
                rate = per_round / (time.monotonic() - started)
                grown = tree.steady_memory(steady=0.5) - baseline
                row[f"after {round_number * per_round:,} (MB)"] = round(grown / 1e6, 1)
            row["connections/s"] = round(rate)
    return [row]


def short_connections(endpoint: Endpoint, count: int) -> None:
    for _ in range(count):
        with socket.create_connection((endpoint.host, endpoint.port), timeout=5.0) as sock:
            sock.sendall(b"PING\r\n")
            sock.recv(16)


def per_connection(servers: Path, arch: str, count: int = 10_000) -> list[Row]:
    flags = ("--max-connections", str(count + 100), "--idle-timeout", "600")
    with server(servers, arch, *flags) as (process, endpoint):
        tree = ProcessTree(process.pid)
        baseline = tree.steady_memory(steady=0.5)
        opened = []
        try:
            for _ in range(count):
                sock = socket.create_connection((endpoint.host, endpoint.port), timeout=10.0)
                opened.append(sock)
            for sock in opened:  # served, each one: its session exists in the server
                sock.sendall(b"PING\r\n")
            for sock in opened:
                assert sock.recv(16) == b"+PONG\r\n"
            held = tree.steady_memory(steady=0.5) - baseline
        finally:
            for sock in opened:
                sock.close()
    return [{"arch": arch, "connections": count, "memory (MB, PSS)": round(held / 1e6, 1),
             "per connection (KB)": round(held / count / 1e3, 2)}]  # fmt: skip


# ---- accept -----------------------------------------------------------------------------------------


def cpu_ns(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def time_a_ping(endpoint: Endpoint) -> float:
    started = time.monotonic()
    with socket.create_connection((endpoint.host, endpoint.port), timeout=30.0) as sock:
        sock.settimeout(30.0)
        sock.sendall(b"PING\r\n")
        assert sock.recv(16) == b"+PONG\r\n"
    return time.monotonic() - started


def accept(servers: Path, arch: str, bursts: int = 3) -> list[Row]:
    """Three bursts, each on a fresh server: the median, and the spread, of what a shared machine gives."""
    if arch not in BUSY:
        return [{"arch": arch, "note": "n/a: serves only as many connections as it has workers"}]
    runs = [one_burst(servers, arch) for _ in range(bursts)]
    row: Row = {"arch": arch}
    for key in runs[0]:
        values = [run[key] for run in runs]
        middle = statistics.median(values)
        row[key] = f"{middle:.3f} ({min(values):.3f}-{max(values):.3f})" if len(values) > 1 else f"{middle:.3f}"
    row["load average"] = f"{os.getloadavg()[0]:.1f}"
    return [row]


def one_burst(servers: Path, arch: str, count: int = 1000, trickle_for: float = 5.0) -> dict[str, float]:
    with server(servers, arch, "--max-connections", str(count + 50), "--idle-timeout", "600") as (process, endpoint):
        tree = ProcessTree(process.pid)
        known = {p.pid for p in tree.processes()}
        parent_before = cpu_ns(process.pid)
        slow = []
        try:
            for _ in range(count):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex((endpoint.host, endpoint.port))
                slow.append(sock)
            after_burst = time_a_ping(endpoint)
            parent = (cpu_ns(process.pid) - parent_before) / count
            child = None
            if arch == "process-per-connection":
                deadline = time.monotonic() + 60.0
                while len(children := [p.pid for p in tree.processes() if p.pid not in known]) < count:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.1)  # waiting for the children to exist, within the deadline
                child = statistics.mean(cpu_ns(pid) for pid in children)  # what starting cost each
            during = trickle(slow, endpoint, trickle_for)
        finally:
            for sock in slow:
                sock.close()
    row = {
        "new client after the burst (s)": after_burst,
        "during the trickle: median (s)": statistics.median(during),
        "worst (s)": max(during),
    }
    if child is not None:
        row["parent CPU per connection (ms)"] = parent / 1e6
        row["child CPU (ms)"] = child / 1e6
    return row


def trickle(slow: list[socket.socket], endpoint: Endpoint, seconds: float) -> list[float]:
    """One byte of a never-ending request per connection every 100 ms; a new client every 250 ms."""
    latencies = []
    until = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < until:
        for sock in slow:
            with contextlib.suppress(OSError):
                sock.send(b"SET slow xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"[sent : sent + 1])
        sent += 1
        latencies.append(time_a_ping(endpoint))
        select.select([], [], [], 0.1)  # the trickle's pace
    return latencies


# ---- p99 ------------------------------------------------------------------------------------------

ATTACKS = {
    "CH-ROBUST-1": "never reads",
    "CH-ROBUST-2": "huge claims",
    "CH-ROBUST-3": "garbage",
    "CH-ROBUST-4": "churn",
    "CH-ROBUST-5": "slowloris",
}


def legitimate_p99(servers: Path, arch: str) -> list[Row]:
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "robust.json"
        target = ["--reference", arch]
        if servers.resolve() != ROOT:
            program = f"env -C {shlex.quote(str(servers))} {shlex.quote(sys.executable)} -m reference_servers {arch}"
            flags = "--port {port} --tls-port {tls_port} --cert {cert} --key {key} --idle-timeout {idle}"
            sizing = "--concurrency 8" if arch in ("preforking", "thread-pool") else "--max-connections 32"
            target = ["--cmd", f"{program} {flags} {sizing}"]
        command = [sys.executable, "-m", "suite.cli", "run", *target, "--only", "CH-ROBUST-*", "--json", str(report)]
        started = time.monotonic()
        subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
        took = time.monotonic() - started
        data = json.loads(report.read_text())
    found = data["targets"][0]
    row: Row = {"arch": arch}
    for measurement in found["measurements"]:
        if measurement["name"] == "legitimate client's p99 round trip":
            row[f"{ATTACKS[measurement['requirement']]} (ms)"] = measurement["value"]
    row["verdicts"] = " ".join(f"{r['id'][-1]}:{r['verdict']}" for r in found["results"])
    row["area took (s)"] = round(took, 1)
    return [row]


# ---- the run --------------------------------------------------------------------------------------

RUNNERS: dict[str, tuple[Callable[[Path, str], list[Row]], tuple[str, ...] | None]] = {
    "pinned": (pinned, None),
    "churn": (churn, ("evented", "hybrid")),
    "per-connection": (per_connection, ("evented", "hybrid")),
    "accept": (accept, None),
    "p99": (legitimate_p99, None),
}


def table(rows: list[Row]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="all", help="architectures: all, or a comma list")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"scenarios: {', '.join(SCENARIOS)}")
    parser.add_argument("--servers", type=Path, default=ROOT, help="a tree holding the reference_servers to run")
    parser.add_argument("--json", type=Path, help="also write every row as JSON")
    args = parser.parse_args()
    scenarios = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; known: {', '.join(SCENARIOS)}")
    if not (args.servers / "reference_servers").is_dir():
        parser.error(f"--servers {args.servers}: no reference_servers directory there")
    try:
        archs = resolve_architectures(args.arch)
    except ValueError as error:
        parser.error(str(error))
    results: dict[str, list[Row]] = {}
    print(f"# {args.servers}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start\n")
    for scenario in scenarios:
        runner, default_archs = RUNNERS[scenario]
        rows = []
        for arch in archs:
            if default_archs is not None and args.arch == "all" and arch not in default_archs:
                continue
            rows += runner(args.servers, arch)
            print(f"  {scenario} {arch} done (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        results[scenario] = rows
        print(f"## {scenario}\n\n{table(rows)}\n", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
