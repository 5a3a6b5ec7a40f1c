"""Every process group the run starts, written down so that none outlives it.

Each server or client the suite starts leads its own process group. Its
owner kills the group when done with it; this module is the safety net for
when the owner cannot: an xdist worker killed on a cancelled CI job, a
KeyboardInterrupt between two lines. The controller makes a directory for
the run and names it in the environment, so its xdist workers (started
after it) share it; each group leader is recorded there as a file named by
its pid, holding its start time so that a reused pid is never killed. The
controller sweeps the directory when the run ends, however it ends.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ENVIRONMENT = "SOCKSPEC_PROCESS_GROUPS"
# A parent that starts whole runs (sockspec batch) makes each run's directory
# itself and names it in both variables: the run records its groups there
# from its first moment (preflight included), and the parent can sweep what a
# run killed outright left behind.
HANDED_DOWN = "SOCKSPEC_PROCESS_GROUPS_HANDED_DOWN"


def open_run() -> Path:
    """Called once by the process that owns the run (the controller)."""
    given = os.environ.get(ENVIRONMENT)
    if given and os.environ.get(HANDED_DOWN) == given and Path(given).is_dir():
        return Path(given)
    directory = Path(tempfile.mkdtemp(prefix="sockspec-groups-"))
    os.environ[ENVIRONMENT] = str(directory)
    return directory


def handed_down(directory: Path) -> dict[str, str]:
    """The environment that gives a child run ``directory`` for its groups."""
    return {ENVIRONMENT: str(directory), HANDED_DOWN: str(directory)}


def _directory() -> Path | None:
    value = os.environ.get(ENVIRONMENT)
    return Path(value) if value and Path(value).is_dir() else None


def track(pid: int) -> None:
    """Record a group leader the caller has just started.

    A run's directory that is named but gone has been swept: its controller
    has finished while this process (an xdist worker not yet stopped) was
    still starting a group, which nobody would ever kill; it goes at once."""
    directory = _directory()
    if directory is None:
        if os.environ.get(ENVIRONMENT):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        return
    with contextlib.suppress(psutil.Error, OSError):
        (directory / str(pid)).write_text(repr(psutil.Process(pid).create_time()))


def untrack(pid: int) -> None:
    """The caller has killed and reaped this group itself."""
    directory = _directory()
    if directory is not None:
        with contextlib.suppress(OSError):
            (directory / str(pid)).unlink()


def sweep(directory: Path, deadline: float = 5.0) -> list[int]:
    """Kill every recorded group still alive, wait (with a deadline) for the
    leaders to be gone, and remove the directory. Returns the pids killed."""
    killed: list[int] = []
    for record in list(directory.glob("*")) if directory.is_dir() else []:
        pid = int(record.name) if record.name.isdigit() else None
        if pid is None:
            continue
        with contextlib.suppress(psutil.Error, ValueError, OSError):
            if repr(psutil.Process(pid).create_time()) == record.read_text():
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
    until = time.monotonic() + deadline
    for pid in killed:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(max(0.0, until - time.monotonic()))
    shutil.rmtree(directory, ignore_errors=True)
    if os.environ.get(ENVIRONMENT) == str(directory):
        del os.environ[ENVIRONMENT]
    return killed


_received: list[int] = []  # the interrupting signals this process has received


def interrupts_unwind() -> dict[int, Any]:
    """SIGINT and SIGTERM both unwind as Ctrl-C does (KeyboardInterrupt), so
    that every cleanup on the way out runs, and are remembered, so that the
    reports can tell an interrupt from pytest's own stops (-x, collection
    errors), which raise KeyboardInterrupt's subclasses too. Returns the
    handlers it replaced (none off the main thread)."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}


def restore_handlers(previous: dict[int, Any]) -> None:
    if threading.current_thread() is threading.main_thread():
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interrupted_by() -> str | None:
    """The name of the first interrupting signal received, if any."""
    return signal.Signals(_received[0]).name if _received else None


def _interrupt(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def interrupts_survive_finalizers() -> None:
    """A KeyboardInterrupt raised while the main thread runs a finalizer
    (``__del__``, a weakref callback) or a garbage collector's callback
    (Hypothesis keeps one) cannot propagate: Python hands it to
    ``sys.unraisablehook``, which prints it and drops it, so a Ctrl-C would be
    lost and a traceback shown. Such an interrupt is sent again instead, from
    another thread, to be handled once the main thread has left (or dropped
    and sent again). Other unraisable exceptions go to the hook in place."""
    previous = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            # From the main thread (interrupt_main, or threading's start, which waits for
            # the thread) the signal would be handled at once, still inside.
            main = threading.main_thread().ident
            signum = _received[-1] if _received else signal.SIGINT
            if main is not None:  # always, once the interpreter runs
                _thread.start_new_thread(signal.pthread_kill, (main, signum))
                return
        previous(unraisable)

    sys.unraisablehook = hook
