"""The seven reference servers in RESP mode (``--protocol resp``), as real
processes over real sockets: redis-benchmark runs against each without an
error, each declares through INFO what the RESP2 profile reads, SIGTERM ends
each at once with a client blocked in BLPOP, and two architectures pass the
whole RESP2 profile (all seven: ``sockspec run --profile resp2 --reference all``).

No check sleeps to synchronise: every wait is for a reply, a close or an
exit, with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference_servers.cli import ARCHITECTURES
from suite.targets.process import Endpoint, ServerProcess
from suite.wire import Ending, Wire
from tests.redis_support import redis_or_skip
from tests.report_support import validate_report

REPO = Path(__file__).resolve().parents[1]
ARCHS = list(ARCHITECTURES)
POOLS = {"preforking", "thread-pool"}  # --concurrency is their size
REFUSE_PAST_THE_LIMIT = {"process-per-connection", "thread-per-connection", "evented", "hybrid"}
MAX_CONNECTIONS = 16
WORKERS = 9  # room for redis-benchmark's 8 clients, and its CONFIG connection still closing
IDLE_SECONDS = 7
BENCHMARKED = ("PING_INLINE", "PING_MBULK", "SET", "GET", "INCR")


@contextlib.contextmanager
def resp_server(arch: str) -> Iterator[tuple[ServerProcess, Endpoint]]:
    argv = [sys.executable, "-m", "reference_servers", arch, "--protocol", "resp", "--port", "0"]
    argv += ["--max-connections", str(MAX_CONNECTIONS), "--idle-timeout", str(IDLE_SECONDS)]
    if arch in POOLS:
        argv += ["--concurrency", str(WORKERS)]
    with ServerProcess(argv, cwd=str(REPO)) as server:
        yield server, server.start(timeout=15.0)


def command(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


def read_bulk(wire: Wire) -> bytes:
    header = wire.read_line(timeout=5.0)
    assert header is not None and header.startswith(b"$"), f"expected a bulk string, got {header!r}"
    return wire.read_exactly(int(header[1:]) + 2, timeout=5.0)[:-2]


# ---- redis-benchmark ------------------------------------------------------------------------


def redis_benchmark(port: int, clients: int) -> subprocess.CompletedProcess[str]:
    program = redis_or_skip("redis-benchmark")
    command_line = [program, "-p", str(port), "-t", "ping,set,get,incr", "-n", "2000", "-c", str(clients), "-q"]
    return subprocess.run(command_line, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("arch", ARCHS)
def test_redis_benchmark_runs_without_errors(arch: str) -> None:
    # redis-benchmark keeps every client connected to the end: against a server that
    # serves one connection at a time, the other clients would wait for ever.
    clients = 1 if arch == "serial" else 8
    with resp_server(arch) as (_, endpoint):
        result = redis_benchmark(endpoint.port, clients)
    output = result.stdout + result.stderr
    problems = [line for line in output.splitlines() if re.search(r"Error|ERR|WARN", line)]
    assert result.returncode == 0 and not problems, output
    rates = dict(re.findall(r"(\w+): ([0-9.]+) requests per second", output))
    assert all(float(rates.get(name, 0)) > 0 for name in BENCHMARKED), output


# ---- INFO -----------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_info_declares_what_the_resp2_profile_reads(arch: str) -> None:
    with resp_server(arch) as (_, endpoint), Wire.connect(endpoint.host, endpoint.port) as wire:
        wire.send(command(b"INFO"))
        lines = read_bulk(wire).decode().split("\r\n")
        wire.send(b"QUIT\r\n")
        assert wire.read_line() == b"+OK\r\n" and wire.wait_for_end() is Ending.FIN, "QUIT: +OK, then the close"
    pairs = dict(line.split(":", 1) for line in lines if ":" in line)
    concurrency = 1 if arch == "serial" else WORKERS if arch in POOLS else MAX_CONNECTIONS
    assert pairs["concurrency"] == str(concurrency), pairs
    assert pairs["timeout"] == str(IDLE_SECONDS) and pairs["features"] == "" and pairs["proto"] == "resp2", pairs
    if arch in REFUSE_PAST_THE_LIMIT:
        assert pairs["maxclients"] == str(MAX_CONNECTIONS), pairs
    else:  # the connection past the limit waits in the backlog: no Redis maxclients
        assert "maxclients" not in pairs, pairs


@pytest.mark.parametrize("arch", ARCHS)
def test_incr_counts_on_only_from_a_canonical_integer_in_every_store(arch: str) -> None:
    """Redis's integers, in the store of every architecture (a lock, or shared memory)."""
    with resp_server(arch) as (_, endpoint), Wire.connect(endpoint.host, endpoint.port) as wire:
        for value, reply in ((b"007", b"-ERR value is not an integer or out of range\r\n"), (b"-7", b":-6\r\n")):
            wire.send(command(b"SET", b"n", value) + command(b"INCR", b"n"))
            assert wire.read_lines(2) == [b"+OK\r\n", reply], value


# ---- SIGTERM --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_sigterm_ends_the_server_at_once_with_a_client_blocked_in_blpop(arch: str) -> None:
    with resp_server(arch) as (server, endpoint), Wire.connect(endpoint.host, endpoint.port) as blocked:
        blocked.send(command(b"PING"))
        assert blocked.read_line() == b"+PONG\r\n"  # served (for serial: the one it serves)
        blocked.send(command(b"BLPOP", b"nolist", b"0"))  # blocks for ever
        assert blocked.receive_available(0.1) == b"", "BLPOP on a key with nothing to pop blocks"
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        ending = blocked.wait_for_end(2.0)
        assert ending is Ending.FIN and blocked.pending() == b"", "a blocked client is closed without a word"
        status = server.wait(signalled + 5.0 - time.monotonic())
        took = time.monotonic() - signalled
    assert status == 0, f"exit status {status} after SIGTERM"
    assert took < 2.0, f"exited {took:.2f} s after SIGTERM: the BLPOP should end at once"


# ---- the RESP2 profile ----------------------------------------------------------------------

PROFILED = ("evented", "thread-pool")


def test_two_architectures_pass_every_resp2_requirement(tmp_path: Path) -> None:
    """Evented and thread-pool (the two the others are made of: one reactor, one
    pool of blocking workers) in one run; a pool queues the connection past its
    size, so it declares no maxclients and R2-LIMIT does not apply to it."""
    report = tmp_path / "report.json"
    command_line = [sys.executable, "-m", "suite.cli", "run", "--profile", "resp2", "--reference", ",".join(PROFILED)]
    command_line += ["--json", str(report), "--seed", "1"]
    result = subprocess.run(command_line, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    tail = (result.stdout + result.stderr)[-4000:]
    assert report.exists(), tail
    data = json.loads(report.read_text())
    validate_report(data)
    for target in data["targets"]:
        verdicts = {r["id"]: (r["verdict"], r["detail"]) for r in target["results"]}
        deviations = {i: v for i, v in verdicts.items() if v[0] != "PASS"}
        if target["name"] == "thread-pool":
            assert set(deviations) == {"R2-LIMIT-1", "R2-LIMIT-2"}, deviations
            assert all(v == "UNSUPPORTED" and "not applicable" in d for v, d in deviations.values()), deviations
        else:
            assert deviations == {}, deviations
        assert target["conformance"] == "full", (target["name"], target["level"], tail)
    assert result.returncode == 0, tail
