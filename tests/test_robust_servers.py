"""The reference servers under the attacks of issue 13, over real sockets, as
real processes: the bound on a connection's pending output in all seven
architectures (and what it must not break: a slow reader gets every reply, a
SLEEP behind the mark still answers, SIGTERM still ends the server in time),
the memory of evented and hybrid after 30,000 short connections beside an
idle one, and process-per-connection accepting while it forks a thousand
children.

Waits are reads or polls with deadlines; every server is killed and reaped.
The two soak-sized tests are marked slow.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from suite.certs import CertificateFiles
from suite.checks.connections import ProcessTree
from suite.targets.process import Endpoint, ServerProcess
from suite.wire import Wire, frame

REPO = Path(__file__).resolve().parents[1]
ARCHS = [
    "serial",
    "process-per-connection",
    "thread-per-connection",
    "preforking",
    "thread-pool",
    "evented",
    "hybrid",
]
BIG = 1_000_000  # bytes of the value the GETs ask for
MARK = 1 << 20  # the reference servers' default max_output


@contextlib.contextmanager
def running(arch: str, *flags: str, tls: CertificateFiles | None = None) -> Iterator[tuple[ServerProcess, Endpoint]]:
    argv = [sys.executable, "-m", "reference_servers", arch, "--port", "0", *flags]
    if tls is not None:
        argv += ["--tls-port", "0", "--cert", str(tls.cert), "--key", str(tls.key)]
    with ServerProcess(argv, cwd=str(REPO)) as server:
        yield server, server.start(timeout=15.0)


def connect(endpoint: Endpoint) -> Wire:
    return Wire.connect(endpoint.host, endpoint.port, timeout=5.0)


def store_big_value(endpoint: Endpoint, key: bytes = b"big") -> bytes:
    value = b"v" * BIG
    with connect(endpoint) as wire:
        wire.send(b"FRAMED\r\n" + frame(b"SET " + key + b" " + value))
        assert wire.read_line(5.0) == b"+OK\r\n" and wire.read_frame(10.0) == b"+OK"
        wire.send(frame(b"QUIT"))
        wire.wait_for_end(2.0)  # a serial server's one slot is free again
    return value


def counter(endpoint: Endpoint, key: bytes) -> int:
    with connect(endpoint) as wire:
        wire.send(b"GET " + key + b"\r\n")
        line = wire.read_line(5.0)
    assert line is not None and (line == b"_\r\n" or line.startswith(b"$")), line
    return 0 if line == b"_\r\n" else int(line[1:-2])


def non_reader(endpoint: Endpoint) -> socket.socket:
    """A client with a small receive buffer that will never read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    sock.settimeout(5.0)
    sock.connect((endpoint.host, endpoint.port))
    return sock


