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
real signals.

The second race is the interpreter's own: Python's handler runs between two
instructions, so a signal that comes just before the main thread enters its
wait leaves that wait asleep. The servers give the C-level handler a pipe to
write (signal.set_wakeup_fd) and watch it. That state is made certain too: a
bystander thread takes the signal while the main thread, which blocks it, waits."""

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
# The kernel's names for a sleep in poll or select, epoll_wait, and accept.
WAITS = {"poll_schedule_timeout.constprop.0", "do_epoll_wait", "inet_csk_accept"}
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
        _expect_exit(arch, server, tree, "a SIGINT sent while it was stopped")


def _expect_exit(arch: str, server: ServerProcess, tree: psutil.Process, after: str) -> None:
    status = server.wait(EXIT_WITHIN)
    if status is None:
        states = {tid: Path(f"/proc/{server.pid}/task/{tid}/wchan").read_text() for tid in _all_threads(tree)}
        raise AssertionError(f"{arch} was still running {EXIT_WITHIN} s after {after}; its threads sleep in {states}")
    assert status == 0, f"{arch} exited with status {status} after SIGINT, expected 0"


def _all_threads(process: psutil.Process) -> list[int]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return [thread.id for thread in process.threads()]
    return []


# The reference server, with SIGINT blocked in its main thread and a bystander
# thread open to it and asleep: the kernel hands SIGINT to the bystander, whose
# C-level handler runs at once, while the Python-level handler waits for the main
# thread to run an instruction. That is the state a signal leaves when it comes
# just before the main thread enters its wait (after the interpreter's last look
# for signals), which a loaded machine makes wide enough to hit now and then:
# preforking and hybrid each once "still running 5.50 s after SIGINT", their
# masters asleep in poll and their workers never told.
WITH_A_BYSTANDER = """
import _thread, runpy, select, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
open_to_it = _thread.allocate_lock()
open_to_it.acquire()
def bystander():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    open_to_it.release()
    select.select([], [], [])
_thread.start_new_thread(bystander, ())
open_to_it.acquire()
command = sys.argv[1:]  # the server's own command line, without its interpreter
if command[0] == "-m":
    sys.argv = command[1:]
    runpy.run_module(command[1], run_name="__main__")
else:
    sys.argv = command
    runpy.run_path(command[0], run_name="__main__")
"""


@pytest.mark.parametrize("arch", list(WORKER_THREADS))
def test_a_stop_whose_python_handler_has_not_run_still_wakes_the_main_thread(arch: str) -> None:
    argv = [sys.executable, "-c", WITH_A_BYSTANDER, *_argv(arch)[1:]]
    with ServerProcess(argv, cwd=str(REPO)) as server:
        server.start(timeout=15.0)
        tree = psutil.Process(server.pid)
        _wait_until_the_main_thread_waits(server.pid)  # READY comes before the serving loop
        server.send_signal(signal.SIGINT)
        _expect_exit(arch, server, tree, "a SIGINT that woke no wait of its main thread (another thread took it)")


def _wait_until_the_main_thread_waits(pid: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while (where := Path(f"/proc/{pid}/wchan").read_text()) not in WAITS:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the main thread of {pid} was not asleep in poll or epoll within {DEADLINE} s: {where}"
            )
        time.sleep(0.001)  # polling a condition, under the deadline above
