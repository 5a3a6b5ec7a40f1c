"""SIGTERM and SIGINT stop every reference server, whichever of its threads the
kernel would hand them to.

Python runs signal handlers only in the main thread, while the kernel gives a
signal sent to a process to any one of its threads that does not block it. A
worker thread that took the stop would leave the main thread asleep and the
server running (seen as CH-LIFE-9 failing, thread-pool "still running 5.50 s
after SIGINT", its main thread in poll). The servers, and the skeleton the
student guide offers, block the stop signals in every thread but the main one.

The race is made certain rather than waited for: the server is stopped
(SIGSTOP), sent SIGINT, and continued; the signal stays pending for the whole
process, and the first thread to run takes it. Without the blocking, a worker
thread is often first (thread-pool: 3 to 5 runs of 5 hung; thread-per-connection:
about half), so a server with worker threads gets ROUNDS tries. Real servers,
real signals."""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from suite.checks.connections import signal_mask
from suite.targets.process import ServerProcess

REPO = Path(__file__).resolve().parents[1]
DEADLINE = 10.0  # seconds: for the threads to appear, and for a stopped process to show it
EXIT_WITHIN = 5.0 + 0.5  # PROTOCOL.md's 5 s (CH-LIFE-9), with the suite's margin for a loaded machine
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
ROUNDS = 8  # for a server with worker threads: at half a chance of a hang each, 1 in 256 would miss it

# Each server with the worker threads it has once one connection is served (the
# main thread of each of its processes not counted): the seven references, and the
# student guide's skeleton, a thread per connection written the way a student would.
WORKER_THREADS = {
    "thread-pool": 4,  # --concurrency 4: four pool threads
    "thread-per-connection": 1,  # one thread for the one connection
    "serial": 0,
    "process-per-connection": 0,
    "preforking": 0,
    "evented": 0,
    "hybrid": 0,
    "the guide's skeleton": 1,
}


def _argv(server: str) -> list[str]:
    if server == "the guide's skeleton":
        return [sys.executable, str(REPO / "docs" / "skeleton" / "server.py"), "--port", "0"]
    return [sys.executable, "-m", "reference_servers", server, "--port", "0", "--concurrency", "4"]


@contextlib.contextmanager
def _serving_one_connection(name: str) -> Iterator[tuple[ServerProcess, psutil.Process]]:
    with ServerProcess(_argv(name), cwd=str(REPO)) as server:
        endpoint = server.start(timeout=15.0)
        with socket.create_connection((endpoint.host, endpoint.port), timeout=DEADLINE) as connection:
            connection.sendall(b"PING\r\n")
            assert connection.recv(64) == b"+PONG\r\n"
            master = psutil.Process(server.pid)
            _wait_for_worker_threads(master, WORKER_THREADS[name])
            yield server, master


def _worker_threads(process: psutil.Process) -> list[tuple[int, int]]:
    """(pid, thread id) of every thread in the tree that is not its process's main thread."""
    ids = []
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            ids += [(member.pid, thread.id) for thread in member.threads() if thread.id != member.pid]
    return ids


def _wait_for_worker_threads(process: psutil.Process, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while len(_worker_threads(process)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} worker threads did not appear within {DEADLINE} s")
        time.sleep(0.01)  # polling a condition (threads starting), under the deadline above


def _wait_until_stopped(process: psutil.Process) -> None:
    deadline = time.monotonic() + DEADLINE
    while process.status() != psutil.STATUS_STOPPED:
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not stop within {DEADLINE} s of SIGSTOP")
        time.sleep(0.001)  # polling a condition, under the deadline above


@pytest.mark.parametrize("arch", list(WORKER_THREADS))
def test_worker_threads_block_the_stop_signals(arch: str) -> None:
    with _serving_one_connection(arch) as (_, tree):
        for pid, tid in _worker_threads(tree):
            blocked = signal_mask(f"/proc/{pid}/task/{tid}/status", "SigBlk")
            missing = {signal.Signals(signum).name for signum in STOP_SIGNALS if not blocked >> (signum - 1) & 1}
            assert not missing, (
                f"{arch}: worker thread {tid} can take {', '.join(sorted(missing))}, which Python handles "
                "only in the main thread: the main thread would sleep on and the server ignore the stop"
            )


@pytest.mark.parametrize("arch", list(WORKER_THREADS))
def test_a_stop_signal_pending_for_the_whole_process_stops_it(arch: str) -> None:
    for _ in range(ROUNDS if WORKER_THREADS[arch] else 1):
        _stop_while_stopped(arch)


def _stop_while_stopped(arch: str) -> None:
    with _serving_one_connection(arch) as (server, tree):
        server.send_signal(signal.SIGSTOP)
        _wait_until_stopped(tree)
        server.send_signal(signal.SIGINT)  # pending: no thread of a stopped process runs to take it
        server.send_signal(signal.SIGCONT)  # the first thread to run takes it
        status = server.wait(EXIT_WITHIN)
        if status is None:
            states = {tid: Path(f"/proc/{server.pid}/task/{tid}/wchan").read_text() for tid in _all_threads(tree)}
            raise AssertionError(
                f"{arch} was still running {EXIT_WITHIN} s after a SIGINT sent while it was stopped; its threads "
                f"sleep in {states}"
            ) from None
        assert status == 0, f"{arch} exited with status {status} after SIGINT, expected 0"


def _all_threads(process: psutil.Process) -> list[int]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return [thread.id for thread in process.threads()]
    return []