def reset(sock: socket.socket) -> None:
    """Close with RST, so that the server lets go of the connection at once."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ---- the output bound, in every architecture ----------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_a_client_that_never_reads_gets_only_what_fits_under_the_mark(arch: str) -> None:
    """64 pipelined GETs of a 1 MB value (64 MB of replies) from a client that
    never reads: the server runs only those whose replies the kernels and the
    1 MiB mark can hold (about 4 here), and stops reading the rest."""
    pairs = 64
    with running(arch, "--concurrency", "2", "--max-connections", "8") as (server, endpoint):
        store_big_value(endpoint)
        tree = ProcessTree(server.pid)
        before = tree.steady_memory()
        attacker = non_reader(endpoint)
        try:
            attacker.sendall(b"GET big\r\nINCR executed\r\n" * pairs)
            if arch != "serial":  # the others are served meanwhile (serial serves the attacker alone)
                with connect(endpoint) as other:
                    other.send(b"PING\r\n")
                    assert other.read_line(5.0) == b"+PONG\r\n"
            grown = tree.steady_memory() - before
        finally:
            reset(attacker)
        executed = counter(endpoint, b"executed")
    # The kernels hold a few MiB at most here (4 MiB of send buffer, 64 KiB of receive buffer).
    assert executed <= 12, f"{arch} ran {executed} of {pairs} GETs of 1 MB for a client that reads nothing"
    assert grown < 16 << 20, f"{arch} grew by {grown} bytes (PSS) holding output nobody reads"


@pytest.mark.parametrize("arch", ARCHS)
def test_a_slow_reader_gets_every_reply_once_it_reads(arch: str) -> None:
    """Pausing at the mark must resume: 12 MB of pipelined replies, then a PING,
    read only after all were sent, arrive complete and in order."""
    with running(arch, "--concurrency", "2", "--max-connections", "8") as (_, endpoint):
        value = store_big_value(endpoint)
        with connect(endpoint) as wire:
            wire.send(b"GET big\r\n" * 12 + b"PING\r\n")
            for index in range(12):
                assert wire.read_exactly(BIG + 3, 10.0) == b"$" + value + b"\r\n", f"reply {index + 1} of 12"
            assert wire.read_line(5.0) == b"+PONG\r\n"


def test_over_tls_a_slow_reader_gets_every_reply_too(tls_material: CertificateFiles) -> None:
    with running("evented", tls=tls_material) as (_, endpoint):
        value = store_big_value(endpoint)
        assert endpoint.tls_port is not None
        context = ssl.create_default_context(cafile=str(tls_material.ca))
        with Wire.connect_tls(endpoint.host, endpoint.tls_port, context, server_hostname="localhost") as wire:
            wire.send(b"GET big\r\n" * 8 + b"PING\r\n")
            for index in range(8):
                assert wire.read_exactly(BIG + 3, 10.0) == b"$" + value + b"\r\n", f"reply {index + 1} of 8"
            assert wire.read_line(5.0) == b"+PONG\r\n"


def test_a_connection_held_at_the_mark_is_not_idle_and_its_sleep_answers_after_the_drain() -> None:
    """Idle timeout 0.5 s: a client that reads nothing for 1.5 s while its output
    is over the mark is not timed out; once it reads, every reply comes (the SLEEP
    behind the mark too), and only then does the idle timer run again."""
    idle = 0.5
    with running("evented", "--idle-timeout", str(idle), "--max-output", "65536") as (_, endpoint):
        value = store_big_value(endpoint)
        sock = non_reader(endpoint)
        with contextlib.closing(sock):
            count = 16  # 16 MB: more than the kernels hold, so the server waits at its mark
            sock.sendall(b"GET big\r\n" * count + b"SLEEP 10\r\nPING\r\n")
            time.sleep(3 * idle)  # reading nothing for three idle timeouts: the attack itself, not a wait for news
            wire = Wire(sock)
            for index in range(count):
                assert wire.read_exactly(BIG + 3, 10.0) == b"$" + value + b"\r\n", f"reply {index + 1}"
            assert wire.read_line(5.0) == b"+OK\r\n", "the SLEEP behind the mark"
            assert wire.read_line(5.0) == b"+PONG\r\n"
            read_at = time.monotonic()
            timeout = wire.read_line(idle + 2.0)
            waited = time.monotonic() - read_at
            assert timeout is not None and timeout.startswith(b"-ERR TIMEOUT"), timeout
            assert waited >= idle - 0.1, f"TIMEOUT {waited:.2f} s after the last reply left (idle {idle} s)"


@pytest.mark.parametrize("arch", ["evented", "process-per-connection", "thread-pool"])
def test_sigterm_still_ends_the_server_in_time_with_a_client_that_never_reads(arch: str) -> None:
    """At the shutdown deadline the requests held behind the mark get their
    SHUTDOWNs queued and the connection is closed: the exit is still within 5 s."""
    with running(arch, "--concurrency", "2") as (server, endpoint):
        store_big_value(endpoint)
        attacker = non_reader(endpoint)
        try:
            attacker.sendall(b"GET big\r\n" * 32)
            with connect(endpoint) as check:  # the GETs have been read and the output is full by now
                check.send(b"PING\r\n")
                assert check.read_line(5.0) == b"+PONG\r\n"
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)
            status = server.wait(6.0)
            took = time.monotonic() - signalled
        finally:
            attacker.close()
    assert status == 0, f"{arch} exited with {status} ({took:.1f} s after SIGTERM)"
    assert took <= 5.0, f"{arch} took {took:.1f} s to exit"


# ---- closed connections, at soak size -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["evented", "hybrid"])
def test_thirty_thousand_short_connections_beside_an_idle_one_leave_memory_within_5_mb(arch: str) -> None:
    with running(arch, "--max-connections", "64", "--idle-timeout", "600") as (server, endpoint):
        tree = ProcessTree(server.pid)
        with connect(endpoint) as idle:
            idle.send(b"PING\r\n")
            assert idle.read_line(5.0) == b"+PONG\r\n"
            churn(endpoint, 1000)  # warm-up: allocators and caches reach their working size
            before = tree.memory()
            churn(endpoint, 30_000)
            tree.settled(tree.descriptors, 0, 1.0)
            grown = tree.memory() - before
            idle.send(b"PING\r\n")
            assert idle.read_line(5.0) == b"+PONG\r\n", "the idle connection, open throughout"
    assert grown <= 5_000_000, f"{arch} kept {grown} bytes after 30,000 short connections beside an idle one"


def churn(endpoint: Endpoint, count: int) -> None:
    for _ in range(count):
        with socket.create_connection((endpoint.host, endpoint.port), timeout=5.0) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(16) == b"+PONG\r\n"


# ---- process-per-connection forking a thousand children --------------------------------------------


def test_the_forking_architectures_do_not_import_threading() -> None:
    """Once imported, threading's after-fork hook runs in every forked child
    (65 of the 415 page faults a process-per-connection child took to start)."""
    script = (
        "import sys, json; import reference_servers.cli, reference_servers.process_per_connection, "
        "reference_servers.preforking; print(json.dumps('threading' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is False


@pytest.mark.slow
def test_process_per_connection_forks_a_thousand_children_cheaply_and_serves_beside_them() -> None:
    """A thousand connections at once. The parent's own work per connection is
    counted in page faults, which the machine's other load does not change: each
    fork makes the parent's pages copy-on-write again, so every page it touches
    between two forks is copied (135 per connection when it accepted, reaped
    every child and forked in turn; about 50 when it accepts a batch, then forks).
    Once the children are running, a new client is served at once. (The time to
    serve a client at the back of the burst is the benchmark's: about 0.8 s on
    two quiet cores, scripts/bench_robustness.py --only accept.)"""
    count = 1000
    with running("process-per-connection", "--max-connections", str(count + 50)) as (server, endpoint):
        attackers = []
        try:
            faults_before = minor_faults(server.pid)
            for _ in range(count):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex((endpoint.host, endpoint.port))
                attackers.append(sock)
            tree = ProcessTree(server.pid)
            deadline = time.monotonic() + 60.0
            while tree.count() < count + 1 and time.monotonic() < deadline:  # the parent and its children
                time.sleep(0.1)  # polling, within the deadline
            assert tree.count() >= count + 1, f"only {tree.count() - 1} of {count} children after 60 s"
            per_connection = (minor_faults(server.pid) - faults_before) / count
            steady = time_a_ping(endpoint)
        finally:
            for sock in attackers:
                sock.close()
    assert per_connection <= 90, f"the parent took {per_connection:.0f} page faults per connection it forked for"
    assert steady <= 0.1, f"with {count} children running, a new client waited {steady:.3f} s"


def minor_faults(pid: int) -> int:
    """The process's minor page faults so far (/proc/PID/stat, field 10)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])


def time_a_ping(endpoint: Endpoint) -> float:
    started = time.monotonic()
    with socket.create_connection((endpoint.host, endpoint.port), timeout=10.0) as sock:
        sock.settimeout(10.0)
        sock.sendall(b"PING\r\n")
        assert sock.recv(16) == b"+PONG\r\n"
    return time.monotonic() - started
