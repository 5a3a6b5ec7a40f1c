"""Hybrid's workers share the listening ports, and a burst of connections is spread
across them: no worker takes the whole burst while another sits idle.

Both workers are stopped while the burst connects (the kernel completes every
handshake into a listen queue), then continued one after the other: the first
takes all it can reach before the second runs. On one shared listener that is
the whole burst; with a listener per worker, its own queue's share. A real
server, real connections, real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from suite.targets.process import Endpoint, ServerProcess
from suite.wire import Wire

REPO = Path(__file__).resolve().parents[1]
BURST = 100
FAIR_SHARE = 20  # of BURST: each of the two workers takes at least this many
DEADLINE = 10.0  # seconds, for the workers to appear and for each reply


def _workers_waiting(master_pid: int, count: int) -> list[psutil.Process]:
    """The master's workers, once each is asleep in its reactor's epoll_wait (a
    worker still starting up would miss the burst for a reason of its own)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        children = psutil.Process(master_pid).children()
        if len(children) == count and all(_sleeps_in_epoll(child.pid) for child in children):
            return children
        time.sleep(0.02)  # polling a condition (the forks, their start-up), under the deadline above
    raise AssertionError(f"hybrid did not have {count} workers waiting in epoll within {DEADLINE} s")


def _sleeps_in_epoll(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "do_epoll_wait"
    except OSError:
        return False


def _held_by(worker: psutil.Process, port: int) -> int:
    return sum(
        1
        for connection in worker.net_connections(kind="tcp")
        if connection.status == psutil.CONN_ESTABLISHED and connection.laddr and connection.laddr.port == port
    )


@contextlib.contextmanager
def _hybrid_with_two_workers() -> Iterator[tuple[Endpoint, list[psutil.Process]]]:
    """A hybrid server with room for the burst, and its two workers once both wait in epoll."""
    argv = [sys.executable, "-m", "reference_servers", "hybrid", "--port", "0"]
    argv += ["--concurrency", "2", "--max-connections", str(2 * BURST)]
    with ServerProcess(argv, cwd=str(REPO)) as server:
        endpoint = server.start(timeout=15.0)
        yield endpoint, _workers_waiting(server.pid, 2)


@contextlib.contextmanager
def _burst_while_stopped(
    endpoint: Endpoint, workers: list[psutil.Process], killed: psutil.Process | None = None
) -> Iterator[list[Wire]]:
    """BURST connections made while the workers are stopped (the kernel completes
    each into a listen queue); then ``killed`` is killed, and the others are
    continued one at a time, each once the one before has taken all it can
    reach and sleeps again. The connections are closed on the way out."""
    wires: list[Wire] = []
    for worker in workers:
        worker.send_signal(signal.SIGSTOP)
    stopped = list(workers)
    try:
        wires = [Wire.connect(endpoint.host, endpoint.port, timeout=DEADLINE) for _ in range(BURST)]
        if killed is not None:
            killed.kill()  # with its share of the burst still in its listener's queue
            stopped.remove(killed)
        while stopped:
            worker = stopped.pop(0)
            worker.send_signal(signal.SIGCONT)
            if stopped:
                _wait_until_it_took_what_it_can(worker, endpoint.port)
        yield wires
    finally:
        for worker in stopped:
            worker.send_signal(signal.SIGCONT)
        for wire in wires:
            wire.close()


def _wait_until_it_took_what_it_can(worker: psutil.Process, port: int) -> None:
    """Until the worker holds a connection and sleeps in epoll_wait: a
    level-triggered reactor sleeps only once no listener it watches has a
    connection waiting."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if _held_by(worker, port) and _sleeps_in_epoll(worker.pid):
            return
        time.sleep(0.01)  # polling a condition, under the deadline above
    raise AssertionError(f"a continued worker took no connection of the burst within {DEADLINE} s")


def _ping_each(wires: list[Wire], when: str) -> None:
    for index, wire in enumerate(wires):
        wire.send(b"PING\r\n")
        reply = wire.read_line(timeout=DEADLINE)
        assert reply == b"+PONG\r\n", (
            f"connection {index} of {BURST}, {when}, was not served: expected +PONG, got {reply!r} "
            f"({wire.ending.value})"
        )


def test_a_burst_of_connections_is_spread_across_both_workers() -> None:
    with _hybrid_with_two_workers() as (endpoint, workers), _burst_while_stopped(endpoint, workers) as wires:
        _ping_each(wires, "made while both workers were stopped")
        shares = [_held_by(worker, endpoint.port) for worker in workers]
        assert sum(shares) == BURST, f"the workers hold {shares} connections, expected {BURST} in all"
        assert min(shares) >= FAIR_SHARE, (
            f"one worker took the burst: the two workers hold {shares} of {BURST} connections "
            f"(expected at least {FAIR_SHARE} each)"
        )


def test_connections_queued_for_a_killed_worker_are_served_by_its_replacement() -> None:
    with (
        _hybrid_with_two_workers() as (endpoint, workers),
        _burst_while_stopped(endpoint, workers, killed=workers[0]) as wires,
    ):
        _ping_each(wires, "queued while a worker was killed")


def test_a_second_server_on_a_taken_port_fails_instead_of_sharing_it() -> None:
    """SO_REUSEPORT would let a second hybrid on the same port join the first
    one's group and take half its connections; it must fail as any server does."""
    argv = [sys.executable, "-m", "reference_servers", "hybrid", "--port", "0"]
    with ServerProcess(argv, cwd=str(REPO)) as server:
        endpoint = server.start(timeout=15.0)
        second = subprocess.Popen(
            [sys.executable, "-m", "reference_servers", "hybrid", "--port", str(endpoint.port)],
            cwd=str(REPO),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own group: reaped whole if it runs instead of failing
        )
        try:
            stdout, stderr = second.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(second.pid, signal.SIGKILL)
            stdout, stderr = second.communicate()
        assert second.returncode == 1 and b"Address already in use" in stderr, (
            f"a second hybrid on the taken port {endpoint.port}: expected exit 1 and 'Address already in use', "
            f"got exit {second.returncode}, stdout {stdout!r}, stderr {stderr[-300:]!r}"
        )
