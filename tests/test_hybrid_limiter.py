"""The hybrid server's global connection limit, shared by forked workers: exact
across processes, and never wedged by a worker that dies holding its lock.

Real forked processes; each waits with a deadline, and every child is reaped."""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable

from reference_servers.hybrid import SharedLimiter

DEADLINE = 10.0  # seconds: a wedged lock shows as a child still running at this point


def _run_in_child(body: Callable[[], int]) -> int:
    """Fork, run ``body()`` in the child, and exit with its return value (0-255)."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            status = body()
        finally:
            os._exit(status)
    return pid


def _wait(pid: int) -> int | None:
    """The child's exit code, or None (after killing it) if it runs past DEADLINE."""
    pidfd = os.pidfd_open(pid)  # readable once the child has exited
    try:
        exited, _, _ = select.select([pidfd], [], [], DEADLINE)
    finally:
        os.close(pidfd)
    if not exited:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_the_limit_is_global_across_forked_workers() -> None:
    limiter = SharedLimiter(limit=3, workers=2)
    limiter.reset(0)
    assert limiter.try_admit() and limiter.try_admit()

    def other_worker() -> int:
        limiter.reset(1)
        first, second = limiter.try_admit(), limiter.try_admit()
        return 10 * first + second  # 10: the third admitted, the fourth refused

    assert _wait(_run_in_child(other_worker)) == 10
    assert not limiter.try_admit(), "a fourth connection was admitted under a limit of 3"
    limiter.release()
    assert limiter.try_admit(), "a released slot was not given back"


def test_a_replaced_worker_takes_its_dead_predecessors_count_with_it() -> None:
    limiter = SharedLimiter(limit=2, workers=2)
    limiter.reset(0)

    def worker_that_dies_with_two_connections() -> int:
        limiter.reset(1)
        return 2 if limiter.try_admit() and limiter.try_admit() else 1

    assert _wait(_run_in_child(worker_that_dies_with_two_connections)) == 2
    assert not limiter.try_admit(), "the dead worker's two connections should still count until it is replaced"

    def replacement() -> int:
        limiter.reset(1)
        return 0

    assert _wait(_run_in_child(replacement)) == 0
    assert limiter.try_admit(), "the replacement's reset did not clear its slot's count"


def test_a_worker_killed_while_holding_the_lock_does_not_wedge_the_others() -> None:
    limiter = SharedLimiter(limit=5, workers=2)
    limiter.reset(0)
    ready_read, ready_write = os.pipe()

    def holder() -> int:
        os.close(ready_read)
        with limiter._locked():
            os.write(ready_write, b"x")
            select.select([], [], [])  # holds the lock until killed
        return 0

    holder_pid = _run_in_child(holder)
    os.close(ready_write)
    try:
        readable, _, _ = select.select([ready_read], [], [], DEADLINE)
        assert readable and os.read(ready_read, 1) == b"x", "the holder never took the lock"
    finally:
        os.close(ready_read)
    os.kill(holder_pid, signal.SIGKILL)
    os.waitpid(holder_pid, 0)

    def admit() -> int:
        return 1 if limiter.try_admit() else 2

    code = _wait(_run_in_child(admit))
    outcome = "never returned" if code is None else "was refused"
    assert code == 1, f"after the lock's holder was killed, a worker's admission {outcome}"
